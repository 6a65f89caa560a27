"""MDS components as intervals, groups, and heavy drinking from 74013-4, AUDIT-C and conditions."""

from __future__ import annotations

import pytest

from cds_service.engine.alcohol import assess_alcohol, auditc_interval
from cds_service.engine.assessment import assess
from cds_service.engine.mds import mds_group
from cds_service.engine.settings import ClinicalSettings
from tests.unit.engine.builders import NOW, condition, facts, lab, med

SETTINGS = ClinicalSettings()
NOT_HEAVY = (lab("alcohol-drinks-per-day", 0),)
EGFR_95 = (lab("egfr", 95),)


def _mds(**kwargs: object) -> tuple[int, int]:
    a = assess(facts(**kwargs), NOW, SETTINGS)  # type: ignore[arg-type]
    return a.mds.min, a.mds.max


@pytest.mark.parametrize(
    "drug_class",
    ["loop-diuretic", "thiazide-diuretic", "potassium-sparing-diuretic", "carbonic-anhydrase-inhibitor"],
)
def test_each_diuretic_class_scores_one(drug_class: str) -> None:
    assert _mds(labs=NOT_HEAVY + EGFR_95, meds=(med("x", drug_class),)) == (1, 1)


def test_ppi_scores_one_and_two_diuretics_still_one() -> None:
    meds = (med("omeprazole", "proton-pump-inhibitor"), med("furosemide", "loop-diuretic"),
            med("hydrochlorothiazide", "thiazide-diuretic"))  # fmt: skip
    assert _mds(labs=NOT_HEAVY + EGFR_95, meds=meds) == (2, 2)


def test_retrieved_empty_list_scores_zero_and_unretrieved_list_widens_each_drug_component() -> None:
    assert _mds(labs=NOT_HEAVY + EGFR_95) == (0, 0)
    assert _mds(labs=NOT_HEAVY + EGFR_95, medications_known=False) == (0, 2)
    # a drafted diuretic is known even when the lists could not be retrieved
    draft = med("furosemide", "loop-diuretic", draft=True)
    assert _mds(labs=NOT_HEAVY + EGFR_95, meds=(draft,), medications_known=False) == (1, 2)


def test_all_unknown_is_zero_to_five() -> None:
    assert _mds(medications_known=False) == (0, 5)


@pytest.mark.parametrize(
    ("egfr", "comparator", "expected"),
    [(59, None, (2, 2)), (60, None, (1, 1)), (89, None, (1, 1)), (90, None, (0, 0)), (60, ">", (0, 1)),
     (15, "<", (2, 2))],
)  # fmt: skip
def test_egfr_component(egfr: int, comparator: str | None, expected: tuple[int, int]) -> None:
    assert _mds(labs=(*NOT_HEAVY, lab("egfr", egfr, comparator=comparator))) == expected


def test_egfr_unknown_is_zero_to_two() -> None:
    assert _mds(labs=NOT_HEAVY) == (0, 2)


def test_current_use_rules() -> None:
    ended = med("furosemide", "loop-diuretic", period_end=NOW.replace(year=2025))
    stopped = med("furosemide", "loop-diuretic", status="stopped")
    intended = med("furosemide", "loop-diuretic", status="intended")
    request_active = med("furosemide", "loop-diuretic", resource_type="MedicationRequest")
    request_draft_not_in_hook = med("furosemide", "loop-diuretic", resource_type="MedicationRequest", status="draft")
    base = NOT_HEAVY + EGFR_95
    assert _mds(labs=base, meds=(ended,)) == (0, 0)
    assert _mds(labs=base, meds=(stopped,)) == (0, 0)
    assert _mds(labs=base, meds=(intended,)) == (1, 1)
    assert _mds(labs=base, meds=(request_active,)) == (1, 1)
    assert _mds(labs=base, meds=(request_draft_not_in_hook,)) == (0, 0)


@pytest.mark.parametrize(
    ("low", "high", "group"),
    [(0, 0, "low"), (0, 1, "low"), (1, 1, "low"), (2, 2, "moderate"), (3, 3, "high"), (3, 5, "high"),
     (1, 2, "indeterminate"), (0, 5, "indeterminate"), (2, 3, "indeterminate")],
)  # fmt: skip
def test_groups(low: int, high: int, group: str) -> None:
    assert mds_group(low, high) == group


# Heavy drinking [FAN21]: > 1 drink/day female, > 2 male; sex unknown: > 2 heavy, <= 1 not, between unknown.
@pytest.mark.parametrize(
    ("gender", "drinks", "heavy"),
    [("female", 1.0, False), ("female", 1.5, True), ("male", 2.0, False), ("male", 2.5, True),
     (None, 1.0, False), (None, 1.5, None), (None, 2.0, None), (None, 2.1, True)],
)  # fmt: skip
def test_drinks_per_day(gender: str | None, drinks: float, heavy: bool | None) -> None:
    f = facts(gender=gender, labs=(lab("alcohol-drinks-per-day", drinks),))
    assert assess_alcohol(f, NOW, SETTINGS).heavy is heavy


def test_auditc_interval_arithmetic() -> None:
    # frequency per week x drinks per occasion / 7, by hand
    assert auditc_interval("2-3-per-week", "3-4") == pytest.approx((6 / 7, 12 / 7))
    assert auditc_interval("never", None) == (0.0, 0.0)
    assert auditc_interval("4-plus-per-week", "10-plus") == pytest.approx((40 / 7, float("inf")))


@pytest.mark.parametrize(
    ("gender", "frequency", "drinks", "heavy"),
    [
        ("male", "2-3-per-week", "3-4", False),  # [0.857, 1.714] <= 2
        ("female", "2-3-per-week", "3-4", None),  # spans 1
        ("female", "4-plus-per-week", "3-4", True),  # [1.714, 4] > 1
        ("male", "4-plus-per-week", "3-4", None),  # spans 2
        ("female", "monthly-or-less", "1-2", False),  # [0, 0.071]
        ("female", "never", None, False),
        ("male", "4-plus-per-week", "10-plus", True),
    ],
)
def test_auditc(gender: str, frequency: str, drinks: str | None, heavy: bool | None) -> None:
    labs = [lab("auditc-frequency", None, band=frequency)]
    if drinks is not None:
        labs.append(lab("auditc-typical-drinks", None, band=drinks))
    result = assess_alcohol(facts(gender=gender, labs=tuple(labs)), NOW, SETTINGS)
    assert result.heavy is heavy


def test_74013_4_is_preferred_over_auditc() -> None:
    labs = (lab("alcohol-drinks-per-day", 0.5), lab("auditc-frequency", None, band="4-plus-per-week"),
            lab("auditc-typical-drinks", None, band="10-plus"))  # fmt: skip
    result = assess_alcohol(facts(labs=labs), NOW, SETTINGS)
    assert (result.heavy, result.method) == (False, "74013-4")


def test_active_alcohol_disorder_outweighs_a_self_report_of_not_heavy() -> None:
    # Version 2 section 4: "an active alcohol-dependence Condition makes the component heavy even when (a) or (b)
    # say not heavy (a diagnosis outweighs a self-report)". 0.5 drinks/day (female, <= 1) would say not heavy.
    f = facts(labs=(lab("alcohol-drinks-per-day", 0.5),), conditions=(condition("alcohol-use-disorder"),))
    result = assess_alcohol(f, NOW, SETTINGS)
    assert (result.heavy, result.method) == (True, "condition")
    auditc = (lab("auditc-frequency", None, band="never"),)
    f = facts(labs=auditc, conditions=(condition("alcohol-use-disorder"),))
    assert assess_alcohol(f, NOW, SETTINGS).heavy is True
    # A heavy self-report stays the deciding source (a) when the diagnosis agrees.
    f = facts(labs=(lab("alcohol-drinks-per-day", 3),), conditions=(condition("alcohol-use-disorder"),))
    assert assess_alcohol(f, NOW, SETTINGS).method == "74013-4"


def test_inconclusive_drinks_per_day_falls_through_to_auditc() -> None:
    # Sex unknown, 1.5 drinks/day: between 1 and 2, (a) cannot decide; AUDIT-C never -> 0 drinks/day -> not heavy.
    labs = (lab("alcohol-drinks-per-day", 1.5), lab("auditc-frequency", None, band="never"))
    result = assess_alcohol(facts(gender=None, labs=labs), NOW, SETTINGS)
    assert (result.heavy, result.method) == (False, "audit-c")
    # Neither decides, a disorder does: heavy by condition.
    spans = (lab("alcohol-drinks-per-day", 1.5), lab("auditc-frequency", None, band="2-3-per-week"),
             lab("auditc-typical-drinks", None, band="3-4"))  # fmt: skip
    f = facts(gender=None, labs=spans, conditions=(condition("alcohol-use-disorder"),))
    assert assess_alcohol(f, NOW, SETTINGS).method == "condition"
    # Nothing decides: unknown, [0, 1] points.
    assert assess_alcohol(facts(gender=None, labs=spans), NOW, SETTINGS).heavy is None


def test_active_alcohol_condition_is_heavy_and_inactive_or_refuted_is_not_evidence() -> None:
    assert assess_alcohol(facts(conditions=(condition("alcohol-use-disorder"),)), NOW, SETTINGS).heavy is True
    resolved = condition("alcohol-use-disorder", clinical="resolved")
    assert assess_alcohol(facts(conditions=(resolved,)), NOW, SETTINGS).heavy is None
    refuted = condition("alcohol-use-disorder", verification="refuted")
    assert assess_alcohol(facts(conditions=(refuted,)), NOW, SETTINGS).heavy is None


def test_alcohol_window_is_365_days() -> None:
    old = facts(labs=(lab("alcohol-drinks-per-day", 5, days_ago=366),))
    assert assess_alcohol(old, NOW, SETTINGS).heavy is None


def test_unretrieved_lists_are_named_in_the_notes() -> None:
    unreachable = ("medicationRequests: FHIR server unreachable",)
    a = assess(facts(medications_known=False, data_notes=unreachable), NOW, SETTINGS)
    assert a.notes[0] == "medicationRequests: FHIR server unreachable"
    assert any("medication lists could not be retrieved" in n for n in a.notes)

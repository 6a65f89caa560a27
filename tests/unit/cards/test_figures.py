"""The figures of summaries and details: units as reported (section 2), "preliminary", unreadable results, and
reported eGFRs cut short without crossing a threshold (section 3)."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from cds_service.engine.recommend.figures import egfr_shown
from cds_service.engine.vocabulary import RecommendationCode as Code
from tests.unit.cards.test_gfm import _cards
from tests.unit.engine.builders import facts, lab, med

EGFR_THRESHOLDS = (30, 60, 90)  # clinical-rules.md sections 4 and 7.2


def _card(f: object, code: str) -> dict[str, object]:
    (card,) = [c for c in _cards(f) if c["extension"]["org.mgcds.recommendation"] == code]
    return card


def _reported(result: object, value: str, unit: str) -> object:
    return replace(result, evidence=replace(result.evidence, value=value, unit=unit))  # type: ignore[type-var]


def test_a_mg_dl_result_shows_both_units_in_the_summary() -> None:
    # 1.1 mg/dL x 0.4114 = 0.45254 -> 0.45 mmol/L, severe-low (section 2).
    serum = _reported(lab("serum-magnesium", 1.1 * 0.4114), "1.1", "mg/dL")
    card = _card(facts(labs=(serum, lab("egfr", 72))), Code.URGENT_EVALUATION)
    assert "serum Mg 0.45 mmol/L (1.1 mg/dL, severe-low)" in card["summary"]


def test_a_preliminary_deciding_result_is_named_in_the_summary() -> None:
    serum = lab("serum-magnesium", 0.45, status="preliminary")
    card = _card(facts(labs=(serum, lab("egfr", 72))), Code.URGENT_EVALUATION)
    assert "serum Mg 0.45 mmol/L (severe-low, preliminary)" in card["summary"]
    renal = _card(
        facts(labs=(lab("serum-magnesium", 0.6), lab("egfr", 25, status="preliminary"))),
        Code.SUPPLEMENT_RENAL_CAUTION,
    )
    assert "eGFR 25 preliminary" in renal["summary"]


def test_an_unreadable_result_is_named_never_as_no_recent_result() -> None:
    # Section 1: the newest result is unreadable (unit ug/mL): serum is unknown and the card says why.
    unreadable = _reported(lab("serum-magnesium", None, unusable="unit 'ug/mL' not recognised"), "19", "ug/mL")
    f = facts(labs=(unreadable, lab("egfr", 55)), meds=(med("furosemide", "loop-diuretic"),))
    card = _card(f, Code.TEST_SERUM_MG)
    assert "serum Mg result unreadable (unit ug/mL)" in card["summary"]
    assert "no serum magnesium" not in card["summary"]
    assert "Serum Mg result unreadable (unit ug/mL)" in card["detail"]


def test_no_serum_result_names_the_window() -> None:
    f = facts(labs=(lab("egfr", 55),), meds=(med("furosemide", "loop-diuretic"),))
    # MDS: diuretic 1 + eGFR 55 < 60 2 = 3 (alcohol unknown: 3-4).
    assert _card(f, Code.TEST_SERUM_MG)["summary"] == "MDS 3-4/5, no serum magnesium in 90 days: check serum magnesium"


def test_a_long_reported_egfr_is_cut_to_one_decimal() -> None:
    card = _card(facts(labs=(lab("serum-magnesium", 0.6), lab("egfr", 29.96))), Code.SUPPLEMENT_RENAL_CAUTION)
    assert "eGFR 29.9" in card["summary"]  # below 30 as the value is, never "30.0"
    assert "29.96" not in card["detail"]


def test_egfr_examples() -> None:
    # By hand: cut towards minus infinity at one decimal.
    assert egfr_shown(81.17286141086646, None) == "81.1"
    assert egfr_shown(29.96, None) == "29.9"
    assert egfr_shown(59.99, None) == "59.9"
    assert egfr_shown(29.6, None) == "29.6"
    assert egfr_shown(72.0, None) == "72"
    assert egfr_shown(29.96, "<") == "<29.96"  # a bound is shown as reported


@given(st.floats(min_value=0, max_value=300, allow_nan=False))
def test_a_shown_egfr_is_on_the_same_side_of_every_threshold(value: float) -> None:
    shown = float(egfr_shown(value, None))
    for threshold in EGFR_THRESHOLDS:
        assert (shown < threshold) == (value < threshold), (value, shown)
    assert 0 <= value - shown < 0.1 + 1e-9

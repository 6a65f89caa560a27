"""Clinical-rules.md version 2 sections 0 (scope) and 3 (renal function): hand-derived boundary cases.

NOW is 2026-01-15T12:00Z; the default patient is female, born 1966-01-01 (60 at NOW). Hand calculations (bc -l):

| case | expected | source |
|---|---|---|
| CKD-EPI female 60, Scr 2.5 mg/dL | 21 | [INK21], section 3 |
| CKD-EPI female 18, Scr 0.7 mg/dL | 128 | [INK21] |
| reported 29.6 / 89.5 / 59.6 | as is: 29.6 < 30; 89.5 < 90 (1 point); 59.6 < 60 (2 points) | section 3 |
| born 2008-01-16 / 2008-01-15 | 17 (birthday tomorrow) / 18 on 2026-01-15 | section 0 |

Steps: female 60, Scr 2.5: 2.5/0.7 = 3.5714; 3.5714^-1.2 = 0.217065; 0.9938^60 = 0.688556;
142 x 0.217065 x 0.688556 x 1.012 = 21.48 -> 21. Female 18, Scr 0.7: 0.7/0.7 = 1, so both ratio terms are 1;
0.9938^18 = 0.894087; 142 x 0.894087 x 1.012 = 128.48 -> 128.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

import pytest

from cds_service.engine.assessment import assess, assessment_to_dict
from cds_service.engine.egfr import assess_egfr
from cds_service.engine.scope import pediatric_upper_intake
from cds_service.engine.settings import ClinicalSettings
from cds_service.engine.vocabulary import RecommendationCode as Code
from tests.unit.engine.builders import NOW, assess_and_recommend, facts, lab, med

SETTINGS = ClinicalSettings()


def _egfr_lab(value: float, loinc: str, days_ago: float = 3, **kwargs: object) -> object:
    result = lab("egfr", value, days_ago=days_ago, **kwargs)  # type: ignore[arg-type]
    return type(result)(**{**result.__dict__, "loinc_codes": (loinc,)})


# --- section 3: reported values unrounded -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reported", "points", "below_30"),
    [(29.6, (2, 2), True), (30.0, (2, 2), False), (59.6, (2, 2), False), (60.0, (1, 1), False),
     (89.5, (1, 1), False), (90.0, (0, 0), False)],
)  # fmt: skip
def test_reported_egfr_is_used_unrounded(reported: float, points: tuple[int, int], below_30: bool) -> None:
    result = assess_egfr(facts(labs=(lab("egfr", reported),)), NOW, SETTINGS)
    assert (result.value, result.source, result.points, result.below_30) == (reported, "observation", points, below_30)


def test_89_5_keeps_the_egfr_point_and_so_the_test_card() -> None:
    # Issue 14: 89.5 rounded to 90 lost its point and the test card. PPI 1 + loop 1 + eGFR 89.5 (< 90) 1 = MDS 3
    # with serum normal 0.9 and ionized unknown -> test-ionized-mg (mds.min >= 3).
    f = facts(
        labs=(lab("serum-magnesium", 0.9), lab("egfr", 89.5), lab("alcohol-drinks-per-day", 0)),
        meds=(med("omeprazole", "proton-pump-inhibitor"), med("furosemide", "loop-diuretic")),
    )
    e = assess_and_recommend(f)
    assert (e.assessment.mds.min, e.recommendation_codes) == (3, (Code.TEST_IONIZED_MG,))


def test_computed_egfr_is_an_integer_and_the_same_day_laboratory_value_is_kept_beside_it() -> None:
    # creatinine 2.5 mg/dL and a laboratory 33914-3 = 81 at the same time: computed 21 counts (section 3).
    f = facts(labs=(lab("serum-creatinine", 2.5, days_ago=2), _egfr_lab(81, "33914-3", days_ago=2)))
    result = assess_egfr(f, NOW, SETTINGS)
    assert (result.source, result.value, result.reported_same_day) == ("ckd-epi-2021", 21, 81)
    # A laboratory eGFR of another (earlier) day is not "the same day".
    older = facts(labs=(lab("serum-creatinine", 2.5, days_ago=2), _egfr_lab(81, "33914-3", days_ago=4)))
    assert assess_egfr(older, NOW, SETTINGS).reported_same_day is None


@pytest.mark.parametrize(
    ("results", "expected", "why"),
    [
        ((("33914-3", 50), ("98979-8", 45)), 45, "race-free creatinine code before a code not naming race"),
        ((("98979-8", 45), ("98980-6", 70)), 70, "cystatin C first"),
        ((("48642-3", 62), ("48643-1", 51)), 51, "of race-specific codes the lower value"),
        ((("88293-6", 40), ("88294-4", 33)), 33, "of race-specific codes the lower value"),
        ((("48643-1", 51), ("33914-3", 58)), 58, "a code not naming race before race-specific ones"),
    ],
)
def test_equal_time_egfr_preference(results: tuple[tuple[str, float], ...], expected: float, why: str) -> None:
    labs = tuple(_egfr_lab(value, code) for code, value in results)
    assert assess_egfr(facts(labs=labs), NOW, SETTINGS).value == expected, why


def test_an_unreadable_preferred_egfr_gives_way_to_a_readable_one_at_the_same_time() -> None:
    unreadable = _egfr_lab(0, "98980-6", unusable="unit 'mL/s' not recognised")
    readable = _egfr_lab(45, "98979-8")
    assert assess_egfr(facts(labs=(unreadable, readable)), NOW, SETTINGS).value == 45
    alone = assess_egfr(facts(labs=(unreadable,)), NOW, SETTINGS)
    assert (alone.source, alone.gap) == ("none", "egfr-unusable")


def test_cystatin_c_egfr_as_new_as_the_creatinine_is_used_instead_of_ckd_epi() -> None:
    same_time = facts(labs=(lab("serum-creatinine", 2.5, days_ago=2), _egfr_lab(40, "98980-6", days_ago=2)))
    result = assess_egfr(same_time, NOW, SETTINGS)
    assert (result.source, result.value) == ("observation", 40)
    # older than the creatinine: the creatinine is newer than the newest eGFR, so CKD-EPI counts (21, above)
    older = facts(labs=(lab("serum-creatinine", 2.5, days_ago=2), _egfr_lab(40, "98980-6", days_ago=5)))
    assert assess_egfr(older, NOW, SETTINGS).value == 21


# --- section 0: scope ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("birth", "latest", "scope", "age"),
    [
        (date(2008, 1, 16), None, "pediatric", 17),  # 18th birthday tomorrow
        (date(2008, 1, 15), None, "adult", 18),  # 18th birthday today
        (date(2008, 1, 1), date(2008, 12, 31), "pediatric", 17),  # birthDate "2008": youngest reading
        (None, None, "adult", None),  # no birthDate: the adult rules apply
        (date(2030, 1, 1), None, "pediatric", -4),  # a birth date after now: the cautious side
    ],
)
def test_scope_by_age_at_now(birth: date | None, latest: date | None, scope: str, age: int | None) -> None:
    a = assess(facts(birth=birth, birth_latest=latest), NOW, SETTINGS)
    assert (a.scope, a.age_years) == (scope, age)


def test_ckd_epi_only_from_18_at_the_creatinines_time() -> None:
    # Born 2008-01-10: 18 at NOW (adult). Creatinine 0.7 drawn 2026-01-05 (age 17): no CKD-EPI (section 0).
    before = facts(birth=date(2008, 1, 10), labs=(lab("serum-creatinine", 0.7, days_ago=10),))
    result = assess_egfr(before, NOW, SETTINGS)
    assert (result.source, result.value, result.gap) == ("none", None, "under-adult-age")
    # Drawn 2026-01-12 (age 18): computed, 128 (table above).
    after = facts(birth=date(2008, 1, 10), labs=(lab("serum-creatinine", 0.7, days_ago=3),))
    result = assess_egfr(after, NOW, SETTINGS)
    assert (result.source, result.value, result.age_years) == ("ckd-epi-2021", 128, 18)


def test_a_child_gets_no_computed_egfr_but_a_reported_one_is_shown() -> None:
    child = date(2020, 6, 1)  # 5 at NOW
    assert assess_egfr(facts(birth=child, labs=(lab("serum-creatinine", 0.4),)), NOW, SETTINGS).source == "none"
    reported = facts(birth=child, labs=(lab("serum-creatinine", 0.4), lab("egfr", 110, days_ago=5)))
    assert assess_egfr(reported, NOW, SETTINGS).value == 110


def test_a_five_year_old_gets_no_dose() -> None:
    # Issue 14: a 5-year-old got the adult CKD-EPI and a 300 mg/day draft. Version 2: serum 0.6 (likely) with a
    # reported eGFR 110 -> an adult would get supplement-organic; the child gets no card (none of the three urgent
    # codes applies), and the MDS is still reported.
    f = facts(birth=date(2020, 6, 1), labs=(lab("serum-magnesium", 0.6), lab("egfr", 110)))
    e = assess_and_recommend(f)
    assert (e.assessment.scope, e.recommendation_codes) == ("pediatric", ())
    assert e.assessment.mds.components  # reported as for an adult
    adult = assess_and_recommend(facts(labs=(lab("serum-magnesium", 0.6), lab("egfr", 110))))
    assert adult.recommendation_codes == (Code.SUPPLEMENT_ORGANIC,)


def test_a_child_gets_only_the_urgent_cards_marked_pediatric() -> None:
    child = date(2020, 6, 1)
    urgent = assess_and_recommend(facts(birth=child, labs=(lab("serum-magnesium", 0.45),)))
    assert urgent.recommendation_codes == (Code.URGENT_EVALUATION,)
    assert "pediatric" in urgent.recommendations[0].qualifiers
    citrate = med("magnesium citrate", "mg-salt-organic")
    stop = assess_and_recommend(facts(birth=child, labs=(lab("serum-magnesium", 1.2),), meds=(citrate,)))
    assert stop.recommendation_codes == (Code.STOP_SUPPLEMENT,)
    high = assess_and_recommend(facts(birth=child, labs=(lab("serum-magnesium", 1.2),)))
    assert high.recommendation_codes == (Code.EVALUATE_HYPERMAGNESEMIA,)
    # An adult with this MDS and no magnesium result gets test-serum-mg; the child does not (an MDS-based card).
    meds = (med("omeprazole", "proton-pump-inhibitor"), med("furosemide", "loop-diuretic"))
    assert assess_and_recommend(facts(birth=child, meds=meds, labs=(lab("egfr", 95),))).recommendation_codes == ()


@pytest.mark.parametrize(
    ("age", "limit"), [(None, None), (0, None), (1, 65), (3, 65), (4, 110), (8, 110), (9, 350), (17, 350)]
)
def test_pediatric_upper_intake_by_age(age: int | None, limit: int | None) -> None:
    # [IOM97]: 65 mg/day at 1-3 years, 110 mg/day at 4-8, 350 mg/day from 9; none established under 1 year.
    assert pediatric_upper_intake(age) == limit


def test_deceased_patient_is_assessed_but_gets_no_recommendation() -> None:
    f = facts(deceased=True, labs=(lab("serum-magnesium", 0.45),))
    e = assess_and_recommend(f)
    assert (e.assessment.scope, e.recommendation_codes) == ("deceased", ())
    assert e.assessment.serum_mg.category == "severe-low"  # still computed
    as_json = assessment_to_dict(e.assessment, [r.code for r in e.recommendations])
    assert (as_json["scope"], as_json["recommendations"], as_json["rules_version"]) == ("deceased", [], "2026.12")


def test_a_death_recorded_after_now_leaves_the_patient_alive_at_now() -> None:
    # Safest reading: Synthea's Dennis Durgan died the day after the evaluation time; at `now` he gets his cards.
    later = facts(deceased=True, labs=(lab("serum-magnesium", 0.45),))
    later = replace(later, patient=replace(later.patient, deceased_at=NOW + timedelta(days=1)))
    assert assess_and_recommend(later).recommendation_codes == (Code.URGENT_EVALUATION,)
    earlier = replace(later, patient=replace(later.patient, deceased_at=NOW - timedelta(days=1)))
    assert assess_and_recommend(earlier).assessment.scope == "deceased"
    at_now = replace(later, patient=replace(later.patient, deceased_at=NOW))
    assert assess_and_recommend(at_now).recommendation_codes == ()

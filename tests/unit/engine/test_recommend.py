"""Section 7 (patient-view) recommendation rules, one truth-table row per rule and per exclusion."""

from __future__ import annotations

from dataclasses import replace

from cds_service.engine.facts import Facts
from cds_service.engine.recommend.types import CreateMedicationRequest, CreateServiceRequest, Recommendation
from cds_service.engine.settings import ClinicalSettings
from cds_service.engine.vocabulary import Indicator
from cds_service.engine.vocabulary import RecommendationCode as Code
from tests.unit.engine.builders import Evaluated, assess_and_recommend, facts, lab, med, order

SETTINGS = ClinicalSettings()
NOT_HEAVY = lab("alcohol-drinks-per-day", 0)
PPI = med("omeprazole", "proton-pump-inhibitor")
LOOP = med("furosemide", "loop-diuretic")
CITRATE = med("magnesium citrate", "mg-salt-organic")
OXIDE = med("magnesium oxide", "mg-salt-inorganic")
UNSTATED = med("magnesium (salt not stated)", "mg-salt-unspecified")
DOXY = med("doxycycline", "interacts-tetracycline")


def _run(f: Facts, settings: ClinicalSettings = SETTINGS) -> Evaluated:
    return assess_and_recommend(f, settings)


def _codes(f: Facts, settings: ClinicalSettings = SETTINGS) -> tuple[str, ...]:
    return _run(f, settings).recommendation_codes


def _rec(a: Evaluated, code: str) -> Recommendation:
    return next(x for x in a.recommendations if x.code == code)


def test_nothing_actionable_gives_no_recommendation() -> None:
    assert _codes(facts(labs=(lab("serum-magnesium", 0.9), lab("egfr", 95), NOT_HEAVY))) == ()


def test_urgent_evaluation_on_severe_low_excludes_supplement_and_renal_check() -> None:
    a = _run(facts(labs=(lab("serum-magnesium", 0.45),)))
    assert a.recommendation_codes == (Code.URGENT_EVALUATION,)
    assert _rec(a, Code.URGENT_EVALUATION).indicator == Indicator.CRITICAL
    assert _rec(a, Code.URGENT_EVALUATION).suggestions == ()


def test_test_serum_mg_when_unknown_and_mds_min_at_least_2() -> None:
    f = facts(labs=(lab("egfr", 95), NOT_HEAVY), meds=(PPI, LOOP))
    a = _run(f)
    assert a.recommendation_codes == (Code.TEST_SERUM_MG,)
    rec = _rec(a, Code.TEST_SERUM_MG)
    assert rec.indicator == Indicator.INFO
    assert rec.suggestions[0].actions == (CreateServiceRequest("19123-9", "serum-magnesium"),)


def test_test_serum_mg_uses_configured_loinc() -> None:
    f = facts(labs=(lab("egfr", 95), NOT_HEAVY), meds=(PPI, LOOP))
    rec = _rec(_run(f, replace(SETTINGS, serum_mg_test_loinc="2601-3")), Code.TEST_SERUM_MG)
    assert rec.suggestions[0].actions == (CreateServiceRequest("2601-3", "serum-magnesium"),)


def test_test_serum_mg_not_when_mds_min_below_2_but_yes_for_other_risk_drug() -> None:
    assert _codes(facts(labs=(lab("egfr", 95), NOT_HEAVY), meds=(PPI,))) == ()
    cisplatin = med("cisplatin", "mg-wasting-other")
    a = _run(facts(labs=(lab("egfr", 95), NOT_HEAVY), meds=(cisplatin,)))
    assert a.recommendation_codes == (Code.TEST_SERUM_MG,)
    assert a.assessment.other_risk_drugs == ("cisplatin",)


def test_other_risk_drugs_names_only_the_wasting_ingredient_of_a_combination() -> None:
    # A product of gentamicin and a steroid (terminology marks only gentamicin mg-wasting-other): the list names
    # gentamicin, not the steroid.
    combination = replace(
        med("gentamicin", "mg-wasting-other"),
        ingredients=("gentamicin", "betamethasone"),
        ingredient_classes=(("gentamicin", frozenset({"mg-wasting-other"})), ("betamethasone", frozenset())),
    )
    a = _run(facts(labs=(lab("egfr", 95), NOT_HEAVY), meds=(combination,)))
    assert a.assessment.other_risk_drugs == ("gentamicin",)


def test_test_serum_mg_uses_mds_min_not_max() -> None:
    # everything unknown: MDS 0-5, min 0 -> no card (never a guess)
    assert _codes(facts(medications_known=False)) == ()


def test_test_serum_mg_suppressed_by_open_or_draft_order_but_not_by_completed_one() -> None:
    base = {"labs": (lab("egfr", 95), NOT_HEAVY), "meds": (PPI, LOOP)}
    assert _codes(facts(**base, orders=(order("serum-magnesium", "active"),))) == ()  # type: ignore[arg-type]
    assert _codes(facts(**base, orders=(order("serum-magnesium", "draft"),))) == ()  # type: ignore[arg-type]
    completed = (order("serum-magnesium", "completed"),)
    assert _codes(facts(**base, orders=completed)) == (Code.TEST_SERUM_MG,)  # type: ignore[arg-type]


def test_stale_serum_counts_as_unknown_for_testing() -> None:
    f = facts(labs=(lab("egfr", 95), NOT_HEAVY, lab("serum-magnesium", 0.9, days_ago=120)), meds=(PPI, LOOP))
    assert _codes(f) == (Code.TEST_SERUM_MG,)


def test_test_ionized_mg_rules() -> None:
    low_normal = facts(labs=(lab("serum-magnesium", 0.75), lab("egfr", 95), NOT_HEAVY))
    assert Code.TEST_IONIZED_MG in _codes(low_normal)
    rec = _rec(_run(low_normal), Code.TEST_IONIZED_MG)
    assert rec.suggestions[0].actions == (CreateServiceRequest("73573-8", "ionized-magnesium"),)
    # serum normal: only with mds.min >= 3 (PPI + diuretic + eGFR 60-89)
    normal3 = facts(labs=(lab("serum-magnesium", 0.9), lab("egfr", 70), NOT_HEAVY), meds=(PPI, LOOP))
    assert _codes(normal3) == (Code.TEST_IONIZED_MG,)
    normal2 = facts(labs=(lab("serum-magnesium", 0.9), lab("egfr", 95), NOT_HEAVY), meds=(PPI, LOOP))
    assert _codes(normal2) == ()
    known = facts(labs=(lab("serum-magnesium", 0.75), lab("ionized-magnesium", 0.50), lab("egfr", 95)))
    assert Code.TEST_IONIZED_MG not in _codes(known)
    ordered = facts(labs=(lab("serum-magnesium", 0.75), lab("egfr", 95)), orders=(order("ionized-magnesium"),))
    assert Code.TEST_IONIZED_MG not in _codes(ordered)


def test_check_renal_function_when_deficient_and_egfr_unknown() -> None:
    a = _run(facts(labs=(lab("serum-magnesium", 0.6),)))
    assert a.recommendation_codes == (Code.CHECK_RENAL_FUNCTION,)
    assert _rec(a, Code.CHECK_RENAL_FUNCTION).suggestions[0].actions == (
        CreateServiceRequest("2160-0", "serum-creatinine"),
    )
    # no supplement suggestion while renal function is unknown
    assert Code.SUPPLEMENT_ORGANIC not in a.recommendation_codes


def test_supplement_renal_caution_below_30_excludes_supplement_organic() -> None:
    a = _run(facts(labs=(lab("serum-magnesium", 0.6), lab("egfr", 25))))
    assert a.recommendation_codes == (Code.SUPPLEMENT_RENAL_CAUTION,)
    assert _rec(a, Code.SUPPLEMENT_RENAL_CAUTION).indicator == Indicator.WARNING


def test_egfr_comparator_that_does_not_exclude_below_30_gives_caution() -> None:
    a = _run(facts(labs=(lab("serum-magnesium", 0.6), lab("egfr", 60, comparator="<"))))
    assert a.recommendation_codes == (Code.SUPPLEMENT_RENAL_CAUTION,)
    assert "egfr-below-30-not-excluded" in _rec(a, Code.SUPPLEMENT_RENAL_CAUTION).qualifiers
    below15 = _run(facts(labs=(lab("serum-magnesium", 0.6), lab("egfr", 15, comparator="<"))))
    assert _rec(below15, Code.SUPPLEMENT_RENAL_CAUTION).qualifiers == ()


def test_supplement_organic_likely_is_warning_possible_is_info() -> None:
    likely = _run(facts(labs=(lab("serum-magnesium", 0.6), lab("egfr", 30))))
    assert likely.recommendation_codes == (Code.SUPPLEMENT_ORGANIC,)
    rec = _rec(likely, Code.SUPPLEMENT_ORGANIC)
    assert rec.indicator == Indicator.WARNING
    salts = [s.actions[0] for s in rec.suggestions]
    assert salts == [
        CreateMedicationRequest("magnesium citrate", 300),
        CreateMedicationRequest("magnesium glycinate", 300),
        CreateMedicationRequest("magnesium lactate", 300),
    ]
    possible = _run(facts(labs=(lab("serum-magnesium", 0.75), lab("egfr", 45))))
    assert possible.recommendation_codes == (Code.TEST_IONIZED_MG, Code.SUPPLEMENT_ORGANIC)
    assert _rec(possible, Code.SUPPLEMENT_ORGANIC).indicator == Indicator.INFO


def test_supplement_organic_from_ionized_low_with_normal_serum() -> None:
    a = _run(facts(labs=(lab("serum-magnesium", 0.9), lab("ionized-magnesium", 0.40), lab("egfr", 80))))
    assert a.assessment.deficiency == "likely"
    assert a.recommendation_codes == (Code.SUPPLEMENT_ORGANIC,)


def test_supplement_organic_not_when_already_taking_organic_salt() -> None:
    assert _codes(facts(labs=(lab("serum-magnesium", 0.6), lab("egfr", 45)), meds=(CITRATE,))) == ()


def test_switch_to_organic_wins_over_supplement_organic() -> None:
    a = _run(facts(labs=(lab("serum-magnesium", 0.6), lab("egfr", 45)), meds=(OXIDE,)))
    assert a.recommendation_codes == (Code.SWITCH_TO_ORGANIC,)
    citrate = CreateMedicationRequest("magnesium citrate", 300)
    assert _rec(a, Code.SWITCH_TO_ORGANIC).suggestions[0].actions == (citrate,)
    # inorganic and organic both taken: neither card
    assert _codes(facts(labs=(lab("serum-magnesium", 0.6), lab("egfr", 45)), meds=(OXIDE, CITRATE))) == ()


def test_stop_supplement_on_high_serum_with_any_salt() -> None:
    for salt in (CITRATE, OXIDE, UNSTATED):
        a = _run(facts(labs=(lab("serum-magnesium", 1.2), lab("egfr", 95)), meds=(salt,)))
        assert a.recommendation_codes == (Code.STOP_SUPPLEMENT,)
        assert _rec(a, Code.STOP_SUPPLEMENT).indicator == Indicator.WARNING
    assert _codes(facts(labs=(lab("serum-magnesium", 1.2), lab("egfr", 95)))) == ()


def test_spacing_advice_attached_to_supplement_card() -> None:
    a = _run(facts(labs=(lab("serum-magnesium", 0.6), lab("egfr", 45)), meds=(DOXY,)))
    rec = _rec(a, Code.SUPPLEMENT_ORGANIC)
    assert [s.interaction_class for s in rec.spacing] == ["interacts-tetracycline"]


def test_patient_view_never_emits_order_codes() -> None:
    draft = med("omeprazole", "proton-pump-inhibitor", draft=True, concerned=True)
    assert _codes(facts(meds=(draft,), labs=(lab("egfr", 95),))) == ()


def test_a_supplement_of_unstated_salt_is_not_doubled_nor_switched() -> None:
    # Serum 0.6 (low), eGFR 45: without any supplement, supplement-organic (see the spacing test above). With
    # "Magnesium 250 mg" (salt not stated) the patient may already take an organic salt, and a second start could
    # pass the 350 mg/day upper level: no supplement-organic; not inorganic either, so no switch-to-organic.
    assert Code.SUPPLEMENT_ORGANIC in _codes(facts(labs=(lab("serum-magnesium", 0.6), lab("egfr", 45))))
    assert _codes(facts(labs=(lab("serum-magnesium", 0.6), lab("egfr", 45)), meds=(UNSTATED,))) == ()


def test_parenteral_magnesium_is_neither_switched_nor_doubled_but_still_stopped_when_serum_is_high() -> None:
    # Safest reading (closing note): citrate's advantage is oral absorption [FIO21]; IV magnesium sulfate treats
    # severe deficiency, so it is not switched, and a patient receiving it is not offered an oral start on top.
    iv_sulfate = replace(med("magnesium sulfate", "mg-salt-inorganic"), parenteral=True)
    low = (lab("serum-magnesium", 0.6), lab("egfr", 45))
    assert _codes(facts(labs=low, meds=(iv_sulfate,))) == ()
    oral_sulfate = med("magnesium sulfate", "mg-salt-inorganic")
    assert _codes(facts(labs=low, meds=(oral_sulfate,))) == (Code.SWITCH_TO_ORGANIC,)
    # Giving magnesium to a patient whose serum is high is still flagged, whatever the route.
    high = _run(facts(labs=(lab("serum-magnesium", 1.2), lab("egfr", 95)), meds=(iv_sulfate,)))
    assert high.recommendation_codes == (Code.STOP_SUPPLEMENT,)

"""Section 7.2 (patient-view) recommendation rules of clinical-rules.md version 2, one truth-table row per rule and
per exclusion. Expected codes are read off section 7.2's table by hand for each input, as the comments say."""

from __future__ import annotations

from dataclasses import replace

import pytest

from cds_service.engine.facts import Facts
from cds_service.engine.recommend.types import CreateMedicationRequest, CreateServiceRequest, Recommendation
from cds_service.engine.settings import ClinicalSettings
from cds_service.engine.vocabulary import Indicator
from cds_service.engine.vocabulary import RecommendationCode as Code
from tests.unit.engine.builders import Evaluated, assess_and_recommend, facts, lab, med, order

SETTINGS = ClinicalSettings()
NOT_HEAVY = lab("alcohol-drinks-per-day", 0)
PPI = med("omeprazole", "proton-pump-inhibitor")
LOOP = med("furosemide", "loop-diuretic", display="Lasix 40 mg tablet")
CITRATE = med("magnesium citrate", "mg-salt-organic")
GLYCINATE = med("magnesium glycinate", "mg-salt-organic")
OXIDE = med("magnesium oxide", "mg-salt-inorganic")
UNSTATED = med("magnesium (salt not stated)", "mg-salt-unspecified")
MILK_OF_MAGNESIA = med("magnesium hydroxide", "mg-salt-inorganic", kind="laxative-antacid", display="Milk of Magnesia")
IV_SULFATE = med("magnesium sulfate", "mg-salt-inorganic", kind="parenteral", display="Magnesium sulfate 4 g IV")
DOXY = med("doxycycline", "interacts-tetracycline")
ORGANIC_DRAFTS = [
    CreateMedicationRequest("magnesium citrate", 300),
    CreateMedicationRequest("magnesium glycinate", 300),
    CreateMedicationRequest("magnesium lactate", 300),
]


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


def test_low_normal_without_risk_factor_gets_one_card_offering_the_salts_as_alternatives() -> None:
    # Issue 14's example: serum 0.75 (low-normal, 0.70 to < 0.85) -> deficiency possible; eGFR 95 >= 30; no oral or
    # parenteral magnesium. Version 2: one test-ionized-mg card, the three organic-salt drafts as alternatives
    # (at-most-one) after the ionized test; no separate supplement-organic card.
    a = _run(facts(labs=(lab("serum-magnesium", 0.75), lab("egfr", 95), NOT_HEAVY)))
    assert a.recommendation_codes == (Code.TEST_IONIZED_MG,)
    rec = _rec(a, Code.TEST_IONIZED_MG)
    assert rec.suggestions[0].actions == (CreateServiceRequest("73573-8", "ionized-magnesium"),)
    assert [s.actions[0] for s in rec.suggestions[1:]] == ORGANIC_DRAFTS


def test_test_ionized_mg_with_normal_serum_needs_mds_min_3_and_offers_no_supplement() -> None:
    # serum 0.9 normal: deficiency unlikely. PPI 1 + loop 1 + eGFR 70 (60 to < 90) 1 + not heavy 0 = 3 -> card;
    # eGFR 95 (0 points) -> MDS 2 -> no card.
    normal3 = _run(facts(labs=(lab("serum-magnesium", 0.9), lab("egfr", 70), NOT_HEAVY), meds=(PPI, LOOP)))
    assert normal3.recommendation_codes == (Code.TEST_IONIZED_MG,)
    assert len(_rec(normal3, Code.TEST_IONIZED_MG).suggestions) == 1
    normal2 = facts(labs=(lab("serum-magnesium", 0.9), lab("egfr", 95), NOT_HEAVY), meds=(PPI, LOOP))
    assert _codes(normal2) == ()


def test_ionized_known_or_pending_leaves_a_possible_deficiency_without_card() -> None:
    known = facts(labs=(lab("serum-magnesium", 0.75), lab("ionized-magnesium", 0.50), lab("egfr", 95)))
    assert _codes(known) == ()  # ionized 0.50 normal -> deficiency unlikely (rule 3)
    # Section 7.2: while an ionized test is pending, a possible deficiency gets no card (not even the switch).
    for status, draft in (("active", False), ("draft", True)):
        pending = facts(
            labs=(lab("serum-magnesium", 0.75), lab("egfr", 95)),
            meds=(OXIDE,),
            orders=(order("ionized-magnesium", status, draft=draft),),
        )
        assert _codes(pending) == ()


@pytest.mark.parametrize(
    ("egfr", "qualifier"),
    [
        (None, "egfr-unknown"),  # "renal function unknown: check creatinine before any supplement"
        (25, "egfr-below-30"),  # "eGFR 25: oral magnesium only under specialist supervision"
        (29.6, "egfr-below-30"),  # reported 29.6 is below 30, unrounded (section 3)
    ],
)
def test_possible_deficiency_with_renal_doubt_gets_the_note_and_no_supplement(
    egfr: float | None, qualifier: str
) -> None:
    labs = [lab("serum-magnesium", 0.75)]
    if egfr is not None:
        labs.append(lab("egfr", egfr))
    a = _run(facts(labs=tuple(labs)))
    # Neither check-renal-function nor supplement-renal-caution: those are for a likely deficiency (section 7.2).
    assert a.recommendation_codes == (Code.TEST_IONIZED_MG,)
    rec = _rec(a, Code.TEST_IONIZED_MG)
    assert len(rec.suggestions) == 1
    assert qualifier in rec.qualifiers


def test_possible_deficiency_on_a_supplement_gets_no_drafts_but_an_inorganic_one_is_switched() -> None:
    on_citrate = _run(facts(labs=(lab("serum-magnesium", 0.75), lab("egfr", 45)), meds=(CITRATE,)))
    assert on_citrate.recommendation_codes == (Code.TEST_IONIZED_MG,)
    assert len(_rec(on_citrate, Code.TEST_IONIZED_MG).suggestions) == 1
    # persistent-deficiency is for a likely deficiency only
    on_oxide = _run(facts(labs=(lab("serum-magnesium", 0.75), lab("egfr", 45)), meds=(OXIDE,)))
    assert on_oxide.recommendation_codes == (Code.TEST_IONIZED_MG, Code.SWITCH_TO_ORGANIC)
    on_iv = _run(facts(labs=(lab("serum-magnesium", 0.75), lab("egfr", 45)), meds=(IV_SULFATE,)))
    assert len(_rec(on_iv, Code.TEST_IONIZED_MG).suggestions) == 1


def test_check_renal_function_when_likely_and_egfr_unknown_without_creatinine() -> None:
    a = _run(facts(labs=(lab("serum-magnesium", 0.6),)))
    assert a.recommendation_codes == (Code.CHECK_RENAL_FUNCTION,)
    assert _rec(a, Code.CHECK_RENAL_FUNCTION).suggestions[0].actions == (
        CreateServiceRequest("2160-0", "serum-creatinine"),
    )


@pytest.mark.parametrize(
    ("gender", "birth_known", "gap"),
    [(None, True, "sex-unknown"), ("other", True, "sex-unknown"), ("female", False, "birth-date-unknown")],
)
def test_creatinine_on_file_with_sex_or_birth_date_missing_gets_no_duplicate_creatinine_order(
    gender: str | None, birth_known: bool, gap: str
) -> None:
    # Issue 14's example: creatinine 1.0 mg/dL on file, CKD-EPI cannot be computed (sex or birth date missing):
    # check-renal-function without a creatinine suggestion; the assessment says why (the card's summary words it).
    f = facts(labs=(lab("serum-magnesium", 0.6), lab("serum-creatinine", 1.0)), gender=gender)
    if not birth_known:
        f = replace(f, patient=replace(f.patient, birth_date=None))
    a = _run(f)
    assert a.recommendation_codes == (Code.CHECK_RENAL_FUNCTION,)
    assert _rec(a, Code.CHECK_RENAL_FUNCTION).suggestions == ()
    assert (a.assessment.egfr.source, a.assessment.egfr.gap) == ("none", gap)


def test_unreadable_creatinine_or_pending_creatinine_order() -> None:
    # Safest reading: an unreadable creatinine is no creatinine; a new one is suggested.
    unreadable = lab("serum-creatinine", None, unusable="unit 'g/L' not recognised")
    a = _run(facts(labs=(lab("serum-magnesium", 0.6), unreadable)))
    assert len(_rec(a, Code.CHECK_RENAL_FUNCTION).suggestions) == 1
    # A creatinine already ordered: the card stays (renal function is still unknown), without a second order.
    pending = _run(facts(labs=(lab("serum-magnesium", 0.6),), orders=(order("serum-creatinine"),)))
    rec = _rec(pending, Code.CHECK_RENAL_FUNCTION)
    assert (rec.suggestions, rec.qualifiers) == ((), ("creatinine-ordered",))


@pytest.mark.parametrize(
    ("egfr", "expected"),
    [
        (25, Code.SUPPLEMENT_RENAL_CAUTION),
        (29.6, Code.SUPPLEMENT_RENAL_CAUTION),  # issue 14's example: reported 29.6 is below 30, not rounded to 30
        (30, Code.SUPPLEMENT_ORGANIC),
        (30.4, Code.SUPPLEMENT_ORGANIC),
    ],
)
def test_supplement_renal_caution_and_supplement_organic_exclude_each_other_by_egfr(egfr: float, expected: str) -> None:
    a = _run(facts(labs=(lab("serum-magnesium", 0.6), lab("egfr", egfr))))
    assert a.recommendation_codes == (expected,)
    assert a.recommendations[0].indicator == Indicator.WARNING


def test_egfr_comparator_that_does_not_exclude_below_30_gives_caution() -> None:
    a = _run(facts(labs=(lab("serum-magnesium", 0.6), lab("egfr", 60, comparator="<"))))
    assert a.recommendation_codes == (Code.SUPPLEMENT_RENAL_CAUTION,)
    assert "egfr-below-30-not-excluded" in _rec(a, Code.SUPPLEMENT_RENAL_CAUTION).qualifiers
    below15 = _run(facts(labs=(lab("serum-magnesium", 0.6), lab("egfr", 15, comparator="<"))))
    assert _rec(below15, Code.SUPPLEMENT_RENAL_CAUTION).qualifiers == ()


def test_supplement_organic_is_for_a_likely_deficiency_only() -> None:
    likely = _run(facts(labs=(lab("serum-magnesium", 0.6), lab("egfr", 30))))
    assert likely.recommendation_codes == (Code.SUPPLEMENT_ORGANIC,)
    rec = _rec(likely, Code.SUPPLEMENT_ORGANIC)
    assert rec.indicator == Indicator.WARNING
    assert [s.actions[0] for s in rec.suggestions] == ORGANIC_DRAFTS
    possible = _run(facts(labs=(lab("serum-magnesium", 0.75), lab("egfr", 45))))
    assert possible.recommendation_codes == (Code.TEST_IONIZED_MG,)


def test_supplement_organic_from_ionized_low_with_normal_serum() -> None:
    a = _run(facts(labs=(lab("serum-magnesium", 0.9), lab("ionized-magnesium", 0.40), lab("egfr", 80))))
    assert a.assessment.deficiency == "likely"
    assert a.recommendation_codes == (Code.SUPPLEMENT_ORGANIC,)


@pytest.mark.parametrize(
    ("taken", "expected"),
    [
        ((GLYCINATE,), (Code.PERSISTENT_DEFICIENCY,)),  # issue 14's example: low on glycinate
        ((CITRATE,), (Code.PERSISTENT_DEFICIENCY,)),
        ((UNSTATED,), (Code.PERSISTENT_DEFICIENCY,)),  # an unstated salt may be organic: no second start
        ((OXIDE, CITRATE), (Code.PERSISTENT_DEFICIENCY,)),  # any organic salt -> persistent, not switch
        ((OXIDE,), (Code.SWITCH_TO_ORGANIC,)),  # every oral salt inorganic -> switch
        ((), (Code.SUPPLEMENT_ORGANIC,)),  # none -> supplement-organic
        ((MILK_OF_MAGNESIA,), (Code.SUPPLEMENT_ORGANIC,)),  # a laxative is not a supplement: it blocks no start
        ((MILK_OF_MAGNESIA, OXIDE), (Code.SWITCH_TO_ORGANIC,)),  # the laxative is not switched; the oxide is
    ],
)
def test_supplement_switch_and_persistent_exclude_each_other(taken: tuple[object, ...], expected: tuple[str]) -> None:
    # serum 0.6 (low) -> likely; eGFR 45 >= 30; no parenteral magnesium.
    a = _run(facts(labs=(lab("serum-magnesium", 0.6), lab("egfr", 45)), meds=taken))  # type: ignore[arg-type]
    assert a.recommendation_codes == expected


def test_persistent_deficiency_drafts_nothing_and_names_the_supplement() -> None:
    a = _run(facts(labs=(lab("serum-magnesium", 0.6), lab("egfr", 45)), meds=(GLYCINATE,)))
    rec = _rec(a, Code.PERSISTENT_DEFICIENCY)
    assert (rec.indicator, rec.suggestions, rec.products) == (Indicator.WARNING, (), (GLYCINATE,))


def test_switch_to_organic_drafts_citrate() -> None:
    a = _run(facts(labs=(lab("serum-magnesium", 0.6), lab("egfr", 45)), meds=(OXIDE,)))
    rec = _rec(a, Code.SWITCH_TO_ORGANIC)
    assert rec.indicator == Indicator.INFO
    assert rec.suggestions[0].actions == (CreateMedicationRequest("magnesium citrate", 300),)


def test_milk_of_magnesia_is_not_a_supplement_but_is_stopped_when_serum_is_high() -> None:
    # Issue 14's example: milk of magnesia (a laxative) no longer counts as "already taking a supplement".
    low = _run(facts(labs=(lab("serum-magnesium", 0.6), lab("egfr", 45)), meds=(MILK_OF_MAGNESIA,)))
    assert low.recommendation_codes == (Code.SUPPLEMENT_ORGANIC,)
    high = _run(facts(labs=(lab("serum-magnesium", 1.2), lab("egfr", 95)), meds=(MILK_OF_MAGNESIA,)))
    assert high.recommendation_codes == (Code.STOP_SUPPLEMENT,)
    assert _rec(high, Code.STOP_SUPPLEMENT).products == (MILK_OF_MAGNESIA,)


def test_stop_supplement_on_high_serum_with_any_oral_salt_critical_when_severe_high() -> None:
    for salt in (CITRATE, OXIDE, UNSTATED):
        a = _run(facts(labs=(lab("serum-magnesium", 1.2), lab("egfr", 95)), meds=(salt,)))
        assert a.recommendation_codes == (Code.STOP_SUPPLEMENT,)
        assert _rec(a, Code.STOP_SUPPLEMENT).indicator == Indicator.WARNING
    severe = _run(facts(labs=(lab("serum-magnesium", 2.00), lab("egfr", 95)), meds=(CITRATE,)))
    assert _rec(severe, Code.STOP_SUPPLEMENT).indicator == Indicator.CRITICAL


def test_stop_supplement_names_each_current_magnesium_product() -> None:
    a = _run(facts(labs=(lab("serum-magnesium", 1.2), lab("egfr", 95)), meds=(CITRATE, MILK_OF_MAGNESIA, IV_SULFATE)))
    assert a.recommendation_codes == (Code.STOP_SUPPLEMENT,)
    assert _rec(a, Code.STOP_SUPPLEMENT).products == (CITRATE, MILK_OF_MAGNESIA, IV_SULFATE)


@pytest.mark.parametrize(
    ("serum", "meds", "indicator", "why"),
    [
        (1.60, (), Indicator.WARNING, "issue 14: 1.60 (high, > 1.05 to < 2.00) without a supplement"),
        (1.99, (), Indicator.WARNING, "1.99 is still high"),
        (2.00, (), Indicator.CRITICAL, "2.00 is severe-high [YU16]"),
        (1.2, (IV_SULFATE,), Indicator.INFO, "parenteral magnesium current, serum < 3.5 [LU00]"),
        (3.49, (IV_SULFATE,), Indicator.INFO, "severe-high but inside the therapeutic range on parenteral Mg"),
        (3.50, (IV_SULFATE,), Indicator.CRITICAL, "3.50 is not below 3.5: severe-high, critical"),
    ],
)
def test_evaluate_hypermagnesemia(serum: float, meds: tuple[object, ...], indicator: str, why: str) -> None:
    a = _run(facts(labs=(lab("serum-magnesium", serum), lab("egfr", 20)), meds=meds))  # type: ignore[arg-type]
    assert a.recommendation_codes == (Code.EVALUATE_HYPERMAGNESEMIA,), why
    rec = _rec(a, Code.EVALUATE_HYPERMAGNESEMIA)
    assert (rec.indicator, rec.suggestions) == (indicator, ()), why
    assert ("parenteral-magnesium-current" in rec.qualifiers) is bool(meds)


def test_a_lower_bound_of_3_on_parenteral_magnesium_is_not_read_as_below_3_5() -> None:
    # ">3.0" may be 4.0: not certainly in the therapeutic range, so the card stays critical (severe-high).
    a = _run(facts(labs=(lab("serum-magnesium", 3.0, comparator=">"), lab("egfr", 60)), meds=(IV_SULFATE,)))
    assert _rec(a, Code.EVALUATE_HYPERMAGNESEMIA).indicator == Indicator.CRITICAL


def test_parenteral_magnesium_means_treatment_is_under_way() -> None:
    # Likely deficiency (0.6) on IV magnesium: no oral start (eGFR 45), no renal caution (eGFR 25), no switch.
    assert _codes(facts(labs=(lab("serum-magnesium", 0.6), lab("egfr", 45)), meds=(IV_SULFATE,))) == ()
    assert _codes(facts(labs=(lab("serum-magnesium", 0.6), lab("egfr", 25)), meds=(IV_SULFATE,))) == ()
    # persistent-deficiency also needs "no parenteral magnesium"
    assert _codes(facts(labs=(lab("serum-magnesium", 0.6), lab("egfr", 45)), meds=(IV_SULFATE, GLYCINATE))) == ()


def test_spacing_advice_per_ingredient_on_cards_that_recommend_or_continue_oral_magnesium() -> None:
    cipro = med("ciprofloxacin", "interacts-fluoroquinolone")
    a = _run(facts(labs=(lab("serum-magnesium", 0.6), lab("egfr", 45)), meds=(DOXY, cipro)))
    rec = _rec(a, Code.SUPPLEMENT_ORGANIC)
    assert [(s.interaction_class, s.ingredient) for s in rec.spacing] == [
        ("interacts-tetracycline", "doxycycline"),
        ("interacts-fluoroquinolone", "ciprofloxacin"),
    ]
    persistent = _run(facts(labs=(lab("serum-magnesium", 0.6), lab("egfr", 45)), meds=(GLYCINATE, cipro)))
    assert [s.ingredient for s in _rec(persistent, Code.PERSISTENT_DEFICIENCY).spacing] == ["ciprofloxacin"]
    offered = _run(facts(labs=(lab("serum-magnesium", 0.75), lab("egfr", 45)), meds=(cipro,)))
    assert [s.ingredient for s in _rec(offered, Code.TEST_IONIZED_MG).spacing] == ["ciprofloxacin"]
    # stop-supplement continues nothing: no spacing
    stop = _run(facts(labs=(lab("serum-magnesium", 1.2), lab("egfr", 95)), meds=(CITRATE, cipro)))
    assert _rec(stop, Code.STOP_SUPPLEMENT).spacing == ()


def test_cause_notes_for_a_likely_deficiency_on_the_five_cards() -> None:
    # Section 7.2: PPI [FDA11] and loop/thiazide diuretic cause notes on urgent-evaluation, supplement-organic,
    # persistent-deficiency, switch-to-organic, supplement-renal-caution (likely deficiency only).
    cases = {
        Code.URGENT_EVALUATION: facts(labs=(lab("serum-magnesium", 0.45),), meds=(PPI, LOOP)),
        Code.SUPPLEMENT_ORGANIC: facts(labs=(lab("serum-magnesium", 0.6), lab("egfr", 45)), meds=(PPI, LOOP)),
        Code.PERSISTENT_DEFICIENCY: facts(
            labs=(lab("serum-magnesium", 0.6), lab("egfr", 45)), meds=(PPI, LOOP, GLYCINATE)
        ),
        Code.SWITCH_TO_ORGANIC: facts(labs=(lab("serum-magnesium", 0.6), lab("egfr", 45)), meds=(PPI, LOOP, OXIDE)),
        Code.SUPPLEMENT_RENAL_CAUTION: facts(labs=(lab("serum-magnesium", 0.6), lab("egfr", 25)), meds=(PPI, LOOP)),
    }
    for code, f in cases.items():
        rec = _rec(_run(f), code)
        assert [(c.drug_class, c.ingredient) for c in rec.causes] == [
            ("proton-pump-inhibitor", "omeprazole"),
            ("loop-diuretic", "furosemide"),
        ], code
        assert rec.causes[1].drug.display == "Lasix 40 mg tablet"  # the product name, which differs
    # Not for a possible deficiency, not on check-renal-function, not for a potassium-sparing diuretic.
    possible = _run(facts(labs=(lab("serum-magnesium", 0.75), lab("egfr", 45)), meds=(PPI, OXIDE)))
    assert all(r.causes == () for r in possible.recommendations)
    renal = _run(facts(labs=(lab("serum-magnesium", 0.6),), meds=(PPI,)))
    assert _rec(renal, Code.CHECK_RENAL_FUNCTION).causes == ()
    spiro = med("spironolactone", "potassium-sparing-diuretic")
    spared = _run(facts(labs=(lab("serum-magnesium", 0.6), lab("egfr", 45)), meds=(spiro,)))
    assert _rec(spared, Code.SUPPLEMENT_ORGANIC).causes == ()


def test_patient_view_never_emits_order_codes() -> None:
    draft = med("omeprazole", "proton-pump-inhibitor", draft=True, concerned=True)
    assert _codes(facts(meds=(draft,), labs=(lab("egfr", 95),))) == ()

"""Section 8 (order-select, order-sign) rules of clinical-rules.md version 2, with issue 5's and issue 14's cases."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest

from cds_service.engine.facts import Facts, MedicationFact
from cds_service.engine.recommend.types import CreateMedicationRequest, CreateServiceRequest, DeleteDraft
from cds_service.engine.settings import ClinicalSettings
from cds_service.engine.vocabulary import Indicator
from cds_service.engine.vocabulary import RecommendationCode as Code
from tests.unit.engine.builders import Evaluated, assess_and_recommend, facts, lab, med

SETTINGS = ClinicalSettings()


def _draft(
    name: str, *classes: str, concerned: bool = True, rid: str | None = None, kind: str | None = None
) -> MedicationFact:
    return med(name, *classes, draft=True, concerned=concerned, rid=rid, kind=kind)


def _run(f: Facts) -> Evaluated:
    return assess_and_recommend(f, SETTINGS)


def test_draft_omeprazole_without_magnesium_result() -> None:
    draft = _draft("omeprazole", "proton-pump-inhibitor")
    a = _run(facts(hook="order-select", meds=(draft,), labs=(lab("egfr", 95),)))
    assert a.recommendation_codes == (Code.ORDER_DEPLETES_MG,)
    rec = a.recommendations[0]
    assert (rec.indicator, rec.concerned_draft) == (Indicator.INFO, draft)
    assert rec.suggestions[0].actions == (CreateServiceRequest("19123-9", "serum-magnesium"),)


def test_draft_furosemide_with_serum_0_62_is_warning_without_test_suggestion() -> None:
    draft = _draft("furosemide", "loop-diuretic")
    a = _run(facts(hook="order-sign", meds=(draft,), labs=(lab("serum-magnesium", 0.62), lab("egfr", 95))))
    assert a.recommendation_codes == (Code.ORDER_DEPLETES_MG,)
    assert a.recommendations[0].indicator == Indicator.WARNING
    assert a.recommendations[0].suggestions == ()


def test_draft_other_wasting_drug_depletes() -> None:
    a = _run(facts(hook="order-sign", meds=(_draft("cisplatin", "mg-wasting-other"),)))
    assert a.recommendation_codes == (Code.ORDER_DEPLETES_MG,)


def test_draft_counts_in_mds() -> None:
    draft = _draft("omeprazole", "proton-pump-inhibitor")
    a = _run(facts(hook="order-sign", meds=(draft, med("furosemide", "loop-diuretic")), labs=(lab("egfr", 95),)))
    assert a.assessment.mds.components[0].points == (1, 1)
    assert a.assessment.mds.components[1].points == (1, 1)


def test_draft_magnesium_oxide_switch_is_one_suggestion_with_delete_and_create() -> None:
    draft = _draft("magnesium oxide", "mg-salt-inorganic", rid="mo1")
    a = _run(facts(hook="order-select", meds=(draft,), labs=(lab("egfr", 95),)))
    assert a.recommendation_codes == (Code.SWITCH_TO_ORGANIC,)
    (suggestion,) = a.recommendations[0].suggestions
    assert suggestion.actions == (
        DeleteDraft("MedicationRequest", "mo1"),
        CreateMedicationRequest("magnesium citrate", 300),
    )


def test_draft_citrate_with_egfr_25_is_contraindicated_with_delete() -> None:
    draft = _draft("magnesium citrate", "mg-salt-organic", rid="mc1")
    a = _run(facts(hook="order-sign", meds=(draft,), labs=(lab("egfr", 25),)))
    assert a.recommendation_codes == (Code.ORDER_SUPPLEMENT_CONTRAINDICATED,)
    rec = a.recommendations[0]
    assert rec.indicator == Indicator.WARNING
    assert rec.suggestions[0].actions == (DeleteDraft("MedicationRequest", "mc1"),)


def test_draft_supplement_with_high_serum_is_contraindicated() -> None:
    draft = _draft("magnesium citrate", "mg-salt-organic")
    a = _run(facts(hook="order-sign", meds=(draft,), labs=(lab("egfr", 95), lab("serum-magnesium", 1.2))))
    assert a.recommendation_codes == (Code.ORDER_SUPPLEMENT_CONTRAINDICATED,)


def test_contraindicated_inorganic_salt_is_not_switched() -> None:
    draft = _draft("magnesium oxide", "mg-salt-inorganic")
    a = _run(facts(hook="order-sign", meds=(draft,), labs=(lab("egfr", 25),)))
    assert a.recommendation_codes == (Code.ORDER_SUPPLEMENT_CONTRAINDICATED,)


def test_draft_citrate_while_doxycycline_active_needs_spacing() -> None:
    draft = _draft("magnesium citrate", "mg-salt-organic")
    doxy = med("doxycycline", "interacts-tetracycline")
    a = _run(facts(hook="order-select", meds=(draft, doxy), labs=(lab("egfr", 95),)))
    assert a.recommendation_codes == (Code.ORDER_SPACING,)
    assert [(s.interaction_class, s.drug) for s in a.recommendations[0].spacing] == [("interacts-tetracycline", doxy)]


def test_draft_doxycycline_while_citrate_active_needs_spacing() -> None:
    draft = _draft("doxycycline", "interacts-tetracycline")
    citrate = med("magnesium citrate", "mg-salt-organic")
    a = _run(facts(hook="order-select", meds=(draft, citrate), labs=(lab("egfr", 95),)))
    assert a.recommendation_codes == (Code.ORDER_SPACING,)
    assert a.recommendations[0].concerned_draft == draft


def test_spacing_with_other_draft_and_without_partner() -> None:
    citrate = _draft("magnesium citrate", "mg-salt-organic", concerned=False)
    cipro = _draft("ciprofloxacin", "interacts-fluoroquinolone")
    a = _run(facts(hook="order-select", meds=(citrate, cipro), labs=(lab("egfr", 95),)))
    assert a.recommendation_codes == (Code.ORDER_SPACING,)
    alone = _run(facts(hook="order-select", meds=(cipro,), labs=(lab("egfr", 95),)))
    assert alone.recommendation_codes == ()


def test_order_select_concerning_only_a_diet_order_is_silent_order_sign_is_not() -> None:
    ppi_unselected = _draft("omeprazole", "proton-pump-inhibitor", concerned=False)
    select = _run(facts(hook="order-select", meds=(ppi_unselected,), labs=(lab("egfr", 95),)))
    assert select.recommendation_codes == ()
    ppi_signed = _draft("omeprazole", "proton-pump-inhibitor", concerned=True)
    sign = _run(facts(hook="order-sign", meds=(ppi_signed,), labs=(lab("egfr", 95),)))
    assert sign.recommendation_codes == (Code.ORDER_DEPLETES_MG,)


def test_order_hooks_do_not_repeat_patient_view_testing_cards() -> None:
    # MDS 2 from drugs already taken and no magnesium result: patient-view would say test-serum-mg.
    taken = (med("omeprazole", "proton-pump-inhibitor"), med("furosemide", "loop-diuretic"))
    amoxicillin = _draft(
        "amoxicillin",
    )
    a = _run(facts(hook="order-select", meds=(*taken, amoxicillin), labs=(lab("egfr", 95),)))
    assert a.recommendation_codes == ()
    severe = _run(facts(hook="order-sign", meds=(amoxicillin,), labs=(lab("serum-magnesium", 0.4),)))
    assert severe.recommendation_codes == ()


def test_draft_magnesium_of_unstated_salt_is_a_supplement_for_contraindication_and_not_switched() -> None:
    # Section 8: "a concerned draft is a magnesium supplement and eGFR < 30" -> contraindicated, with a delete.
    # Its salt is not named, so it is not "an inorganic magnesium salt": no switch-to-organic.
    draft = _draft("magnesium (salt not stated)", "mg-salt-unspecified", rid="mg1")
    a = _run(facts(hook="order-sign", meds=(draft,), labs=(lab("egfr", 25),)))
    assert a.recommendation_codes == (Code.ORDER_SUPPLEMENT_CONTRAINDICATED,)
    assert a.recommendations[0].suggestions[0].actions == (DeleteDraft("MedicationRequest", "mg1"),)
    fine = _run(facts(hook="order-sign", meds=(draft,), labs=(lab("egfr", 95), lab("serum-magnesium", 0.8))))
    assert fine.recommendation_codes == ()


def test_parenteral_magnesium_draft_is_not_switched_and_needs_no_spacing() -> None:
    # Switching and spacing are about oral magnesium in the gut (sections 7.3 and 8).
    iv_sulfate = _draft("magnesium sulfate", "mg-salt-inorganic", rid="ms1", kind="parenteral")
    doxy = med("doxycycline", "interacts-tetracycline")
    a = _run(facts(hook="order-sign", meds=(iv_sulfate, doxy), labs=(lab("egfr", 95),)))
    assert a.recommendation_codes == ()
    oral = _draft("magnesium sulfate", "mg-salt-inorganic", rid="ms2")
    b = _run(facts(hook="order-sign", meds=(oral, doxy), labs=(lab("egfr", 95),)))
    assert set(b.recommendation_codes) == {Code.SWITCH_TO_ORGANIC, Code.ORDER_SPACING}


@pytest.mark.parametrize(
    ("labs", "why"),
    [
        ((lab("egfr", 20), lab("serum-magnesium", 0.6)), "issue 14: IV sulfate at eGFR 20 in hypomagnesemia"),
        ((lab("egfr", 29.6),), "reported 29.6 is below 30"),
        ((lab("egfr", 95), lab("serum-magnesium", 1.2)), "serum high"),
        ((lab("egfr", 95), lab("serum-magnesium", 2.1)), "serum severe-high"),
    ],
)
def test_parenteral_magnesium_draft_gets_the_monitoring_card_and_never_a_delete(
    labs: tuple[object, ...], why: str
) -> None:
    iv_sulfate = _draft("magnesium sulfate", "mg-salt-inorganic", rid="ms3", kind="parenteral")
    a = _run(facts(hook="order-sign", meds=(iv_sulfate,), labs=labs))  # type: ignore[arg-type]
    assert a.recommendation_codes == (Code.ORDER_PARENTERAL_MG_MONITOR,), why
    rec = a.recommendations[0]
    assert (rec.indicator, rec.suggestions, rec.concerned_draft) == (Indicator.INFO, (), iv_sulfate), why


def test_parenteral_magnesium_draft_at_normal_egfr_and_low_serum_gets_no_card() -> None:
    iv_sulfate = _draft("magnesium sulfate", "mg-salt-inorganic", kind="parenteral")
    assert (
        _run(
            facts(hook="order-sign", meds=(iv_sulfate,), labs=(lab("egfr", 95), lab("serum-magnesium", 0.6)))
        ).recommendation_codes
        == ()
    )


def test_oral_magnesium_beside_a_parenteral_one_gets_no_spacing_from_it() -> None:
    iv_sulfate = med("magnesium sulfate", "mg-salt-inorganic", kind="parenteral")
    draft = _draft("doxycycline", "interacts-tetracycline")
    a = _run(facts(hook="order-select", meds=(draft, iv_sulfate), labs=(lab("egfr", 95),)))
    assert a.recommendation_codes == ()


def test_a_laxative_draft_is_oral_magnesium_for_contraindication_and_spacing_but_never_switched() -> None:
    # Section 8: order-supplement-contraindicated for any oral magnesium product (supplement or laxative/antacid).
    milk = _draft("magnesium hydroxide", "mg-salt-inorganic", rid="mom", kind="laxative-antacid")
    a = _run(facts(hook="order-sign", meds=(milk,), labs=(lab("egfr", 25),)))
    assert a.recommendation_codes == (Code.ORDER_SUPPLEMENT_CONTRAINDICATED,)
    assert a.recommendations[0].suggestions[0].actions == (DeleteDraft("MedicationRequest", "mom"),)
    cipro = med("ciprofloxacin", "interacts-fluoroquinolone")
    b = _run(facts(hook="order-sign", meds=(milk, cipro), labs=(lab("egfr", 95),)))
    assert b.recommendation_codes == (Code.ORDER_SPACING,)  # inorganic, but a laxative: no switch-to-organic
    assert [s.ingredient for s in b.recommendations[0].spacing] == ["ciprofloxacin"]


def test_depleting_draft_of_an_ingredient_already_taken_gets_no_card() -> None:
    # Section 8: not given when the drafted ingredient is already current in the record (patient-view covers it),
    # not counting the concerned draft itself nor other drafts.
    taken = med("furosemide", "loop-diuretic", display="Lasix 40 mg tablet")
    draft = _draft("furosemide", "loop-diuretic")
    assert _run(facts(hook="order-sign", meds=(draft, taken), labs=(lab("egfr", 95),))).recommendation_codes == ()
    other_draft = _draft("furosemide", "loop-diuretic", concerned=False)
    a = _run(facts(hook="order-sign", meds=(draft, other_draft), labs=(lab("egfr", 95),)))
    assert a.recommendation_codes == (Code.ORDER_DEPLETES_MG,)
    stopped = med("furosemide", "loop-diuretic", status="stopped")
    b = _run(facts(hook="order-sign", meds=(draft, stopped), labs=(lab("egfr", 95),)))
    assert b.recommendation_codes == (Code.ORDER_DEPLETES_MG,)


def test_ppi_draft_card_says_the_risk_comes_with_long_term_use() -> None:
    a = _run(facts(hook="order-select", meds=(_draft("omeprazole", "proton-pump-inhibitor"),), labs=(lab("egfr", 95),)))
    assert a.recommendations[0].qualifiers == ("long-term-ppi",)
    b = _run(facts(hook="order-select", meds=(_draft("furosemide", "loop-diuretic"),), labs=(lab("egfr", 95),)))
    assert b.recommendations[0].qualifiers == ()


def test_order_hooks_give_no_card_for_a_child_or_a_deceased_patient() -> None:
    # Section 0: order hooks are adults only; deceased: no cards. An adult gets order-supplement-contraindicated here.
    draft = _draft("magnesium citrate", "mg-salt-organic")
    adult = facts(hook="order-sign", meds=(draft,), labs=(lab("egfr", 25),))
    assert _run(adult).recommendation_codes == (Code.ORDER_SUPPLEMENT_CONTRAINDICATED,)
    child = replace(adult, patient=replace(adult.patient, birth_date=date(2020, 6, 1)))
    assert _run(child).recommendation_codes == ()
    deceased = replace(adult, patient=replace(adult.patient, deceased=True))
    assert _run(deceased).recommendation_codes == ()

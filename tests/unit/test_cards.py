"""Cards: CDS Hooks 2.0 shape, FHIR R4 suggestions, summaries, escaping of EHR text."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from dataclasses import replace
from datetime import date
from typing import Any

import pytest
from fhir.resources.R4B.medicationrequest import MedicationRequest
from fhir.resources.R4B.servicerequest import ServiceRequest
from hypothesis import given, settings

from cds_service.cards import CardBuildError, build_cards, medication_request
from cds_service.engine.facts import Facts
from cds_service.engine.recommend.types import CreateMedicationRequest
from cds_service.engine.settings import ClinicalSettings
from cds_service.engine.vocabulary import RecommendationCode as Code
from terminology import default_terminology
from tests.unit.engine.builders import assess_and_recommend, facts, lab, med
from tests.unit.engine.strategies import any_facts

SETTINGS = ClinicalSettings()
PRODUCTS = default_terminology().supplement_products()
SOURCE_URL = "https://mgcds.example.org/docs"
INDICATORS = {"info", "warning", "critical"}
OVERRIDE_CODES = {
    "already-addressed",
    "recent-result-elsewhere",
    "patient-declined",
    "not-clinically-relevant",
}
RESOURCE_MODELS: dict[str, Any] = {"ServiceRequest": ServiceRequest, "MedicationRequest": MedicationRequest}


@pytest.fixture
def id_factory() -> Callable[[], str]:
    counter = itertools.count(1)
    return lambda: f"00000000-0000-4000-8000-{next(counter):012d}"


def _no_empty(value: Any, where: str = "card") -> None:
    assert value is not None, where
    assert value not in ("", [], {}), where
    if isinstance(value, dict):
        for key, item in value.items():
            _no_empty(item, f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _no_empty(item, f"{where}[{i}]")


def check_card(card: dict[str, Any]) -> None:
    """CDS Hooks 2.0 card rules we rely on (spec "Card Attributes"), independent of cards.py."""
    _no_empty(card)
    assert isinstance(card["uuid"], str)
    assert isinstance(card["summary"], str)
    assert len(card["summary"]) < 140
    assert card["indicator"] in INDICATORS
    assert set(card["source"]) >= {"label"}
    assert isinstance(card["detail"], str)
    assert "org.mgcds.recommendation" in card["extension"]
    assert set(card["extension"]) <= {"org.mgcds.recommendation", "org.mgcds.draft-order"}
    if "org.mgcds.draft-order" in card["extension"]:
        assert re.fullmatch(r"(MedicationRequest|ServiceRequest)/.+", card["extension"]["org.mgcds.draft-order"])
    assert {c["code"] for c in card["overrideReasons"]} == OVERRIDE_CODES
    for coding in card["overrideReasons"]:
        assert set(coding) >= {"code", "system", "display"}
    for link in card.get("links", []):
        assert link["type"] == "absolute"
        assert link["url"].startswith("https://doi.org/")
    if "suggestions" in card:
        assert card["selectionBehavior"] == "at-most-one"
    for suggestion in card.get("suggestions", []):
        assert isinstance(suggestion["label"], str)
        assert isinstance(suggestion["uuid"], str)
        for action in suggestion["actions"]:
            assert action["type"] in {"create", "delete"}
            assert isinstance(action["description"], str)
            if action["type"] == "create":
                resource = action["resource"]
                RESOURCE_MODELS[resource["resourceType"]].model_validate(resource)
                assert resource["status"] == "draft"
                assert resource["intent"] == "order"
                assert resource["subject"] == {"reference": "Patient/p1"}
            else:
                assert action["resourceId"].startswith("MedicationRequest/")


def _cards(f: Facts, id_factory: Callable[[], str]) -> list[dict[str, Any]]:
    e = assess_and_recommend(f, SETTINGS)
    cards = build_cards(
        e.recommendations,
        e.assessment,
        f,
        source_url=SOURCE_URL,
        id_factory=id_factory,
        settings=SETTINGS,
        products=PRODUCTS,
    )
    for card in cards:
        check_card(card)
    return cards


PPI = med("omeprazole", "proton-pump-inhibitor")
LOOP = med("furosemide", "loop-diuretic")

# One scenario per recommendation code (inputs as in engine/test_recommend.py and test_order_rules.py).
SCENARIOS: dict[str, tuple[Facts, str]] = {
    Code.URGENT_EVALUATION: (facts(labs=(lab("serum-magnesium", 0.45),)), "0.45"),
    Code.TEST_SERUM_MG: (
        facts(labs=(lab("egfr", 95), lab("alcohol-drinks-per-day", 0)), meds=(PPI, LOOP)),
        "MDS 2/5",
    ),
    Code.TEST_IONIZED_MG: (facts(labs=(lab("serum-magnesium", 0.75), lab("egfr", 95))), "0.75"),
    Code.CHECK_RENAL_FUNCTION: (facts(labs=(lab("serum-magnesium", 0.6),)), "0.60 mmol/L"),
    Code.SUPPLEMENT_RENAL_CAUTION: (facts(labs=(lab("serum-magnesium", 0.6), lab("egfr", 25))), "eGFR 25"),
    Code.SUPPLEMENT_ORGANIC: (facts(labs=(lab("serum-magnesium", 0.6), lab("egfr", 45))), "300 mg/day"),
    Code.SWITCH_TO_ORGANIC: (
        facts(
            labs=(lab("serum-magnesium", 0.6), lab("egfr", 45)),
            meds=(med("magnesium oxide", "mg-salt-inorganic"),),
        ),
        "Magnesium oxide",
    ),
    Code.STOP_SUPPLEMENT: (
        facts(
            labs=(lab("serum-magnesium", 1.2), lab("egfr", 95)),
            meds=(med("magnesium citrate", "mg-salt-organic"),),
        ),
        "1.20",
    ),
    Code.ORDER_DEPLETES_MG: (
        facts(
            hook="order-select",
            meds=(med("omeprazole", "proton-pump-inhibitor", draft=True, concerned=True),),
        ),
        "Omeprazole",
    ),
    Code.ORDER_SUPPLEMENT_CONTRAINDICATED: (
        facts(
            hook="order-sign",
            labs=(lab("egfr", 25),),
            meds=(med("magnesium citrate", "mg-salt-organic", draft=True, concerned=True, rid="mc1"),),
        ),
        "Magnesium citrate",
    ),
    Code.ORDER_SPACING: (
        facts(
            hook="order-select",
            labs=(lab("egfr", 95),),
            meds=(
                med("magnesium citrate", "mg-salt-organic", draft=True, concerned=True),
                med("doxycycline", "interacts-tetracycline"),
            ),
        ),
        "Magnesium citrate",
    ),
    Code.EVALUATE_HYPERMAGNESEMIA: (facts(labs=(lab("serum-magnesium", 1.60), lab("egfr", 20))), "1.60"),
    Code.PERSISTENT_DEFICIENCY: (
        facts(
            labs=(lab("serum-magnesium", 0.6), lab("egfr", 45)),
            meds=(med("magnesium glycinate", "mg-salt-organic"),),
        ),
        "Magnesium glycinate",
    ),
    Code.ORDER_PARENTERAL_MG_MONITOR: (
        facts(
            hook="order-sign",
            labs=(lab("egfr", 20), lab("serum-magnesium", 0.6)),
            meds=(
                med(
                    "magnesium sulfate",
                    "mg-salt-inorganic",
                    kind="parenteral",
                    display="Magnesium sulfate 2 g IV",
                    draft=True,
                    concerned=True,
                ),
            ),
        ),
        "Magnesium sulfate 2 g IV",
    ),
}


def test_every_recommendation_code_has_a_card_scenario() -> None:
    assert set(SCENARIOS) == set(Code)


@pytest.mark.parametrize("code", sorted(SCENARIOS))
def test_every_recommendation_gives_a_valid_card_with_its_key_figure(code: str, id_factory: Callable[[], str]) -> None:
    f, figure = SCENARIOS[code]
    cards = [c for c in _cards(f, id_factory) if c["extension"]["org.mgcds.recommendation"] == code]
    assert len(cards) == 1
    assert figure in cards[0]["summary"]


def test_uuids_are_unique(id_factory: Callable[[], str]) -> None:
    cards = _cards(SCENARIOS[Code.SUPPLEMENT_ORGANIC][0], id_factory)
    ids = [cards[0]["uuid"]] + [s["uuid"] for s in cards[0]["suggestions"]]
    assert len(ids) == len(set(ids)) == 4


def test_service_request_suggestion_content(id_factory: Callable[[], str]) -> None:
    (card,) = _cards(SCENARIOS[Code.TEST_SERUM_MG][0], id_factory)
    resource = card["suggestions"][0]["actions"][0]["resource"]
    assert resource["code"]["coding"][0] == {
        "system": "http://loinc.org",
        "code": "19123-9",
        "display": "Magnesium [Mass/volume] in Serum or Plasma",
    }
    assert resource["encounter"] == {"reference": "Encounter/e1"}


def test_medication_request_divides_the_daily_dose_in_elemental_magnesium() -> None:
    # Section 9: 300 mg/day in 2 doses is 150 mg elemental magnesium twice a day, said in the text; the citrate
    # tablet's "100 MG" is the salt's weight, so no doseQuantity that could be read as milligrams of salt.
    citrate = PRODUCTS["magnesium citrate"]
    resource = medication_request(CreateMedicationRequest("magnesium citrate", 300), "p1", None, citrate)
    dosage = resource["dosageInstruction"][0]
    assert dosage["text"].startswith("150 mg elemental magnesium as magnesium citrate by mouth twice a day")
    assert "doseAndRate" not in dosage
    assert dosage["timing"]["repeat"] == {"frequency": 2, "period": 1, "periodUnit": "d"}
    assert resource["medicationCodeableConcept"] == {
        "coding": [
            {
                "system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                "code": "1313985",
                "display": "magnesium citrate 100 MG Oral Tablet",
            }
        ],
        "text": "Magnesium citrate oral tablet",
    }
    assert "encounter" not in resource


def test_lactate_draft_has_a_dose_quantity_because_its_strength_is_elemental() -> None:
    # drafts-mg-supplement-products: RxNorm 198936's 84 MG is elemental magnesium (Mag-Tab SR).
    lactate = PRODUCTS["magnesium lactate"]
    resource = medication_request(CreateMedicationRequest("magnesium lactate", 300), "p1", None, lactate)
    dosage = resource["dosageInstruction"][0]
    assert dosage["doseAndRate"] == [
        {
            "doseQuantity": {
                "value": 150,
                "unit": "mg elemental magnesium",
                "system": "http://unitsofmeasure.org",
                "code": "mg",
            }
        }
    ]
    assert resource["medicationCodeableConcept"]["coding"][0]["code"] == "198936"
    assert "84 mg elemental magnesium per tablet" in resource["medicationCodeableConcept"]["text"]


def test_a_salt_without_a_verified_code_is_offered_last_and_named(id_factory: Callable[[], str]) -> None:
    products = {k: v for k, v in PRODUCTS.items() if k != "magnesium citrate"}
    f = SCENARIOS[Code.SUPPLEMENT_ORGANIC][0]
    e = assess_and_recommend(f, SETTINGS)
    (card,) = build_cards(
        e.recommendations,
        e.assessment,
        f,
        source_url=SOURCE_URL,
        id_factory=id_factory,
        settings=SETTINGS,
        products=products,
    )
    concepts = [s["actions"][0]["resource"]["medicationCodeableConcept"] for s in card["suggestions"]]
    assert [c.get("coding", [{}])[0].get("code") for c in concepts] == ["849497", "198936", None]
    assert concepts[2] == {"text": "Magnesium citrate tablet"}
    assert "No verified RxNorm code for magnesium citrate" in card["detail"]


def test_switch_is_one_suggestion_with_delete_and_create(id_factory: Callable[[], str]) -> None:
    oxide = med("magnesium oxide", "mg-salt-inorganic", draft=True, concerned=True, rid="mo1")
    f = facts(hook="order-select", meds=(oxide,))
    (card,) = _cards(f, id_factory)
    (suggestion,) = card["suggestions"]
    assert [a["type"] for a in suggestion["actions"]] == ["delete", "create"]
    assert suggestion["actions"][0]["resourceId"] == "MedicationRequest/mo1"
    concept = suggestion["actions"][1]["resource"]["medicationCodeableConcept"]
    assert concept["coding"][0]["code"] == "1313985"  # RxNorm magnesium citrate 100 MG Oral Tablet
    assert "tablet" in concept["text"]


def test_contraindicated_card_deletes_the_draft(id_factory: Callable[[], str]) -> None:
    (card,) = _cards(SCENARIOS[Code.ORDER_SUPPLEMENT_CONTRAINDICATED][0], id_factory)
    assert card["suggestions"][0]["actions"] == [
        {"type": "delete", "description": "Remove the draft order", "resourceId": "MedicationRequest/mc1"}
    ]


def test_detail_shows_the_deciding_evidence_without_ids_or_urls(id_factory: Callable[[], str]) -> None:
    f = facts(labs=(lab("egfr", 95), lab("alcohol-drinks-per-day", 0)), meds=(PPI, LOOP), medications_known=False)
    (card,) = _cards(f, id_factory)
    detail = card["detail"]
    # Section 7.4: the score with its components, the drugs by name, the eGFR and how it was obtained, what was
    # not known; no resource id, no code-system URL; the sources as tags, their DOIs in the links.
    assert "MDS 2/5 (moderate) [FAN21]: diuretic 1, PPI 1, eGFR 0, heavy drinking 0" in detail
    assert "Omeprazole" in detail
    assert "Furosemide" in detail
    assert "eGFR 95 mL/min/1.73 m2, laboratory-reported" in detail
    assert "Not known: the complete medication list" in detail
    assert PPI.resource_id not in detail
    assert "http" not in detail
    assert "Ionized" not in detail  # not this card's evidence
    assert "https://doi.org/10.1093/jn/nxab138" in [link["url"] for link in card["links"]]
    assert len([line for line in detail.splitlines() if line.startswith("- ")]) <= 6


def test_spacing_advice_in_detail(id_factory: Callable[[], str]) -> None:
    (card,) = _cards(SCENARIOS[Code.ORDER_SPACING][0], id_factory)
    assert "2-3 hours apart" in card["detail"]


# Section 7.3 (version 2): the advice depends on the ingredient. Texts are the table's, one row per drug.
SPACING_ROWS = [
    ("ciprofloxacin", "interacts-fluoroquinolone", "ciprofloxacin 2 hours before or 6 hours after magnesium"),
    ("levofloxacin", "interacts-fluoroquinolone", "levofloxacin 2 hours before or 2 hours after magnesium"),
    ("moxifloxacin", "interacts-fluoroquinolone", "moxifloxacin 4 hours before or 8 hours after magnesium"),
    ("alendronate", "interacts-bisphosphonate", "alendronate first, at least 30 minutes before magnesium"),
    ("risedronate", "interacts-bisphosphonate", "risedronate first, at least 30 minutes before magnesium"),
    ("ibandronate", "interacts-bisphosphonate", "ibandronate at least 60 minutes before magnesium"),
    ("levothyroxine", "interacts-levothyroxine", "levothyroxine and magnesium 4 hours apart"),
    ("dolutegravir", "interacts-integrase-inhibitor", "dolutegravir 2 hours before or 6 hours after magnesium"),
    ("bictegravir", "interacts-integrase-inhibitor", "bictegravir 2 hours before or 6 hours after magnesium"),
    ("eltrombopag", "interacts-eltrombopag", "eltrombopag 2 hours before or 4 hours after magnesium"),
    ("gabapentin", "interacts-gabapentin", "gabapentin at least 2 hours after magnesium"),
    ("minocycline", "interacts-tetracycline", "minocycline and magnesium 2-3 hours apart"),
]


@pytest.mark.parametrize(("ingredient", "drug_class", "advice"), SPACING_ROWS, ids=[r[0] for r in SPACING_ROWS])
def test_spacing_advice_per_drug(ingredient: str, drug_class: str, advice: str, id_factory: Callable[[], str]) -> None:
    f = facts(labs=(lab("serum-magnesium", 0.6), lab("egfr", 45)), meds=(med(ingredient, drug_class),))
    (card,) = _cards(f, id_factory)
    assert advice in card["detail"]


def test_possible_deficiency_gets_one_card_with_the_salts_as_alternatives(id_factory: Callable[[], str]) -> None:
    (card,) = _cards(facts(labs=(lab("serum-magnesium", 0.75), lab("egfr", 95))), id_factory)
    assert card["extension"]["org.mgcds.recommendation"] == "test-ionized-mg"
    assert card["selectionBehavior"] == "at-most-one"
    resources = [s["actions"][0]["resource"]["resourceType"] for s in card["suggestions"]]
    assert resources == ["ServiceRequest", "MedicationRequest", "MedicationRequest", "MedicationRequest"]
    assert "Alternatively start an organic magnesium salt" in card["detail"]
    assert {"https://doi.org/10.3390/nu12123672", "https://doi.org/10.3390/nu13041136"} <= {
        link["url"] for link in card["links"]
    }


def test_possible_deficiency_renal_notes(id_factory: Callable[[], str]) -> None:
    (low,) = _cards(facts(labs=(lab("serum-magnesium", 0.75), lab("egfr", 25))), id_factory)
    assert "eGFR 25: oral magnesium only under specialist supervision" in low["detail"]
    (unknown,) = _cards(facts(labs=(lab("serum-magnesium", 0.75),)), id_factory)
    assert "renal function unknown: check creatinine before any supplement" in unknown["detail"].lower()


def test_dual_units_and_unrounded_egfr(id_factory: Callable[[], str]) -> None:
    # 1.9 mg/dL x 0.4114 = 0.78166 -> 0.78 mmol/L; the laboratory's value and unit follow (section 2).
    reported = lab("serum-magnesium", 1.9 * 0.4114)
    reported = replace(reported, evidence=replace(reported.evidence, value="1.9", unit="mg/dL"))
    (card,) = _cards(facts(labs=(reported, lab("egfr", 29.6))), id_factory)
    assert "serum Mg 0.78 mmol/L (1.9 mg/dL, low-normal)" in card["summary"]
    assert "eGFR 29.6: oral magnesium only under specialist supervision" in card["detail"]


def test_computed_and_laboratory_egfr_are_both_shown(id_factory: Callable[[], str]) -> None:
    # CKD-EPI female 60, creatinine 2.5 mg/dL = 21 (hand calculation in engine/test_scope_and_egfr_v2.py); the
    # laboratory reported 81 the same day.
    f = facts(labs=(lab("serum-magnesium", 0.6), lab("serum-creatinine", 2.5, days_ago=2), lab("egfr", 81, days_ago=2)))
    (card,) = _cards(f, id_factory)
    assert "computed 21, laboratory reported 81" in card["detail"]


def test_cause_notes_and_femg_line_on_a_likely_deficiency(id_factory: Callable[[], str]) -> None:
    # FEMg: U_Mg 2.0 x S_Cr 1.0 / (0.7 x S_Mg 0.6 x U_Cr 100) x 100 = 4.76 -> 4.8 % ; eGFR 75 >= 60 -> renal-wasting.
    labs = (
        lab("urine-magnesium", 2.0, days_ago=3),
        lab("urine-creatinine", 100.0, days_ago=3),
        lab("serum-magnesium", 0.6, days_ago=2),
        lab("serum-creatinine", 1.0, days_ago=3),
        lab("egfr", 75, days_ago=1),  # newer than the creatinine: the reported 75 counts
    )
    meds = (med("omeprazole", "proton-pump-inhibitor"), med("furosemide", "loop-diuretic", display="Lasix 40 mg"))
    (card,) = _cards(facts(labs=labs, meds=meds), id_factory)
    assert card["extension"]["org.mgcds.recommendation"] == "supplement-organic"
    detail = card["detail"]
    assert "FEMg 4.8 % (renal-wasting) [TUC20]" in detail
    assert "supplements alone may not correct" in detail
    assert "[FDA11]" in detail
    assert "furosemide (Lasix 40 mg), a loop diuretic" in detail


def test_pediatric_card_names_the_upper_intake_and_links_iom97(id_factory: Callable[[], str]) -> None:
    # Born 2020-06-01: 5 at NOW; [IOM97] upper intake at 4-8 years: 110 mg/day.
    (card,) = _cards(facts(birth=date(2020, 6, 1), labs=(lab("serum-magnesium", 0.45),)), id_factory)
    assert "the adult rules" in card["detail"]
    assert "110 mg/day" in card["detail"]
    assert "https://doi.org/10.17226/5776" in [link["url"] for link in card["links"]]


def test_stop_supplement_names_every_current_magnesium_product(id_factory: Callable[[], str]) -> None:
    meds = (
        med("magnesium hydroxide", "mg-salt-inorganic", kind="laxative-antacid", display="Milk of Magnesia"),
        med("magnesium sulfate", "mg-salt-inorganic", kind="parenteral", display="Magnesium sulfate 4 g IV"),
    )
    (card,) = _cards(facts(labs=(lab("serum-magnesium", 2.2), lab("egfr", 60)), meds=meds), id_factory)
    assert card["indicator"] == "critical"  # 2.20 is severe-high
    assert "Milk of Magnesia (laxative or antacid)" in card["detail"]
    assert "Magnesium sulfate 4 g IV (parenteral)" in card["detail"]


def test_creatinine_on_file_without_sex_says_why_and_orders_nothing(id_factory: Callable[[], str]) -> None:
    f = facts(gender=None, labs=(lab("serum-magnesium", 0.6), lab("serum-creatinine", 1.0)))
    (card,) = _cards(f, id_factory)
    assert "suggestions" not in card
    assert "sex not recorded" in card["summary"]


INJECTION = "**Bold** <script>alert(1)</script> [click](https://evil.example) _x_ `code` # title"


def test_markdown_and_html_injection_in_drug_display_is_escaped(id_factory: Callable[[], str]) -> None:
    draft = med("omeprazole", "proton-pump-inhibitor", draft=True, concerned=True)
    draft = type(draft)(**{**draft.__dict__, "display": INJECTION})
    (card,) = _cards(facts(hook="order-select", meds=(draft,)), id_factory)
    detail, summary = card["detail"], card["summary"]
    for raw in ("<script>", "**Bold**", "[click](", "`code`", "_x_"):
        assert raw not in detail
        assert raw not in summary
    assert "&lt;script&gt;" in detail
    assert "<" not in summary


def test_without_patient_id_no_create_suggestions(id_factory: Callable[[], str]) -> None:
    f = Facts(**{**SCENARIOS[Code.TEST_SERUM_MG][0].__dict__, "patient_id": None})
    e = assess_and_recommend(f, SETTINGS)
    (card,) = build_cards(
        e.recommendations,
        e.assessment,
        f,
        source_url=SOURCE_URL,
        id_factory=id_factory,
        settings=SETTINGS,
        products=PRODUCTS,
    )
    assert "suggestions" not in card
    assert "selectionBehavior" not in card


def test_invalid_suggestion_resource_is_our_bug() -> None:
    with pytest.raises(CardBuildError):
        medication_request(CreateMedicationRequest("magnesium citrate", 300, doses_per_day=-2), "p1", None)


@settings(max_examples=150, deadline=None)
@given(any_facts())
def test_cards_for_any_facts_are_valid(f: Facts) -> None:
    counter = itertools.count(1)
    e = assess_and_recommend(f, SETTINGS)
    cards = build_cards(
        e.recommendations,
        e.assessment,
        f,
        source_url=SOURCE_URL,
        id_factory=lambda: f"id-{next(counter)}",
        settings=SETTINGS,
        products=PRODUCTS,
    )
    assert len(cards) == len(e.recommendations)
    for card in cards:
        check_card(card)


def test_summary_shows_the_ionized_figure_when_it_drives_the_deficiency(
    id_factory: Callable[[], str],
) -> None:
    f = facts(labs=(lab("serum-magnesium", 0.9), lab("ionized-magnesium", 0.40), lab("egfr", 80)))
    (card,) = _cards(f, id_factory)
    assert "ionized Mg 0.40 mmol/L (low)" in card["summary"]

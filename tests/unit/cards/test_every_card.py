"""What must hold for every card of every test patient (issue 15 "done when"): the hand-written patients and their
order scenarios, the example requests, the Synthea fixtures (with ../shared) and a generated population."""

from __future__ import annotations

import re
from collections import Counter

from tests.unit.cards.corpus import all_cards, all_cases

DETAIL_MAX_CHARS = 900  # clinical-rules.md section 7.4
SUMMARY_BELOW_CHARS = 140  # CDS Hooks 2.0, card summary
# A resource id as the old details printed them ("Observation/abc") or a code-system URL.
RESOURCE_REFERENCE = re.compile(r"\b(Observation|MedicationRequest|MedicationStatement|Condition|ServiceRequest)/")


def test_the_corpus_is_varied() -> None:
    codes = Counter(card["extension"]["org.mgcds.recommendation"] for _, card in all_cards())
    assert len(all_cases()) >= 400
    assert len(codes) >= 10, codes  # most recommendation codes are exercised; tests/unit/test_cards.py has all


def test_no_card_detail_is_over_900_characters() -> None:
    longest = max(((len(card["detail"]), label, card["extension"]) for label, card in all_cards()), default=(0,))
    assert longest[0] <= DETAIL_MAX_CHARS, longest


def test_summaries_are_short_and_details_have_at_most_six_evidence_lines() -> None:
    for label, card in all_cards():
        assert len(card["summary"]) < SUMMARY_BELOW_CHARS, (label, card["summary"])
        bullets = [line for line in card["detail"].splitlines() if line.startswith("- ")]
        assert len(bullets) <= 6, (label, card["detail"])


def test_no_resource_id_or_url_in_any_card_text() -> None:
    for label, card in all_cards():
        for text in (card["summary"], card["detail"]):
            assert "http" not in text, (label, text)
            assert RESOURCE_REFERENCE.search(text) is None, (label, text)


def test_every_card_keeps_its_override_reasons_and_links_only_dois() -> None:
    for label, card in all_cards():
        assert {r["code"] for r in card["overrideReasons"]} == {
            "already-addressed",
            "recent-result-elsewhere",
            "patient-declined",
            "not-clinically-relevant",
        }, label
        for link in card.get("links", []):
            assert link["url"].startswith("https://doi.org/10."), (label, link)
            assert link["label"], label


def test_every_drafted_medication_request_is_coded_and_its_dose_is_elemental() -> None:
    drafts = 0
    for label, card in all_cards():
        for suggestion in card.get("suggestions", []):
            for action in suggestion["actions"]:
                resource = action.get("resource") or {}
                if resource.get("resourceType") != "MedicationRequest":
                    continue
                drafts += 1
                concept = resource["medicationCodeableConcept"]
                (coding,) = concept["coding"]
                assert coding["system"] == "http://www.nlm.nih.gov/research/umls/rxnorm", label
                assert coding["code"] in {"1313985", "849497", "198936"}, label
                assert coding["display"], label
                # Section 9: the salt and the form, never a bare "magnesium citrate" (also a bowel preparation).
                assert re.fullmatch(r"Magnesium (citrate|glycinate|lactate) .*tablet.*", concept["text"]), label
                (dosage,) = resource["dosageInstruction"]
                assert "mg elemental magnesium as magnesium" in dosage["text"], label
                for dose in dosage.get("doseAndRate", []):
                    # Only where the product's strength is elemental magnesium: RxNorm 198936, 84 mg elemental.
                    assert coding["code"] == "198936", label
                    assert dose["doseQuantity"]["unit"] == "mg elemental magnesium", label
    assert drafts >= 10


def test_every_drafted_service_request_has_a_loinc_display() -> None:
    for label, card in all_cards():
        for suggestion in card.get("suggestions", []):
            for action in suggestion["actions"]:
                resource = action.get("resource") or {}
                if resource.get("resourceType") == "ServiceRequest":
                    (coding,) = resource["code"]["coding"]
                    assert coding["system"] == "http://loinc.org", label
                    assert coding["display"], label

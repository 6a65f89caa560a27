"""Recommendations -> CDS Hooks 2.0 cards: one card per recommendation, in order, checked before it leaves.

Assembly only: the words come from ``wording``, the suggestions from ``suggestions``. CDS Hooks forbids null and
empty values; a card with one is our bug (``CardBuildError``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from cds_service.cards.detail import card_detail
from cds_service.cards.suggestions import CardBuildError, Products, has_verified_code, suggestion
from cds_service.cards.wording import SOURCES, card_summary, cited_tags
from cds_service.engine.assessment import Assessment
from cds_service.engine.facts import Facts
from cds_service.engine.recommend.types import CreateMedicationRequest, Recommendation
from cds_service.engine.settings import ClinicalSettings
from cds_service.vocabulary import CardExtension

SOURCE_LABEL = "MgCDS magnesium decision support"
OVERRIDE_REASON_SYSTEM = "https://mgcds.example.org/fhir/CodeSystem/override-reason"
OVERRIDE_REASONS = (
    ("already-addressed", "Already addressed"),
    ("recent-result-elsewhere", "Recent result available elsewhere"),
    ("patient-declined", "Patient declined"),
    ("not-clinically-relevant", "Not clinically relevant for this patient"),
)


def build_cards(
    recommendations: Sequence[Recommendation],
    assessment: Assessment,
    facts: Facts,
    *,
    source_url: str,
    id_factory: Callable[[], str],
    settings: ClinicalSettings,
    products: Products,
) -> list[dict[str, Any]]:
    """One CDS Hooks card per recommendation, suggestions validated as FHIR R4.

    ``products`` are the RxNorm tablets to draft per salt (``TerminologyService.supplement_products()``).
    """
    cards = [_card(rec, assessment, facts, source_url, id_factory, settings, products) for rec in recommendations]
    for card in cards:
        _require_no_empty(card, "card")
    return cards


def _card(
    rec: Recommendation,
    assessment: Assessment,
    facts: Facts,
    source_url: str,
    id_factory: Callable[[], str],
    settings: ClinicalSettings,
    products: Products,
) -> dict[str, Any]:
    # Section 9: a salt without a verified RxNorm product is offered after the ones that have one, and the card
    # says which (stable sort: the rules' order otherwise).
    specs = sorted(rec.suggestions, key=lambda spec: not has_verified_code(spec, products))
    uncoded = tuple(
        dict.fromkeys(
            action.salt
            for spec in specs
            for action in spec.actions
            if isinstance(action, CreateMedicationRequest) and action.salt not in products
        )
    )
    detail = card_detail(rec, assessment, facts, uncoded)
    card: dict[str, Any] = {
        "uuid": id_factory(),
        "summary": card_summary(rec, assessment, settings),
        "indicator": rec.indicator.value,
        "detail": detail,
        "source": {"label": SOURCE_LABEL, "url": source_url},
        "overrideReasons": [
            {"system": OVERRIDE_REASON_SYSTEM, "code": code, "display": display} for code, display in OVERRIDE_REASONS
        ],
        "extension": {CardExtension.RECOMMENDATION.value: rec.code.value},
    }
    if rec.draft_reference is not None:
        # Order hooks: which draft the card is about (the EHR, the audit log and a reviewer can tell them apart).
        card["extension"][CardExtension.DRAFT_ORDER.value] = rec.draft_reference
    # Section 7.4: the sources the text cites as tags, linked where a DOI was verified.
    links = [
        {"label": f"[{tag}] {SOURCES[tag][0]}", "url": SOURCES[tag][1], "type": "absolute"}
        for tag in cited_tags(detail)
        if tag in SOURCES
    ]
    if links:
        card["links"] = links
    suggestions = [suggestion(s, facts, id_factory, products) for s in specs]
    suggestions = [s for s in suggestions if s["actions"]]
    if suggestions:
        card["suggestions"] = suggestions
        card["selectionBehavior"] = "at-most-one"
    return card


def _require_no_empty(value: Any, where: str) -> None:
    """CDS Hooks forbids null and empty values; finding one is our bug."""
    if value is None or value == "" or value == [] or value == {}:
        raise CardBuildError(f"empty value at {where}")
    if isinstance(value, dict):
        for key, item in value.items():
            _require_no_empty(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _require_no_empty(item, f"{where}[{index}]")

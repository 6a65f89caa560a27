"""Recommendations -> CDS Hooks 2.0 cards: one card per recommendation, in order, checked before it leaves.

Assembly only: the words come from ``wording``, the suggestions from ``suggestions``. CDS Hooks forbids null and
empty values; a card with one is our bug (``CardBuildError``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from cds_service.cards.suggestions import CardBuildError, suggestion
from cds_service.cards.wording import CODE_SOURCES, SOURCES, card_detail, card_summary
from cds_service.engine.assessment import Assessment
from cds_service.engine.facts import Facts
from cds_service.engine.recommend.types import CreateMedicationRequest, Recommendation
from cds_service.engine.vocabulary import Qualifier, RecommendationCode
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
) -> list[dict[str, Any]]:
    """One CDS Hooks card per recommendation, suggestions validated as FHIR R4."""
    cards = [_card(rec, assessment, facts, source_url, id_factory) for rec in recommendations]
    for card in cards:
        _require_no_empty(card, "card")
    return cards


def _card(
    rec: Recommendation,
    assessment: Assessment,
    facts: Facts,
    source_url: str,
    id_factory: Callable[[], str],
) -> dict[str, Any]:
    tags = CODE_SOURCES.get(rec.code, ())
    if rec.code == RecommendationCode.TEST_IONIZED_MG and any(
        isinstance(action, CreateMedicationRequest) for spec in rec.suggestions for action in spec.actions
    ):
        tags = (*tags, "PIC20", "FIO21")  # the organic salts offered as alternatives (section 7.2)
    if Qualifier.PEDIATRIC in rec.qualifiers:
        tags = (*tags, "IOM97")  # the age-specific upper intake the detail names (section 0)
    card: dict[str, Any] = {
        "uuid": id_factory(),
        "summary": card_summary(rec, assessment),
        "indicator": rec.indicator.value,
        "detail": card_detail(rec, assessment, tags),
        "source": {"label": SOURCE_LABEL, "url": source_url},
        "overrideReasons": [
            {"system": OVERRIDE_REASON_SYSTEM, "code": code, "display": display} for code, display in OVERRIDE_REASONS
        ],
        "extension": {CardExtension.RECOMMENDATION.value: rec.code.value},
    }
    if rec.draft_reference is not None:
        # Order hooks: which draft the card is about (the EHR, the audit log and a reviewer can tell them apart).
        card["extension"][CardExtension.DRAFT_ORDER.value] = rec.draft_reference
    links = [{"label": SOURCES[t][0], "url": SOURCES[t][1], "type": "absolute"} for t in tags]
    if links:
        card["links"] = links
    suggestions = [suggestion(s, facts, id_factory) for s in rec.suggestions]
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

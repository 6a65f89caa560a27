"""Structured recommendations: what a card says, without prose (``cds_service.cards`` writes the words)."""

from __future__ import annotations

from dataclasses import dataclass

from cds_service.engine.facts import Evidence, MedicationFact
from cds_service.engine.vocabulary import DrugClass, Indicator, LabConcept, Qualifier, RecommendationCode


@dataclass(frozen=True)
class CreateServiceRequest:
    """Suggest a draft ServiceRequest for a LOINC-coded test."""

    loinc: str
    test: LabConcept  # the test: serum-magnesium, ionized-magnesium, serum-creatinine


@dataclass(frozen=True)
class CreateMedicationRequest:
    """Suggest a draft MedicationRequest for a magnesium salt at an elemental daily dose in divided doses."""

    salt: str
    elemental_mg_per_day: int
    doses_per_day: int = 2


@dataclass(frozen=True)
class DeleteDraft:
    """Suggest removing a draft order."""

    resource_type: str
    resource_id: str


Action = CreateServiceRequest | CreateMedicationRequest | DeleteDraft


@dataclass(frozen=True)
class SuggestionSpec:
    """One suggestion: its actions are accepted together (a switch is delete + create)."""

    key: str  # machine label: "order-serum-mg", "start-magnesium-citrate", "switch-to-magnesium-citrate", ...
    actions: tuple[Action, ...]


@dataclass(frozen=True)
class SpacingAdvice:
    """Interaction spacing between a magnesium salt and an interacting drug (clinical-rules.md section 7)."""

    interaction_class: DrugClass  # one of INTERACTING_CLASSES
    drug: MedicationFact


@dataclass(frozen=True)
class Recommendation:
    """One card's worth of advice: code, indicator, key figures, suggestions, spacing advice and evidence."""

    code: RecommendationCode
    indicator: Indicator
    figures: tuple[tuple[str, str], ...] = ()
    concerned_draft: MedicationFact | None = None
    suggestions: tuple[SuggestionSpec, ...] = ()
    spacing: tuple[SpacingAdvice, ...] = ()
    evidence: tuple[Evidence, ...] = ()
    qualifiers: tuple[Qualifier, ...] = ()  # what the rule could not rule out, for the card's wording

    def figure(self, key: str) -> str | None:
        """The key figure named ``key``, if present."""
        for name, value in self.figures:
            if name == key:
                return value
        return None

    @property
    def draft_reference(self) -> str | None:
        """The draft order this recommendation concerns, as ``MedicationRequest/<id>`` (order hooks only)."""
        draft = self.concerned_draft
        return f"{draft.resource_type}/{draft.resource_id}" if draft is not None else None

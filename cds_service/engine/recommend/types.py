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
    """Interaction spacing between oral magnesium and an interacting drug (clinical-rules.md section 7.3).

    The advice depends on the ingredient, not only the class (ciprofloxacin, levofloxacin and moxifloxacin differ).
    """

    interaction_class: DrugClass  # one of INTERACTING_CLASSES
    drug: MedicationFact
    ingredient: str = ""  # the interacting ingredient ("ciprofloxacin"); empty when the drug names none


@dataclass(frozen=True)
class CauseNote:
    """A current drug to review as a cause of a likely deficiency (section 7.2): a PPI [FDA11], a loop or thiazide."""

    drug_class: DrugClass  # PROTON_PUMP_INHIBITOR, LOOP_DIURETIC or THIAZIDE_DIURETIC
    drug: MedicationFact
    ingredient: str  # "furosemide"; the card adds the product name ("Lasix 40 mg") when it differs


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
    causes: tuple[CauseNote, ...] = ()  # the PPI and diuretic cause notes (section 7.2)
    # The magnesium products the card names (stop-supplement: each current one; persistent-deficiency: the supplements;
    # evaluate-hypermagnesemia: the parenteral ones).
    products: tuple[MedicationFact, ...] = ()

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

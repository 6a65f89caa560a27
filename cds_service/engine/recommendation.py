"""Structured recommendations: what the cards say, without prose (cards.py writes the words)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from cds_service.engine.facts import Evidence, Facts, MedicationFact

if TYPE_CHECKING:
    from cds_service.engine.assessment import Assessment

# Recommendation codes (clinical-rules.md sections 7 and 8): the contract.
URGENT_EVALUATION = "urgent-evaluation"
TEST_SERUM_MG = "test-serum-mg"
TEST_IONIZED_MG = "test-ionized-mg"
CHECK_RENAL_FUNCTION = "check-renal-function"
SUPPLEMENT_RENAL_CAUTION = "supplement-renal-caution"
SUPPLEMENT_ORGANIC = "supplement-organic"
SWITCH_TO_ORGANIC = "switch-to-organic"
STOP_SUPPLEMENT = "stop-supplement"
ORDER_DEPLETES_MG = "order-depletes-mg"
ORDER_SUPPLEMENT_CONTRAINDICATED = "order-supplement-contraindicated"
ORDER_SPACING = "order-spacing"

INFO = "info"
WARNING = "warning"
CRITICAL = "critical"

# Organic salts offered by `supplement-organic`, in the order clinical-rules.md lists them.
ORGANIC_SALTS = ("magnesium citrate", "magnesium glycinate", "magnesium lactate")
SWITCH_TARGET_SALT = "magnesium citrate"  # clinical-rules.md sections 7 and 8
# A ServiceRequest in these statuses (or a draft of this hook) means the test is already ordered (section 7).
OPEN_ORDER_STATUSES = frozenset({"active", "draft"})


@dataclass(frozen=True)
class CreateServiceRequest:
    """Suggest a draft ServiceRequest for a LOINC-coded test."""

    loinc: str
    test: str  # machine name of the test: serum-magnesium, ionized-magnesium, serum-creatinine


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

    interaction_class: str  # interacts-tetracycline, ...
    drug: MedicationFact


@dataclass(frozen=True)
class Recommendation:
    """One card's worth of advice: code, indicator, key figures, suggestions, spacing advice and evidence."""

    code: str
    indicator: str
    figures: tuple[tuple[str, str], ...] = ()
    concerned_draft: MedicationFact | None = None
    suggestions: tuple[SuggestionSpec, ...] = ()
    spacing: tuple[SpacingAdvice, ...] = ()
    evidence: tuple[Evidence, ...] = ()
    qualifiers: tuple[str, ...] = ()  # machine flags for the card text, e.g. "egfr-below-30-not-excluded"

    def figure(self, key: str) -> str | None:
        """The key figure named ``key``, if present."""
        for name, value in self.figures:
            if name == key:
                return value
        return None


def has_open_order(facts: Facts, concept: str) -> bool:
    """Whether an active or draft ServiceRequest for ``concept`` exists."""
    return any(o.concept == concept and (o.is_draft or o.status in OPEN_ORDER_STATUSES) for o in facts.orders)


def mds_figure(assessment: Assessment) -> str:
    """The MDS as shown in a summary: "3/5" or "2-4/5"."""
    mds = assessment.mds
    return f"{mds.min}/5" if mds.min == mds.max else f"{mds.min}-{mds.max}/5"


def common_figures(assessment: Assessment) -> tuple[tuple[str, str], ...]:
    """Key figures every card may show."""
    figures = [("mds", mds_figure(assessment)), ("deficiency", assessment.deficiency)]
    serum = assessment.serum_mg
    if serum.value_mmol_l is not None:
        figures.append(("serum_mg", f"{serum.comparator or ''}{serum.value_mmol_l:.2f}"))
    figures.append(("serum_category", serum.category))
    if assessment.egfr.value is not None:
        figures.append(("egfr", f"{assessment.egfr.comparator or ''}{assessment.egfr.value}"))
    return tuple(figures)


def mg_evidence(assessment: Assessment) -> tuple[Evidence, ...]:
    """The magnesium results behind a conclusion."""
    return tuple(e for e in (assessment.serum_mg.evidence, assessment.ionized_mg.evidence) if e is not None)

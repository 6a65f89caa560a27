"""The plain data the terminology API hands out: codings in, classifications and converted quantities out."""

from __future__ import annotations

from dataclasses import dataclass

from cds_service.errors import TerminologyError


@dataclass(frozen=True)
class CodeRef:
    """One FHIR Coding, reduced to what recognition needs."""

    system: str | None
    code: str | None
    display: str | None = None


@dataclass(frozen=True)
class IngredientMatch:
    """An ingredient we care about, with the evidence that found it."""

    name: str
    rxnorm: str | None
    classes: frozenset[str]
    matched_by: str
    elemental_mg_fraction: float | None = None


@dataclass(frozen=True)
class MedicationClassification:
    """Every ingredient of interest in one medication, plus notes on how recognition went."""

    ingredients: tuple[IngredientMatch, ...]
    notes: tuple[str, ...] = ()

    @property
    def classes(self) -> frozenset[str]:
        """The union of the drug classes of all matched ingredients."""
        found: set[str] = set()
        for ingredient in self.ingredients:
            found |= ingredient.classes
        return frozenset(found)


@dataclass(frozen=True)
class LabMatch:
    """Which lab concept an Observation or ServiceRequest is, and why."""

    concept: str
    matched_by: str


@dataclass(frozen=True)
class ConvertedQuantity:
    """A value in its concept's canonical unit (not rounded: the engine rounds)."""

    value: float
    unit: str
    original_value: float
    original_unit: str | None
    factor: float


class UnitNotRecognised(TerminologyError):
    """A quantity's unit is missing or not one we convert for that concept."""

    def __init__(self, unit: str | None, concept: str) -> None:
        shown = "no unit" if unit is None or not unit.strip() else f"unit '{unit}'"
        super().__init__(f"{shown} is not a recognised unit for {concept}")
        self.unit = unit
        self.concept = concept

"""Serum and ionized magnesium: rounding and categories (clinical-rules.md section 2).

Values arrive in mmol/L, unrounded (the extractor converted mg/dL x 0.4114, mg/L x 0.04114, mEq/L x 0.5).
They are rounded to 2 decimals, half up, before any comparison: 1.7 mg/dL -> 0.69938 -> 0.70 -> low-normal.
The value and unit as the laboratory reported them travel with the result, for the cards' dual units
("serum Mg 0.78 mmol/L (1.9 mg/dL)").
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from cds_service.engine.facts import Evidence, Facts, LabResult
from cds_service.engine.rounding import round_half_up
from cds_service.engine.settings import ClinicalSettings
from cds_service.engine.vocabulary import IonizedReference, LabConcept, MagnesiumCategory
from cds_service.engine.windows import Selection, has_usable_value, select_newest

# Serum/plasma total magnesium category boundaries, mmol/L.
SEVERE_LOW_BELOW = 0.50  # [PAP26] severe hypomagnesemia
LOW_BELOW = 0.70  # [PIC20] hypomagnesemia
LOW_NORMAL_BELOW = 0.85  # [COS16] chronic latent deficiency below 0.85
NORMAL_MAX = 1.05  # above: hypermagnesemia
SEVERE_HIGH_FROM = 2.00  # [YU16] symptoms of hypermagnesemia appear above 2 mmol/L (4.8 mg/dL)

_Categoriser = Callable[[float, str | None, LabResult], MagnesiumCategory]


@dataclass(frozen=True)
class MagnesiumResult:
    """One magnesium interpretation (serum or ionized) with its evidence."""

    value_mmol_l: float | None
    comparator: str | None
    category: MagnesiumCategory
    evidence: Evidence | None = None
    stale: Evidence | None = None
    unusable_reason: str | None = None
    preliminary: bool = False
    effective: datetime | None = None
    reference_low: float | None = None
    reference_high: float | None = None
    reference_source: IonizedReference | None = None
    notes: tuple[str, ...] = ()
    # The value and unit exactly as the laboratory reported them (valueQuantity.value, .unit else .code).
    reported_value: str | None = None
    reported_unit: str | None = None


def round_mmol(value: float) -> float:
    """Round a mmol/L value to 2 decimals, halves up (section 2)."""
    return round_half_up(value, 2)


def serum_category(rounded_mmol_l: float) -> MagnesiumCategory:
    """The serum category of a rounded mmol/L value."""
    if rounded_mmol_l < SEVERE_LOW_BELOW:
        return MagnesiumCategory.SEVERE_LOW
    if rounded_mmol_l < LOW_BELOW:
        return MagnesiumCategory.LOW
    if rounded_mmol_l < LOW_NORMAL_BELOW:
        return MagnesiumCategory.LOW_NORMAL
    if rounded_mmol_l <= NORMAL_MAX:
        return MagnesiumCategory.NORMAL
    if rounded_mmol_l < SEVERE_HIGH_FROM:
        return MagnesiumCategory.HIGH
    return MagnesiumCategory.SEVERE_HIGH


def serum_category_bounded(rounded: float, comparator: str | None) -> MagnesiumCategory:
    """The serum category when a comparator bounds the value; unknown when the bound spans categories."""
    if comparator is None:
        return serum_category(rounded)
    if comparator == "<":
        return MagnesiumCategory.SEVERE_LOW if rounded <= SEVERE_LOW_BELOW else MagnesiumCategory.UNKNOWN
    if comparator == "<=":
        return MagnesiumCategory.SEVERE_LOW if rounded < SEVERE_LOW_BELOW else MagnesiumCategory.UNKNOWN
    # Safest reading: a lower bound inside the high range (">1.5") may be high or severe-high; it is hypermagnesemia
    # either way, so it is `high` (never `unknown`, which would drop the warning); from 2.00 it is severe-high.
    if comparator == ">":
        if rounded >= SEVERE_HIGH_FROM:
            return MagnesiumCategory.SEVERE_HIGH
        return MagnesiumCategory.HIGH if rounded >= NORMAL_MAX else MagnesiumCategory.UNKNOWN
    if rounded >= SEVERE_HIGH_FROM:
        return MagnesiumCategory.SEVERE_HIGH
    return MagnesiumCategory.HIGH if rounded > NORMAL_MAX else MagnesiumCategory.UNKNOWN


def ionized_category(rounded: float, comparator: str | None, low: float, high: float) -> MagnesiumCategory:
    """The ionized category against a reference interval; unknown when a comparator spans it."""
    if comparator is None:
        if rounded < low:
            return MagnesiumCategory.LOW
        return MagnesiumCategory.HIGH if rounded > high else MagnesiumCategory.NORMAL
    if comparator in ("<", "<="):
        return MagnesiumCategory.LOW if rounded <= low else MagnesiumCategory.UNKNOWN
    return MagnesiumCategory.HIGH if rounded >= high else MagnesiumCategory.UNKNOWN


def assess_serum(facts: Facts, now: datetime, settings: ClinicalSettings) -> MagnesiumResult:
    """Serum/plasma total magnesium: newest in window, rounded, categorised."""
    selection = select_newest(facts.labs, LabConcept.SERUM_MAGNESIUM, now, settings.magnesium_window_days)
    return _interpret(selection, lambda rounded, comparator, _r: serum_category_bounded(rounded, comparator))


def assess_ionized(facts: Facts, now: datetime, settings: ClinicalSettings) -> MagnesiumResult:
    """Ionized magnesium, against the Observation's reference range when it gives both limits in mmol/L."""
    selection = select_newest(facts.labs, LabConcept.IONIZED_MAGNESIUM, now, settings.magnesium_window_days)
    current = selection.current
    low, high, source = settings.ionized_low_mmol_l, settings.ionized_high_mmol_l, IonizedReference.DEFAULT
    if (
        current is not None
        and current.reference_low is not None
        and current.reference_high is not None
        and math.isfinite(current.reference_low)
        and math.isfinite(current.reference_high)
        and 0 <= current.reference_low < current.reference_high
    ):
        low, high, source = current.reference_low, current.reference_high, IonizedReference.OBSERVATION
    result = _interpret(selection, lambda rounded, comparator, _r: ionized_category(rounded, comparator, low, high))
    return MagnesiumResult(
        value_mmol_l=result.value_mmol_l,
        comparator=result.comparator,
        category=result.category,
        evidence=result.evidence,
        stale=result.stale,
        unusable_reason=result.unusable_reason,
        preliminary=result.preliminary,
        effective=result.effective,
        reference_low=low,
        reference_high=high,
        reference_source=source,
        notes=result.notes,
        reported_value=result.reported_value,
        reported_unit=result.reported_unit,
    )


def _interpret(selection: Selection, categorise: _Categoriser) -> MagnesiumResult:
    stale = selection.stale.evidence if selection.stale is not None else None
    current = selection.current
    if current is None:
        return MagnesiumResult(None, None, MagnesiumCategory.UNKNOWN, stale=stale, notes=selection.notes)
    if not has_usable_value(current) or current.value is None or not math.isfinite(current.value) or current.value < 0:
        return MagnesiumResult(
            None,
            None,
            MagnesiumCategory.UNKNOWN,
            evidence=current.evidence,
            unusable_reason=current.unusable_reason or "no numeric value",
            preliminary=selection.preliminary,
            effective=current.effective,
            notes=selection.notes,
            reported_value=current.evidence.value,
            reported_unit=current.evidence.unit,
        )
    comparator = current.comparator if current.comparator in ("<", "<=", ">", ">=") else None
    rounded = round_mmol(current.value)
    category = categorise(rounded, comparator, current)
    notes = selection.notes
    if category == MagnesiumCategory.UNKNOWN:
        notes = (*notes, f"{current.concept} {comparator}{rounded} does not decide the category")
    return MagnesiumResult(
        rounded,
        comparator,
        category,
        evidence=current.evidence,
        preliminary=selection.preliminary,
        effective=current.effective,
        notes=notes,
        reported_value=current.evidence.value,
        reported_unit=current.evidence.unit,
    )

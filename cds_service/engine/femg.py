"""Fractional excretion of magnesium (clinical-rules.md section 6) [TUC20].

FEMg % = (U_Mg x S_Cr) / (0.7 x S_Mg x U_Cr) x 100, with magnesium in mmol/L and creatinine in mg/dL on both
sides (the extractor normalised them). 0.7 is the free, filterable fraction of serum magnesium. Needs a spot
urine magnesium and urine creatinine from the same day, and a serum magnesium and serum creatinine within 2
days of it. Interpreted only in hypomagnesemia and with eGFR >= 60: > 4 % renal wasting, < 2 % extrarenal loss.
Below eGFR 60, or with renal function unknown, it is indeterminate: FEMg rises as GFR falls.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from cds_service.engine.egfr import EgfrResult, is_below
from cds_service.engine.facts import Evidence, Facts, LabResult
from cds_service.engine.rounding import round_half_up
from cds_service.engine.settings import ClinicalSettings
from cds_service.engine.vocabulary import LOW_CATEGORIES, FemgInterpretation, LabConcept, MagnesiumCategory
from cds_service.engine.windows import has_usable_value, in_window

FILTERABLE_FRACTION = 0.7  # [TUC20] fraction of serum magnesium that is filtered
RENAL_WASTING_ABOVE_PERCENT = 4.0  # [TUC20]
EXTRARENAL_BELOW_PERCENT = 2.0  # [TUC20]
SERUM_MAX_DAYS_FROM_URINE = 2  # clinical-rules.md section 6
FEMG_MIN_EGFR = 60  # [TUC20] FEMg rises as GFR falls: interpreted only from eGFR 60 (clinical-rules.md section 6)


@dataclass(frozen=True)
class FemgResult:
    """FEMg percent (1 decimal) when computable, its interpretation and evidence."""

    percent: float | None
    interpretation: FemgInterpretation
    evidence: tuple[Evidence, ...] = ()


def femg_percent(urine_mg: float, serum_cr: float, serum_mg: float, urine_cr: float) -> float:
    """FEMg in percent, unrounded."""
    return (urine_mg * serum_cr) / (FILTERABLE_FRACTION * serum_mg * urine_cr) * 100.0


def interpret(percent: float, serum_category: MagnesiumCategory, egfr: EgfrResult) -> FemgInterpretation:
    """renal-wasting / extrarenal / indeterminate in hypomagnesemia with eGFR >= 60; indeterminate below 60 or with
    eGFR unknown; not-applicable without hypomagnesemia."""
    if serum_category not in LOW_CATEGORIES:
        return FemgInterpretation.NOT_APPLICABLE
    # An eGFR whose comparator leaves "< 60" open (">45", "<90") does not allow the interpretation either.
    if egfr.value is None or is_below(egfr.value, egfr.comparator, FEMG_MIN_EGFR) is not False:
        return FemgInterpretation.INDETERMINATE
    if percent > RENAL_WASTING_ABOVE_PERCENT:
        return FemgInterpretation.RENAL_WASTING
    if percent < EXTRARENAL_BELOW_PERCENT:
        return FemgInterpretation.EXTRARENAL
    return FemgInterpretation.INDETERMINATE


def assess_femg(
    facts: Facts, now: datetime, settings: ClinicalSettings, serum_category: MagnesiumCategory, egfr: EgfrResult
) -> FemgResult:
    """FEMg from the newest same-day urine pair with serum values within 2 days of it."""
    window = settings.magnesium_window_days
    urine_mg = _numeric(in_window(facts.labs, LabConcept.URINE_MAGNESIUM, now, window))
    urine_cr = _numeric(in_window(facts.labs, LabConcept.URINE_CREATININE, now, window))
    serum_mg = _numeric(in_window(facts.labs, LabConcept.SERUM_MAGNESIUM, now, window))
    serum_cr = _numeric(in_window(facts.labs, LabConcept.SERUM_CREATININE, now, settings.renal_window_days))
    for umg in urine_mg:
        ucr = _first(r for r in urine_cr if _same_day(r, umg))
        smg = _first(r for r in serum_mg if _within(r, umg))
        scr = _first(r for r in serum_cr if _within(r, umg))
        if ucr is None or smg is None or scr is None:
            continue
        if umg.value is None or scr.value is None or smg.value is None or ucr.value is None:
            continue
        percent = _round1(femg_percent(umg.value, scr.value, smg.value, ucr.value))
        evidence = (umg.evidence, ucr.evidence, smg.evidence, scr.evidence)
        return FemgResult(percent, interpret(percent, serum_category, egfr), evidence)
    return FemgResult(None, FemgInterpretation.NOT_APPLICABLE)


def _numeric(results: list[LabResult]) -> list[LabResult]:
    return [
        r for r in results if has_usable_value(r) and r.comparator is None and r.value is not None and 0 < r.value < 1e6
    ]


def _first(results: Iterable[LabResult]) -> LabResult | None:
    return next(iter(results), None)


def _same_day(a: LabResult, b: LabResult) -> bool:
    return a.effective is not None and b.effective is not None and a.effective.date() == b.effective.date()


def _within(a: LabResult, b: LabResult) -> bool:
    if a.effective is None or b.effective is None:
        return False
    return abs(a.effective - b.effective) <= timedelta(days=SERUM_MAX_DAYS_FROM_URINE)


def _round1(value: float) -> float:
    return round_half_up(value, 1)

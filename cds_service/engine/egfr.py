"""Renal function: the eGFR that counts, and the CKD-EPI 2021 creatinine equation.

[INK21] Inker LA et al. New creatinine- and cystatin C-based equations to estimate GFR without race.
N Engl J Med 2021;385:1737-49. doi:10.1056/NEJMoa2102953

    eGFRcr = 142 x min(Scr/kappa, 1)^alpha x max(Scr/kappa, 1)^-1.200 x 0.9938^Age x 1.012 [if female]

Scr in mg/dL; kappa 0.7 (female) / 0.9 (male); alpha -0.241 (female) / -0.302 (male); result rounded half up
to an integer (clinical-rules.md section 3). Which value counts: a creatinine at or after the newest eGFR
result is recomputed with the equation; otherwise the newest reported eGFR counts, comparator kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime

from cds_service.engine import rounding
from cds_service.engine.facts import Evidence, Facts
from cds_service.engine.settings import ClinicalSettings
from cds_service.engine.vocabulary import EgfrSource, LabConcept
from cds_service.engine.windows import has_usable_value, select_newest

# [INK21] coefficients, named as in the paper.
CKD_EPI_2021_MULTIPLIER = 142.0
KAPPA_FEMALE = 0.7
KAPPA_MALE = 0.9
ALPHA_FEMALE = -0.241
ALPHA_MALE = -0.302
EXPONENT_ABOVE_KAPPA = -1.200
AGE_BASE = 0.9938
FEMALE_FACTOR = 1.012

# MDS eGFR bands [FAN21]: < 60 -> 2 points, 60 to < 90 -> 1 point, >= 90 -> 0.
EGFR_MDS_LOW_BELOW = 60
EGFR_MDS_MILD_BELOW = 90
# Oral magnesium is contraindicated below this without specialist supervision (clinical-rules.md section 7).
EGFR_SUPPLEMENT_CONTRAINDICATED_BELOW = 30

COMPARATORS = frozenset({"<", "<=", ">", ">="})


@dataclass(frozen=True)
class EgfrResult:
    """The eGFR that counts, how it was obtained, and its evidence."""

    value: int | None
    comparator: str | None
    source: EgfrSource
    evidence: tuple[Evidence, ...] = ()
    stale: tuple[Evidence, ...] = ()
    notes: tuple[str, ...] = ()
    preliminary: bool = False
    age_years: int | None = None

    @property
    def points(self) -> tuple[int, int]:
        """MDS points for this eGFR as an interval [FAN21]."""
        if self.value is None:
            return (0, 2)
        return egfr_points(self.value, self.comparator)

    @property
    def below_30(self) -> bool | None:
        """Whether eGFR is below 30 (None: unknown or not decided by a comparator)."""
        if self.value is None:
            return None
        return is_below(self.value, self.comparator, EGFR_SUPPLEMENT_CONTRAINDICATED_BELOW)


def round_half_up(value: float) -> int:
    """Round to the nearest integer, halves up (section 3), without binary-float surprises."""
    return int(rounding.round_half_up(value, 0))


def age_in_years(birth_date: date, on: date) -> int:
    """Whole years of age on a date."""
    years = on.year - birth_date.year
    if (on.month, on.day) < (birth_date.month, birth_date.day):
        years -= 1
    return years


def ckd_epi_2021(scr_mg_dl: float, age_years: int, sex: str) -> float:
    """CKD-EPI 2021 creatinine eGFR in mL/min/1.73 m2, unrounded [INK21]."""
    if sex == "female":
        kappa, alpha, sex_factor = KAPPA_FEMALE, ALPHA_FEMALE, FEMALE_FACTOR
    elif sex == "male":
        kappa, alpha, sex_factor = KAPPA_MALE, ALPHA_MALE, 1.0
    else:
        raise ValueError(f"CKD-EPI 2021 needs sex 'male' or 'female', not {sex!r}")
    if scr_mg_dl <= 0:
        raise ValueError("serum creatinine must be positive")
    ratio = scr_mg_dl / kappa
    return float(
        CKD_EPI_2021_MULTIPLIER
        * min(ratio, 1.0) ** alpha
        * max(ratio, 1.0) ** EXPONENT_ABOVE_KAPPA
        * AGE_BASE**age_years
        * sex_factor
    )


def _bands_touched(value: float, comparator: str | None) -> set[int]:
    """The MDS point values the true eGFR may fall in, given a reported value and comparator."""
    low, mild = EGFR_MDS_LOW_BELOW, EGFR_MDS_MILD_BELOW
    if comparator is None:
        return {2 if value < low else 1 if value < mild else 0}
    if comparator in (">", ">="):
        return {0} | ({1} if value < mild else set()) | ({2} if value < low else set())
    if comparator == "<":
        return {2} | ({1} if value > low else set()) | ({0} if value > mild else set())
    # "<=": the value itself is possible.
    return {2} | ({1} if value >= low else set()) | ({0} if value >= mild else set())


def egfr_points(value: float, comparator: str | None) -> tuple[int, int]:
    """MDS points [min, max] for an eGFR, widened by a comparator (`>60` -> [0, 1])."""
    touched = _bands_touched(value, comparator)
    return (min(touched), max(touched))


def is_below(value: float, comparator: str | None, threshold: float) -> bool | None:
    """Whether the true value is below ``threshold``; None when the comparator leaves it open."""
    if comparator is None:
        return value < threshold
    if comparator == "<":
        return True if value <= threshold else None
    if comparator == "<=":
        return True if value < threshold else None
    # ">" and ">=": the true value is at least ``value``.
    return False if value >= threshold else None


def assess_egfr(facts: Facts, now: datetime, settings: ClinicalSettings) -> EgfrResult:
    """The eGFR that counts (section 3), with how it was obtained."""
    window = settings.renal_window_days
    reported = select_newest(facts.labs, LabConcept.EGFR, now, window)
    creatinine = select_newest(facts.labs, LabConcept.SERUM_CREATININE, now, window)
    notes = list(reported.notes) + list(creatinine.notes)
    stale = tuple(s.evidence for s in (reported.stale, creatinine.stale) if s is not None)
    egfr_obs, scr = reported.current, creatinine.current

    if scr is not None and (egfr_obs is None or _at_or_after(scr.effective, egfr_obs.effective)):
        computed = _compute(facts, scr.value, scr.comparator, scr.effective, has_usable_value(scr), notes)
        if computed is not None:
            value, age = computed
            return EgfrResult(
                value=value,
                comparator=None,
                source=EgfrSource.CKD_EPI_2021,
                evidence=(scr.evidence,),
                stale=stale,
                notes=tuple(notes),
                preliminary=creatinine.preliminary,
                age_years=age,
            )
    if (
        egfr_obs is not None
        and has_usable_value(egfr_obs)
        and egfr_obs.value is not None
        and math.isfinite(egfr_obs.value)
        and egfr_obs.value >= 0
    ):
        comparator = egfr_obs.comparator if egfr_obs.comparator in COMPARATORS else None
        return EgfrResult(
            value=round_half_up(egfr_obs.value),
            comparator=comparator,
            source=EgfrSource.OBSERVATION,
            evidence=(egfr_obs.evidence,),
            stale=stale,
            notes=tuple(notes),
            preliminary=reported.preliminary,
        )
    return EgfrResult(value=None, comparator=None, source=EgfrSource.NONE, stale=stale, notes=tuple(notes))


def _at_or_after(first: datetime | None, second: datetime | None) -> bool:
    return first is not None and second is not None and first >= second


def _compute(
    facts: Facts,
    scr: float | None,
    comparator: str | None,
    when: datetime | None,
    usable: bool,
    notes: list[str],
) -> tuple[int, int] | None:
    """(eGFR, age) from a creatinine, or None with a note saying why it cannot be computed."""
    patient = facts.patient
    if not usable or scr is None or scr <= 0 or comparator is not None:
        notes.append("eGFR not computed: the newest creatinine has no exact usable value")
        return None
    if patient.gender not in ("male", "female"):
        notes.append("eGFR not computed: CKD-EPI 2021 needs Patient.gender male or female")
        return None
    if patient.birth_date is None or when is None:
        notes.append("eGFR not computed: Patient.birthDate unknown")
        return None
    age = age_in_years(patient.birth_date, when.date())
    if age < 0:
        notes.append("eGFR not computed: creatinine dated before the birth date")
        return None
    egfr = ckd_epi_2021(scr, age, patient.gender)
    if not math.isfinite(egfr):
        notes.append("eGFR not computed: creatinine value out of range")
        return None
    # CKD-EPI 2021 is validated for adults; the value is still computed and the age shown in the card.
    return round_half_up(egfr), age

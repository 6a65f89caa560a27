"""Renal function: the eGFR that counts, and the CKD-EPI 2021 creatinine equation (clinical-rules.md section 3).

[INK21] Inker LA et al. New creatinine- and cystatin C-based equations to estimate GFR without race.
N Engl J Med 2021;385:1737-49. doi:10.1056/NEJMoa2102953

    eGFRcr = 142 x min(Scr/kappa, 1)^alpha x max(Scr/kappa, 1)^-1.200 x 0.9938^Age x 1.012 [if female]

Scr in mg/dL; kappa 0.7 (female) / 0.9 (male); alpha -0.241 (female) / -0.302 (male); the computed result is rounded
half up to an integer, and computed only for a patient 18 or older when the creatinine was drawn (section 0).
Reported eGFR values are used as reported, unrounded (29.6 is below 30), comparator kept.

Which value counts: a creatinine at or after the newest eGFR result is recomputed with the equation, unless an eGFR
with cystatin C (98980-6) is as new as that creatinine (more accurate [INK21]); otherwise the newest reported eGFR
counts. Several eGFR results at the newest time: 98980-6, then the race-free creatinine codes, then codes that do not
name race, and of the race-specific codes the lower value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cds_service.engine import rounding
from cds_service.engine.facts import Evidence, Facts, LabResult
from cds_service.engine.scope import ADULT_AGE_YEARS, age_in_years, youngest_age
from cds_service.engine.settings import ClinicalSettings
from cds_service.engine.vocabulary import EgfrGap, EgfrSource, LabConcept
from cds_service.engine.windows import PRELIMINARY_STATUS, candidates, has_usable_value, select_newest

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
# Oral magnesium below this only under specialist supervision (clinical-rules.md section 7.2).
EGFR_SUPPLEMENT_CONTRAINDICATED_BELOW = 30

# Section 3's preference among eGFR results at the same time [INK21].
CYSTATIN_C_EGFR_LOINC = "98980-6"
RACE_FREE_CREATININE_EGFR_LOINCS = frozenset({"98979-8", "62238-1"})
RACE_SPECIFIC_EGFR_LOINCS = frozenset({"48642-3", "48643-1", "88293-6", "88294-4"})

COMPARATORS = frozenset({"<", "<=", ">", ">="})


@dataclass(frozen=True)
class EgfrResult:
    """The eGFR that counts, how it was obtained, and its evidence."""

    # Computed: an integer (rounded half up). Reported: exactly as the laboratory reported it, unrounded.
    value: float | None
    comparator: str | None
    source: EgfrSource
    evidence: tuple[Evidence, ...] = ()
    stale: tuple[Evidence, ...] = ()
    notes: tuple[str, ...] = ()
    preliminary: bool = False
    age_years: int | None = None
    # The laboratory eGFR of the creatinine's day, when the computed value counts (the card shows both).
    reported_same_day: float | None = None
    reported_same_day_comparator: str | None = None
    reported_same_day_evidence: Evidence | None = None
    # Why a creatinine on file gave no eGFR, or why the newest eGFR could not be used.
    gap: EgfrGap | None = None

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


def preference_rank(result: LabResult) -> int:
    """Section 3's order among eGFR results at the same time: 0 cystatin C, 1 race-free, 2 race not named, 3 race."""
    codes = set(result.loinc_codes)
    if CYSTATIN_C_EGFR_LOINC in codes:
        return 0
    if codes & RACE_FREE_CREATININE_EGFR_LOINCS:
        return 1
    if codes & RACE_SPECIFIC_EGFR_LOINCS:
        return 3
    return 2


def is_reported_value(result: LabResult) -> bool:
    """Whether a reported eGFR carries a value the rules can use (finite, not negative)."""
    return has_usable_value(result) and result.value is not None and math.isfinite(result.value) and result.value >= 0


def preferred_egfr(group: Sequence[LabResult]) -> LabResult | None:
    """The eGFR that counts among results at the same newest time (section 3), or None for an empty group.

    The usable results are preferred by code; within the preferred code group the lower value counts. When none is
    usable, the first listed is returned (its unusable reason is reported; an older value is never used instead).
    """
    usable = [r for r in group if is_reported_value(r)]
    if not usable:
        return group[0] if group else None
    best = min(preference_rank(r) for r in usable)
    # Section 3 asks for the lower of the race-specific values; safest reading: within any code group the lower of
    # two simultaneous values counts too (the cautious one for supplementation, and for the MDS).
    return min((r for r in usable if preference_rank(r) == best), key=lambda r: r.value or 0.0)


def newest_egfr_group(
    facts: Facts, now: datetime, window_days: int
) -> tuple[list[LabResult], LabResult | None, list[str]]:
    """The eGFR results at the newest time inside the window, the stale newest one (if the newest is too old), notes."""
    found, notes = candidates(facts.labs, LabConcept.EGFR, now)
    if not found:
        return [], None, notes
    newest = found[0]
    if newest.effective is not None and newest.effective < now - timedelta(days=window_days):
        notes.append(f"{LabConcept.EGFR} {_ref(newest)} is older than {window_days} days (stale): treated as absent")
        return [], newest, notes
    group = [r for r in found if r.effective == newest.effective]
    for result in group:
        if result.status == PRELIMINARY_STATUS:
            notes.append(f"{LabConcept.EGFR} {_ref(result)} is preliminary")
        if not has_usable_value(result):
            notes.append(f"{LabConcept.EGFR} {_ref(result)} is unusable: {result.unusable_reason or 'no value'}")
    if len(group) > 1:
        notes.append(f"{len(group)} eGFR results at the same time: the preference of clinical-rules.md section 3")
    return group, None, notes


def assess_egfr(facts: Facts, now: datetime, settings: ClinicalSettings) -> EgfrResult:
    """The eGFR that counts (section 3), with how it was obtained."""
    window = settings.renal_window_days
    group, stale_egfr, notes = newest_egfr_group(facts, now, window)
    creatinine = select_newest(facts.labs, LabConcept.SERUM_CREATININE, now, window)
    notes.extend(creatinine.notes)
    stale = tuple(s.evidence for s in (stale_egfr, creatinine.stale) if s is not None)
    reported, scr = preferred_egfr(group), creatinine.current
    reported_time = group[0].effective if group else None
    gap: EgfrGap | None = None

    if scr is not None and (reported_time is None or _at_or_after(scr.effective, reported_time)):
        cystatin = next(
            (
                r
                for r in group
                if preference_rank(r) == 0 and is_reported_value(r) and _at_or_after(r.effective, scr.effective)
            ),
            None,
        )
        if cystatin is not None:
            # The creatinine is not newer than the newest eGFR here, so "as new as" means the same time [INK21].
            notes.append("an eGFR with cystatin C as new as the newest creatinine is used instead of CKD-EPI 2021")
            return _observed(cystatin, stale, notes)
        computed, gap = _compute(facts, scr, notes)
        if computed is not None:
            value, age = computed
            same_day = reported if reported is not None and _same_day(reported, scr) else None
            return EgfrResult(
                value=value,
                comparator=None,
                source=EgfrSource.CKD_EPI_2021,
                evidence=(scr.evidence,),
                stale=stale,
                notes=tuple(notes),
                preliminary=creatinine.preliminary,
                age_years=age,
                reported_same_day=same_day.value if same_day is not None and is_reported_value(same_day) else None,
                reported_same_day_comparator=_comparator(same_day) if same_day is not None else None,
                reported_same_day_evidence=same_day.evidence if same_day is not None else None,
            )
    if reported is not None and is_reported_value(reported):
        return _observed(reported, stale, notes, gap)
    if reported is not None and gap is None:
        gap = EgfrGap.EGFR_UNUSABLE
    return EgfrResult(value=None, comparator=None, source=EgfrSource.NONE, stale=stale, notes=tuple(notes), gap=gap)


def _observed(
    result: LabResult, stale: tuple[Evidence, ...], notes: list[str], gap: EgfrGap | None = None
) -> EgfrResult:
    # Reported values are used as reported, unrounded (section 3): 29.6 is below 30.
    return EgfrResult(
        value=result.value,
        comparator=_comparator(result),
        source=EgfrSource.OBSERVATION,
        evidence=(result.evidence,),
        stale=stale,
        notes=tuple(notes),
        preliminary=result.status == PRELIMINARY_STATUS,
        gap=gap,
    )


def _comparator(result: LabResult) -> str | None:
    return result.comparator if result.comparator in COMPARATORS else None


def _at_or_after(first: datetime | None, second: datetime | None) -> bool:
    return first is not None and second is not None and first >= second


def _same_day(reported: LabResult, creatinine: LabResult) -> bool:
    """Whether a reported eGFR is from the creatinine's day (read in the creatinine's time zone)."""
    if reported.effective is None or creatinine.effective is None:
        return False
    zone = creatinine.effective.tzinfo
    return reported.effective.astimezone(zone).date() == creatinine.effective.date()


def _compute(facts: Facts, scr: LabResult, notes: list[str]) -> tuple[tuple[int, int] | None, EgfrGap | None]:
    """((eGFR, age), None) from a creatinine, or (None, why not) with a note saying why it cannot be computed."""
    patient = facts.patient
    value, when = scr.value, scr.effective
    if not has_usable_value(scr) or value is None or not math.isfinite(value) or value <= 0 or scr.comparator:
        notes.append("eGFR not computed: the newest creatinine has no exact usable value")
        return None, EgfrGap.CREATININE_UNUSABLE
    if patient.gender not in ("male", "female"):
        notes.append("eGFR not computed: CKD-EPI 2021 needs Patient.gender male or female")
        return None, EgfrGap.SEX_UNKNOWN
    if patient.birth_date is None or when is None:
        notes.append("eGFR not computed: Patient.birthDate unknown")
        return None, EgfrGap.BIRTH_DATE_UNKNOWN
    youngest = youngest_age(patient, when.date())
    if youngest is not None and youngest < ADULT_AGE_YEARS:
        # Section 0: CKD-EPI is adult evidence, computed only at 18 or older at the creatinine's time.
        notes.append(f"eGFR not computed: the patient was under {ADULT_AGE_YEARS} when the creatinine was drawn")
        return None, EgfrGap.UNDER_ADULT_AGE
    # The equation's age from the earliest reading of the birth date: an older age gives the lower, cautious eGFR.
    age = age_in_years(patient.birth_date, when.date())
    egfr = ckd_epi_2021(value, age, patient.gender)
    if not math.isfinite(egfr):
        notes.append("eGFR not computed: creatinine value out of range")
        return None, EgfrGap.CREATININE_UNUSABLE
    return (round_half_up(egfr), age), None


def _ref(result: LabResult) -> str:
    return f"{result.evidence.resource_type}/{result.evidence.resource_id}"

"""Whom the rules speak about: adults, children, deceased patients (clinical-rules.md section 0).

The score [FAN21], the eGFR equation [INK21] and the supplement doses [IOM97] are adult evidence. Age is counted in
whole years at ``now`` from Patient.birthDate; without a birth date the adult rules apply (and no eGFR can be
computed, section 3). A patient whose record says they have died gets no card at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from cds_service.engine.facts import PatientFacts
from cds_service.engine.vocabulary import Scope

ADULT_AGE_YEARS = 18  # [FAN21, INK21, IOM97]: the adult evidence; below it scope = "pediatric"

# Tolerable upper intake of supplemental magnesium by age [IOM97]: (from age in years, mg/day). Under 1 year none is
# established (magnesium only under specialist care).
PEDIATRIC_UPPER_INTAKE_FROM_YEARS: tuple[tuple[int, int], ...] = ((1, 65), (4, 110), (9, 350))
UPPER_INTAKE_NONE_BELOW_YEARS = 1  # [IOM97]: no upper intake is established below 1 year


@dataclass(frozen=True)
class ScopeResult:
    """The scope and the age in whole years at ``now`` it was decided on (None without a birth date)."""

    scope: Scope
    age_years: int | None


def age_in_years(birth_date: date, on: date) -> int:
    """Whole years of age on a date."""
    years = on.year - birth_date.year
    if (on.month, on.day) < (birth_date.month, birth_date.day):
        years -= 1
    return years


def youngest_age(patient: PatientFacts, on: date) -> int | None:
    """The youngest age the birth date allows on ``on`` (a partial birthDate is read at its last possible day)."""
    # Safest reading: "2008" may be 2008-12-31; reading it as 2008-01-01 would make a 17-year-old an adult for up to
    # a year and give them adult doses. The youngest possible age keeps every child a child.
    birth = patient.birth_date_latest or patient.birth_date
    return age_in_years(birth, on) if birth is not None else None


def assess_scope(patient: PatientFacts, now: datetime) -> ScopeResult:
    """deceased if the record says so; pediatric below 18 years at ``now``; otherwise adult (section 0)."""
    age = youngest_age(patient, now.date())
    # Safest reading of "deceasedDateTime present": a death recorded after `now` (an evaluation replayed at a past
    # `now`, or a data error) leaves the patient alive at `now`, so the cards are given; withholding them from a
    # living patient is the harm to avoid. A deceasedDateTime that cannot be read still counts as present.
    if patient.deceased and (patient.deceased_at is None or patient.deceased_at <= now):
        return ScopeResult(Scope.DECEASED, age)
    # A birth date after `now` (negative age) is a data error; below 18 it falls to pediatric, the cautious side.
    if age is not None and age < ADULT_AGE_YEARS:
        return ScopeResult(Scope.PEDIATRIC, age)
    return ScopeResult(Scope.ADULT, age)


def pediatric_upper_intake(age_years: int | None) -> int | None:
    """The tolerable upper intake of supplemental magnesium in mg/day at this age [IOM97]; None when none exists."""
    if age_years is None or age_years < UPPER_INTAKE_NONE_BELOW_YEARS:
        return None
    limit: int | None = None
    for from_years, mg_per_day in PEDIATRIC_UPPER_INTAKE_FROM_YEARS:
        if age_years >= from_years:
            limit = mg_per_day
    return limit

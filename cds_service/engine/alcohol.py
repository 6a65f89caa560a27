"""Heavy drinking for the MDS [FAN21] (clinical-rules.md section 4).

Heavy means > 1 drink/day (female) or > 2 drinks/day (male). Sources in order of preference:
(a) LOINC 74013-4 drinks per day; (b) AUDIT-C items 68518-0 (how often) and 68519-8 (drinks on a typical
day) as an interval of average drinks/day = frequency per week x drinks per occasion / 7; (c) an active
Condition of alcohol abuse or dependence. A source that cannot decide hands over to the next one, and an active
alcohol use disorder makes the component heavy even when (a) or (b) say not heavy (a diagnosis outweighs a
self-report). With the sex unknown: > 2 drinks/day heavy, <= 1 not heavy, in between undecided.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from cds_service.engine.facts import ConditionFact, Evidence, Facts, LabResult
from cds_service.engine.settings import ClinicalSettings
from cds_service.engine.vocabulary import AlcoholMethod, ConditionConcept, LabConcept
from cds_service.engine.windows import has_usable_value, select_newest

HEAVY_ABOVE_FEMALE = 1.0  # [FAN21] drinks/day
HEAVY_ABOVE_MALE = 2.0  # [FAN21] drinks/day

# AUDIT-C item 68518-0 answer bands as occasions per week (clinical-rules.md section 4).
FREQUENCY_PER_WEEK: dict[str, tuple[float, float]] = {
    "never": (0.0, 0.0),
    "monthly-or-less": (0.0, 0.25),
    "2-4-per-month": (0.5, 1.0),
    "2-3-per-week": (2.0, 3.0),
    "4-plus-per-week": (4.0, 7.0),
}
# AUDIT-C item 68519-8 answer bands as drinks per occasion; "10 or more" has no upper bound.
DRINKS_PER_OCCASION: dict[str, tuple[float, float]] = {
    "1-2": (1.0, 2.0),
    "3-4": (3.0, 4.0),
    "5-6": (5.0, 6.0),
    "7-9": (7.0, 9.0),
    "10-plus": (10.0, math.inf),
}
DAYS_PER_WEEK = 7.0

ACTIVE_CLINICAL_STATUSES = frozenset({"active", "recurrence", "relapse"})
EXCLUDED_VERIFICATION_STATUSES = frozenset({"refuted", "entered-in-error"})


@dataclass(frozen=True)
class AlcoholResult:
    """Heavy drinking: True, False or None (unknown), how it was decided, and the evidence."""

    heavy: bool | None
    method: AlcoholMethod
    evidence: tuple[Evidence, ...] = ()
    drinks_per_day_low: float | None = None
    drinks_per_day_high: float | None = None
    notes: tuple[str, ...] = ()


def thresholds(gender: str | None) -> tuple[float, float]:
    """(lowest, highest) heavy-drinking threshold that may apply: one value when the sex is known."""
    if gender == "female":
        return (HEAVY_ABOVE_FEMALE, HEAVY_ABOVE_FEMALE)
    if gender == "male":
        return (HEAVY_ABOVE_MALE, HEAVY_ABOVE_MALE)
    return (HEAVY_ABOVE_FEMALE, HEAVY_ABOVE_MALE)


def classify_interval(low: float, high: float, gender: str | None, *, low_open: bool = False) -> bool | None:
    """Heavy if the whole drinks/day interval is above the threshold, not heavy if at or below it."""
    lowest_threshold, highest_threshold = thresholds(gender)
    if low > highest_threshold or (low_open and low >= highest_threshold):
        return True
    if high <= lowest_threshold:
        return False
    return None


def auditc_interval(frequency: str | None, drinks: str | None) -> tuple[float, float] | None:
    """Average drinks/day interval from AUDIT-C bands; None when it cannot be formed."""
    if frequency not in FREQUENCY_PER_WEEK:
        return None
    freq_low, freq_high = FREQUENCY_PER_WEEK[frequency]
    if freq_high == 0.0:
        return (0.0, 0.0)  # "never": the typical-drinks item is skipped in practice
    if drinks not in DRINKS_PER_OCCASION:
        return None
    drinks_low, drinks_high = DRINKS_PER_OCCASION[drinks]
    return (freq_low * drinks_low / DAYS_PER_WEEK, freq_high * drinks_high / DAYS_PER_WEEK)


def assess_alcohol(facts: Facts, now: datetime, settings: ClinicalSettings) -> AlcoholResult:
    """Heavy drinking per section 4: the first source that decides, and a diagnosis over a self-report."""
    notes: list[str] = []
    reported = _self_report(facts, now, settings, notes)
    if reported is not None and reported.heavy is True:
        return _with_notes(reported, notes)
    diagnosis = _active_disorder(facts)
    if diagnosis is not None:
        # Section 4: an active alcohol use disorder outweighs a self-report of not heavy. Safest reading: any of the
        # three codes (abuse as well as dependence) does, as (c) lists them together.
        if reported is not None:
            notes.append(f"{reported.method} says not heavy, but an active alcohol use disorder Condition outweighs it")
        return AlcoholResult(True, AlcoholMethod.CONDITION, (diagnosis.evidence,), notes=tuple(notes))
    if reported is not None:
        return _with_notes(reported, notes)
    return AlcoholResult(None, AlcoholMethod.NONE, notes=tuple(notes))


def _self_report(facts: Facts, now: datetime, settings: ClinicalSettings, notes: list[str]) -> AlcoholResult | None:
    """Sources (a) then (b): the first that decides heavy or not heavy; None when neither decides."""
    window = settings.alcohol_window_days
    gender = facts.patient.gender
    per_day = select_newest(facts.labs, LabConcept.ALCOHOL_DRINKS_PER_DAY, now, window)
    notes.extend(per_day.notes)
    direct = per_day.current
    if direct is not None and has_usable_value(direct) and direct.value is not None:
        result = _from_drinks_per_day(direct, gender)
        if result.heavy is not None:
            return result
        notes.append(f"74013-4 value {direct.evidence.value} does not decide heavy drinking for this sex")

    frequency = select_newest(facts.labs, LabConcept.AUDITC_FREQUENCY, now, window)
    typical = select_newest(facts.labs, LabConcept.AUDITC_TYPICAL_DRINKS, now, window)
    notes.extend(frequency.notes + typical.notes)
    interval = auditc_interval(_band(frequency.current), _band(typical.current))
    if interval is not None:
        heavy = classify_interval(interval[0], interval[1], gender)
        evidence = tuple(r.evidence for r in (frequency.current, typical.current) if r is not None)
        if heavy is not None:
            return AlcoholResult(heavy, AlcoholMethod.AUDIT_C, evidence, interval[0], interval[1])
        notes.append("AUDIT-C answers do not decide heavy drinking for this sex")
    return None


def _active_disorder(facts: Facts) -> ConditionFact | None:
    """The first active, not refuted alcohol use disorder Condition (source (c))."""
    for condition in facts.conditions:
        if (
            condition.concept == ConditionConcept.ALCOHOL_USE_DISORDER
            and condition.clinical_status in ACTIVE_CLINICAL_STATUSES
            and condition.verification_status not in EXCLUDED_VERIFICATION_STATUSES
        ):
            return condition
    return None


def _band(result: LabResult | None) -> str | None:
    if result is None or result.unusable_reason is not None:
        return None
    return result.answer_band


def _from_drinks_per_day(result: LabResult, gender: str | None) -> AlcoholResult:
    value = result.value
    if value is None or not math.isfinite(value) or value < 0:
        return AlcoholResult(None, AlcoholMethod.DRINKS_PER_DAY, (result.evidence,))
    comparator = result.comparator
    if comparator in (">", ">="):
        heavy = classify_interval(value, math.inf, gender, low_open=comparator == ">")
        low, high = value, math.inf
    elif comparator in ("<", "<="):
        heavy = classify_interval(0.0, value, gender)
        low, high = 0.0, value
    else:
        heavy = classify_interval(value, value, gender)
        low, high = value, value
    return AlcoholResult(heavy, AlcoholMethod.DRINKS_PER_DAY, (result.evidence,), low, high)


def _with_notes(result: AlcoholResult, notes: list[str]) -> AlcoholResult:
    return AlcoholResult(
        result.heavy,
        result.method,
        result.evidence,
        result.drinks_per_day_low,
        result.drinks_per_day_high,
        tuple(notes),
    )

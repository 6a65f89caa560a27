"""One patient's dry-run result: the few figures the reports count, taken from the hook's outcome."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from cds_service.vocabulary import CardExtension

EVALUATED = "evaluated"
SKIPPED = "skipped"
UNKNOWN = "unknown"
# Until the engine states its rules version in the assessment (rules v2), the reports say so instead of guessing.
RULES_VERSION_UNKNOWN = "unknown"

# Age bands (years at --now): children apart, and the very old apart from the rest of the elderly.
AGE_BANDS = ((0, 17, "0-17"), (18, 39, "18-39"), (40, 64, "40-64"), (65, 79, "65-79"), (80, None, "80+"))
AGE_BAND_ORDER = tuple(label for _, _, label in AGE_BANDS) + (UNKNOWN,)


@dataclass(frozen=True)
class PatientResult:
    """What the dry run keeps of one patient: small and picklable (it crosses the process pool)."""

    patient_id: str
    source: str
    status: str
    reason: str | None = None
    age_band: str = UNKNOWN
    sex: str = UNKNOWN
    deceased: bool = False
    mds_min: int | None = None
    mds_max: int | None = None
    mds_group: str = UNKNOWN
    serum_category: str = UNKNOWN
    ionized_category: str = UNKNOWN
    egfr_source: str = UNKNOWN
    magnesium_in_window: bool = False
    deficiency: str = UNKNOWN
    recommendations: tuple[str, ...] = ()
    indicators: tuple[str, ...] = ()
    rules_version: str = RULES_VERSION_UNKNOWN


def skipped(patient_id: str, source: str, reason: str) -> PatientResult:
    """A patient that could not be evaluated, and why (one line)."""
    return PatientResult(patient_id=patient_id, source=source, status=SKIPPED, reason=" ".join(reason.split()))


def _birth_date(raw: Any) -> date | None:
    """A FHIR date (YYYY, YYYY-MM or YYYY-MM-DD); a partial date counts from the first day it allows."""
    if not isinstance(raw, str):
        return None
    parts = raw[:10].split("-")
    try:
        year = int(parts[0])
        month = int(parts[1]) if len(parts) > 1 else 1
        day = int(parts[2]) if len(parts) > 2 else 1
        return date(year, month, day)
    except (ValueError, IndexError):
        return None


def age_band(birth_date: Any, now: datetime) -> str:
    """The age band of a Patient.birthDate at ``now`` ("unknown" without a usable date)."""
    born = _birth_date(birth_date)
    if born is None:
        return UNKNOWN
    today = now.date()
    age = today.year - born.year - ((today.month, today.day) < (born.month, born.day))
    if age < 0:
        return UNKNOWN
    for low, high, label in AGE_BANDS:
        if age >= low and (high is None or age <= high):
            return label
    return UNKNOWN  # pragma: no cover - the last band is open-ended


def _text(value: Any) -> str:
    return str(value) if value is not None else UNKNOWN


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def result_from_outcome(
    patient: Mapping[str, Any],
    source: str,
    assessment: Mapping[str, Any] | None,
    cards: Sequence[Mapping[str, Any]],
    now: datetime,
) -> PatientResult:
    """The figures of one evaluated patient: its Patient resource, the assessment dict and the cards sent."""
    a: Mapping[str, Any] = assessment or {}
    mds = a.get("mds") or {}
    serum = a.get("serum_mg") or {}
    ionized = a.get("ionized_mg") or {}
    codes = []
    indicators = []
    for card in cards:
        extension = card.get("extension") or {}
        codes.append(str(extension.get(CardExtension.RECOMMENDATION, UNKNOWN)))
        indicators.append(str(card.get("indicator", UNKNOWN)))
    deceased = patient.get("deceasedBoolean") is True or isinstance(patient.get("deceasedDateTime"), str)
    return PatientResult(
        patient_id=str(patient.get("id")),
        source=source,
        status=EVALUATED,
        age_band=age_band(patient.get("birthDate"), now),
        sex=patient["gender"] if isinstance(patient.get("gender"), str) else UNKNOWN,
        deceased=deceased,
        mds_min=_int(mds.get("min")),
        mds_max=_int(mds.get("max")),
        mds_group=_text(mds.get("group")),
        serum_category=_text(serum.get("category")),
        ionized_category=_text(ionized.get("category")),
        egfr_source=_text((a.get("egfr") or {}).get("source")),
        # A result "in the window" is one the engine selected (usable or not); older ones are only "stale".
        magnesium_in_window=bool(serum.get("evidence")) or bool(ionized.get("evidence")),
        deficiency=_text(a.get("deficiency")),
        recommendations=tuple(codes),
        indicators=tuple(indicators),
        rules_version=str(a.get("rules_version") or RULES_VERSION_UNKNOWN),
    )

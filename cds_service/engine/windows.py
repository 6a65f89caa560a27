"""Time windows and Observation status rules (clinical-rules.md section 1).

Usable statuses are final, amended and corrected; preliminary is used with a note; anything else is ignored.
Within a concept, the newest result inside the window wins; an older one is reported as ``stale`` and treated
as absent. The newest result in the window counts even when its value is unusable: falling back to an older
value would silently replace "we cannot read the latest result" with an outdated answer.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from cds_service.engine.facts import LabResult
from cds_service.engine.vocabulary import LabConcept

USABLE_STATUSES = frozenset({"final", "amended", "corrected"})  # clinical-rules.md section 1
PRELIMINARY_STATUS = "preliminary"  # clinical-rules.md section 1: used with a note


@dataclass(frozen=True)
class Selection:
    """The result that counts for one concept, or the stale one that was set aside."""

    current: LabResult | None
    stale: LabResult | None
    notes: tuple[str, ...]

    @property
    def preliminary(self) -> bool:
        """Whether the result that counts is only preliminary."""
        return self.current is not None and self.current.status == PRELIMINARY_STATUS


def is_usable_status(status: str) -> bool:
    """Whether an Observation with this status may be used."""
    return status in USABLE_STATUSES or status == PRELIMINARY_STATUS


def has_usable_value(result: LabResult) -> bool:
    """Whether the result carries a value the rules can read."""
    if result.unusable_reason is not None:
        return False
    return result.value is not None or result.answer_band is not None


def candidates(labs: Iterable[LabResult], concept: LabConcept, now: datetime) -> tuple[list[LabResult], list[str]]:
    """Results of a concept with a usable status and a time not after ``now``, newest first, with notes."""
    found: list[LabResult] = []
    notes: list[str] = []
    for result in labs:
        if result.concept != concept or not is_usable_status(result.status):
            continue
        if result.effective is None:
            notes.append(f"{concept} {_ref(result)} has no time: not used")
            continue
        if result.effective > now:
            notes.append(f"{concept} {_ref(result)} is dated after the evaluation time: not used")
            continue
        found.append(result)
    # Stable sort: among results at the same instant, the first listed wins.
    found.sort(key=lambda r: r.effective or now, reverse=True)
    return found, notes


def select_newest(labs: Iterable[LabResult], concept: LabConcept, now: datetime, window_days: int) -> Selection:
    """The newest result of ``concept`` within ``window_days`` before ``now`` (section 1)."""
    found, notes = candidates(labs, concept, now)
    if not found:
        return Selection(None, None, tuple(notes))
    newest = found[0]
    if newest.effective is not None and newest.effective < now - timedelta(days=window_days):
        notes.append(f"{concept} {_ref(newest)} is older than {window_days} days (stale): treated as absent")
        return Selection(None, newest, tuple(notes))
    if newest.status == PRELIMINARY_STATUS:
        notes.append(f"{concept} {_ref(newest)} is preliminary")
    if not has_usable_value(newest):
        reason = newest.unusable_reason or "no value"
        notes.append(f"{concept} {_ref(newest)} is unusable: {reason}")
    return Selection(newest, None, tuple(notes))


def in_window(labs: Iterable[LabResult], concept: LabConcept, now: datetime, window_days: int) -> list[LabResult]:
    """All usable-status results of ``concept`` within the window, newest first."""
    found, _ = candidates(labs, concept, now)
    start = now - timedelta(days=window_days)
    return [r for r in found if r.effective is not None and r.effective >= start]


def _ref(result: LabResult) -> str:
    return f"{result.evidence.resource_type}/{result.evidence.resource_id}"

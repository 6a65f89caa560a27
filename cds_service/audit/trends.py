"""Review trends as plain data: what the store counts per day, folded into ISO weeks for the page and its CSV.

The store groups by calendar day (UTC), which both SQLite and PostgreSQL do on the fixed-width timestamp text
(its first ten characters) without a dialect's week function; the days are folded into ISO 8601 weeks here, in
Python, where ``date.isocalendar`` is exact at year boundaries (2026-12-31 is in 2026-W53, 2027-01-01 too).

Feedback counts in the week its card was shown, whenever it arrived: a week's accepted and overridden figures are
then about that week's cards, comparable with its shown figure, and the since/until filters select cards (and the
feedback about them) the same way the list page's summary selects calls. This module does no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta

NO_REASON = "(no reason given)"
OUTCOMES = ("accepted", "overridden")


@dataclass(frozen=True)
class TrendFilter:
    """Which cards the trends count: shown at or after ``since``, at or before ``until``, of one code."""

    since: datetime | None = None
    until: datetime | None = None
    recommendation: str | None = None


@dataclass(frozen=True)
class DailyCards:
    """Cards of one recommendation shown on one UTC day."""

    day: date
    recommendation: str
    shown: int


@dataclass(frozen=True)
class DailyFeedback:
    """Feedback items of one outcome (and override reason code) on cards of one code shown on one day."""

    day: date
    recommendation: str
    outcome: str
    reason_code: str | None
    count: int


@dataclass(frozen=True)
class TrendCounts:
    """What the store answers: the daily counts, the display of each reason code, and unlinked feedback."""

    cards: tuple[DailyCards, ...]
    feedback: tuple[DailyFeedback, ...]
    reason_displays: Mapping[str, str]  # reason code -> the display an EHR last sent with it
    unlinked_feedback: int  # feedback answered in the period whose card no call of the same EHR issued


@dataclass(frozen=True)
class Week:
    """An ISO 8601 week: ``2026-W09``, starting on Monday ``start``."""

    label: str
    start: date


@dataclass(frozen=True)
class Reason:
    """An override reason as the page names it: its code and the display sent with it."""

    code: str | None
    display: str | None

    @property
    def label(self) -> str:
        """``code: display``, the code alone, or the no-reason label."""
        if self.code is None:
            return NO_REASON
        return f"{self.code}: {self.display}" if self.display else self.code


@dataclass(frozen=True)
class Trends:
    """Per ISO week: cards shown, accepted and overridden per recommendation, and overrides per reason.

    ``weeks`` runs without gaps from the first week with a card to the last (a week without cards is a zero,
    not a missing point); each series in ``per_recommendation`` and ``override_reasons`` has one value per week.
    """

    weeks: tuple[Week, ...]
    per_recommendation: Mapping[str, Mapping[str, tuple[int, ...]]]  # code -> shown/accepted/overridden -> counts
    override_reasons: Mapping[Reason, tuple[int, ...]]
    unlinked_feedback: int

    def totals(self, code: str) -> dict[str, int]:
        """The sums of one recommendation's series."""
        return {name: sum(values) for name, values in self.per_recommendation[code].items()}


def iso_week(day: date) -> Week:
    """The ISO week a day falls in."""
    year, number, weekday = day.isocalendar()
    return Week(f"{year}-W{number:02d}", day - timedelta(days=weekday - 1))


def _weeks_spanning(days: Iterable[date]) -> list[Week]:
    present = sorted(set(days))
    if not present:
        return []
    first, last = iso_week(present[0]).start, iso_week(present[-1]).start
    return [iso_week(first + timedelta(weeks=i)) for i in range((last - first).days // 7 + 1)]


def weekly(counts: TrendCounts) -> Trends:
    """Fold daily counts into contiguous ISO weeks."""
    weeks = _weeks_spanning([row.day for row in counts.cards] + [row.day for row in counts.feedback])
    index = {week.label: i for i, week in enumerate(weeks)}
    per: dict[str, dict[str, list[int]]] = {}

    def series(code: str) -> dict[str, list[int]]:
        return per.setdefault(code, {name: [0] * len(weeks) for name in ("shown", *OUTCOMES)})

    for row in counts.cards:
        series(row.recommendation)["shown"][index[iso_week(row.day).label]] += row.shown
    reasons: dict[Reason, list[int]] = {}
    for item in counts.feedback:
        slot = index[iso_week(item.day).label]
        if item.outcome not in OUTCOMES:
            continue  # the wire model admits no other outcome; a stored oddity is not drawn as one
        series(item.recommendation)[item.outcome][slot] += item.count
        if item.outcome == "overridden":
            reason = Reason(item.reason_code, counts.reason_displays.get(item.reason_code or ""))
            reasons.setdefault(reason, [0] * len(weeks))[slot] += item.count
    ordered_reasons = sorted(reasons.items(), key=lambda kv: (-sum(kv[1]), kv[0].label))
    return Trends(
        weeks=tuple(weeks),
        per_recommendation={code: {name: tuple(values) for name, values in per[code].items()} for code in sorted(per)},
        override_reasons={reason: tuple(values) for reason, values in ordered_reasons},
        unlinked_feedback=counts.unlinked_feedback,
    )

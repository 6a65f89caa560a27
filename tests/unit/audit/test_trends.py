"""Folding daily counts into ISO weeks (expected weeks from the ISO 8601 rule, worked out by hand)."""

from __future__ import annotations

from datetime import date

import pytest

from cds_service.audit.trends import NO_REASON, DailyCards, DailyFeedback, Reason, TrendCounts, iso_week, weekly


@pytest.mark.parametrize(
    ("day", "label", "monday"),
    [
        # 2026 starts on a Thursday, so it has 53 weeks; its week 1 starts on Monday 2025-12-29.
        (date(2026, 1, 1), "2026-W01", date(2025, 12, 29)),
        (date(2026, 12, 31), "2026-W53", date(2026, 12, 28)),
        (date(2027, 1, 1), "2026-W53", date(2026, 12, 28)),  # a Friday: still the last week of 2026
        (date(2027, 1, 4), "2027-W01", date(2027, 1, 4)),
        (date(2024, 12, 30), "2025-W01", date(2024, 12, 30)),  # 2025 starts on a Wednesday
        (date(2026, 3, 1), "2026-W09", date(2026, 2, 23)),  # a Sunday ends its week
    ],
)
def test_iso_week(day: date, label: str, monday: date) -> None:
    week = iso_week(day)
    assert (week.label, week.start) == (label, monday)


def test_weeks_run_without_gaps_and_feedback_counts_in_its_cards_week() -> None:
    counts = TrendCounts(
        cards=(
            DailyCards(date(2026, 12, 28), "a", 2),  # 2026-W53
            DailyCards(date(2027, 1, 1), "a", 1),  # 2026-W53 too
            DailyCards(date(2027, 1, 13), "b", 4),  # 2027-W02 (W01 has nothing)
        ),
        feedback=(
            DailyFeedback(date(2027, 1, 1), "a", "overridden", "patient-declined", 2),
            DailyFeedback(date(2027, 1, 13), "b", "overridden", None, 1),
            DailyFeedback(date(2027, 1, 13), "b", "accepted", None, 3),
        ),
        reason_displays={"patient-declined": "Patient declined"},
        unlinked_feedback=5,
    )
    trends = weekly(counts)
    assert [w.label for w in trends.weeks] == ["2026-W53", "2027-W01", "2027-W02"]
    assert dict(trends.per_recommendation) == {
        "a": {"shown": (3, 0, 0), "accepted": (0, 0, 0), "overridden": (2, 0, 0)},
        "b": {"shown": (0, 0, 4), "accepted": (0, 0, 3), "overridden": (0, 0, 1)},
    }
    assert dict(trends.override_reasons) == {
        Reason("patient-declined", "Patient declined"): (2, 0, 0),  # total 2 first
        Reason(None, None): (0, 0, 1),
    }
    assert Reason(None, None).label == NO_REASON
    assert Reason("x", None).label == "x"
    assert trends.totals("b") == {"shown": 4, "accepted": 3, "overridden": 1}
    assert trends.unlinked_feedback == 5


def test_nothing_gives_no_weeks() -> None:
    trends = weekly(TrendCounts((), (), {}, 0))
    assert trends.weeks == ()
    assert dict(trends.per_recommendation) == {}

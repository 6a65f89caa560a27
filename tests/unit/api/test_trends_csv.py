"""The trends CSV from folded counts: header, row order, zeros, and an override without a reason."""

from __future__ import annotations

import csv
import io
from datetime import date

from cds_service.api.review_insights import trends_csv
from cds_service.audit.trends import DailyCards, DailyFeedback, TrendCounts, weekly


def test_rows_per_code_week_and_figure_then_per_reason() -> None:
    # Monday 2026-03-02 is in 2026-W10, Monday 2026-03-09 in 2026-W11.
    trends = weekly(
        TrendCounts(
            cards=(DailyCards(date(2026, 3, 2), "test-serum-mg", 2), DailyCards(date(2026, 3, 9), "test-serum-mg", 1)),
            feedback=(DailyFeedback(date(2026, 3, 9), "test-serum-mg", "overridden", None, 1),),
            reason_displays={},
            unlinked_feedback=0,
        )
    )
    rows = list(csv.reader(io.StringIO(trends_csv(trends))))
    assert rows == [
        ["week", "week_start", "recommendation", "figure", "reason_code", "reason_display", "count"],
        ["2026-W10", "2026-03-02", "test-serum-mg", "shown", "", "", "2"],
        ["2026-W10", "2026-03-02", "test-serum-mg", "accepted", "", "", "0"],
        ["2026-W10", "2026-03-02", "test-serum-mg", "overridden", "", "", "0"],
        ["2026-W11", "2026-03-09", "test-serum-mg", "shown", "", "", "1"],
        ["2026-W11", "2026-03-09", "test-serum-mg", "accepted", "", "", "0"],
        ["2026-W11", "2026-03-09", "test-serum-mg", "overridden", "", "", "1"],
        ["2026-W10", "2026-03-02", "", "override-reason", "", "(no reason given)", "0"],
        ["2026-W11", "2026-03-09", "", "override-reason", "", "(no reason given)", "1"],
    ]

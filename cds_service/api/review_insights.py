"""The review page's insight views on the /audit blueprint: trends (page, chart, CSV) and a patient's timeline.

Registered on the blueprint by :func:`register_insights` (one call from ``create_review_blueprint``), so they sit
behind the same reviewer credential, security headers and store-outage handler as the list and detail pages. The
charts are server-side SVG with presentation attributes only (:mod:`cds_service.api.svgchart`): the page's
Content-Security-Policy stays as strict as it is, with no script and no inline style.

Also a template helper for the call detail page: which cards the call held back, and the feedback that did it.
"""

from __future__ import annotations

import csv
import io
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask import Blueprint, Response, render_template, request, url_for

from cds_service.api.svgchart import PALETTE, Series, grouped_bars, lines, swatch
from cds_service.audit.export import csv_safe
from cds_service.audit.model import CallFilter, StoredRecord
from cds_service.audit.records import format_timestamp, parse_moment
from cds_service.audit.timeline import (
    HeldBack,
    card_uuids,
    held_back,
    origins,
    suppression_feedback_ids,
    timeline,
)
from cds_service.audit.trends import NO_REASON, TrendFilter, Trends
from cds_service.interfaces import AuditReader

TIMELINE_PAGE = 100  # calls per timeline page (the newest first page; each page reads oldest first)
MAX_CHART_WEEKS = 104  # two years of weekly bars stay readable; the tables and the CSV keep every week
MAX_PAGE = 1_000_000  # 100 million calls of one patient
MAX_FILTER_TEXT = 256  # longer than any code or id the store holds
SERIES_COLOURS = {"shown": PALETTE[0], "accepted": PALETTE[2], "overridden": PALETTE[1]}
CSV_COLUMNS = ("week", "week_start", "recommendation", "figure", "reason_code", "reason_display", "count")
_TREND_ARGS = ("since", "until", "recommendation")


def neutralise_cell(value: object) -> str:
    """The cell as text, prefixed with ``'`` when a spreadsheet would read it as a formula (as the CSV export)."""
    return str(csv_safe("" if value is None else str(value)))


def _bad_text(text: str) -> bool:
    # Control characters (NUL above all: PostgreSQL refuses it in text) cannot be in any stored code or id.
    return len(text) > MAX_FILTER_TEXT or any(unicodedata.category(ch) == "Cc" for ch in text)


@dataclass(frozen=True)
class _Period:
    since: datetime | None
    until: datetime | None


def _period_from_args(errors: list[str]) -> _Period:
    """since/until as the list page reads them (a bare date: since from its start, until to its end)."""

    def moment(name: str, *, end_of_day: bool) -> datetime | None:
        text = request.args.get(name, "").strip()
        if not text:
            return None
        try:
            parsed = parse_moment(text, end_of_day=end_of_day)
            format_timestamp(parsed)  # a moment that cannot be written in UTC (year 9999 minus an hour) is bad too
        except (ValueError, OverflowError) as exc:
            errors.append(f"{name}: {exc}" if isinstance(exc, ValueError) else f"{name}: out of range: {text!r}")
            return None
        return parsed

    since = moment("since", end_of_day=False)
    until = moment("until", end_of_day=True)
    if since is not None and until is not None and since > until:
        errors.append("since must not be later than until")
    return _Period(since, until)


def _page_from_args(errors: list[str]) -> int:
    """The page number: a whole number from 1 (a huge one would overflow the database's OFFSET: 400, not 500)."""
    text = request.args.get("page", "").strip() or "1"
    # ASCII digits only and short: int() refuses "²" and numbers of over 4,300 digits with an exception.
    if not (text.isascii() and text.isdigit() and len(text) <= len(str(MAX_PAGE))) or not 1 <= int(text) <= MAX_PAGE:
        errors.append(f"page must be a whole number from 1 to {MAX_PAGE}")
        return 1
    return int(text)


def trend_filter_from_args() -> tuple[TrendFilter, list[str]]:
    """The trends filters of the request, and what is wrong with them."""
    errors: list[str] = []
    period = _period_from_args(errors)
    recommendation = request.args.get("recommendation", "").strip() or None
    if recommendation is not None and _bad_text(recommendation):
        errors.append("recommendation: not a recommendation code")
        recommendation = None
    return TrendFilter(since=period.since, until=period.until, recommendation=recommendation), errors


def trend_rows(trends: Trends) -> Iterator[tuple[object, ...]]:
    """The CSV rows (after the header): each recommendation's figures per week, then overrides per reason."""
    for code, series in trends.per_recommendation.items():
        for i, week in enumerate(trends.weeks):
            for figure, values in series.items():
                yield (week.label, week.start.isoformat(), code, figure, "", "", values[i])
    for reason, values in trends.override_reasons.items():
        for i, week in enumerate(trends.weeks):
            yield (
                week.label,
                week.start.isoformat(),
                "",
                "override-reason",
                reason.code or "",
                reason.display or ("" if reason.code else NO_REASON),
                values[i],
            )


def trends_csv(trends: Trends) -> str:
    """The trends as CSV with a header row, every cell safe to open in a spreadsheet."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for row in trend_rows(trends):
        writer.writerow([neutralise_cell(cell) for cell in row])
    return buffer.getvalue()


@dataclass(frozen=True)
class TrendCharts:
    """What the trends page draws: the weeks charted, one bar chart per code, the reasons' line chart."""

    weeks_charted: int
    weeks_total: int
    per_recommendation: dict[str, Any]
    reasons: Any
    reason_colours: dict[str, str]


def trend_charts(trends: Trends) -> TrendCharts:
    """The SVG charts of the trends (the last ``MAX_CHART_WEEKS`` weeks)."""
    weeks = trends.weeks[-MAX_CHART_WEEKS:]
    skip = len(trends.weeks) - len(weeks)
    labels = [week.label for week in weeks]
    bars = {
        code: grouped_bars(
            f"{code}: cards per ISO week",
            f"cards-{index}",
            labels,
            [Series(name, values[skip:], SERIES_COLOURS[name]) for name, values in series.items()],
            y_label="cards",
        )
        for index, (code, series) in enumerate(trends.per_recommendation.items())
    }
    colours = {reason.label: PALETTE[i % len(PALETTE)] for i, reason in enumerate(trends.override_reasons)}
    reasons = (
        lines(
            "Overrides per reason, per ISO week",
            "reasons",
            labels,
            [
                Series(reason.label, values[skip:], colours[reason.label])
                for reason, values in trends.override_reasons.items()
            ],
            y_label="overrides",
            legend=False,
        )
        if trends.override_reasons
        else None
    )
    return TrendCharts(len(weeks), len(trends.weeks), bars, reasons, colours)


def patient_href(patient_id: str | None) -> str | None:
    """The timeline URL of a patient id (None when there is none)."""
    return url_for("audit.patient_timeline", patient_id=patient_id) if patient_id else None


def register_insights(bp: Blueprint, audit_log: AuditReader) -> None:
    """Add the trends and timeline views, and the held-back helper for the detail page, to the /audit blueprint."""

    @bp.context_processor
    def _helpers() -> dict[str, Callable[..., Any]]:
        def held_back_of(call: StoredRecord) -> Sequence[HeldBack]:
            ids = suppression_feedback_ids([call])
            return held_back(call, audit_log.get_many(ids) if ids else {})

        return {"held_back_of": held_back_of, "patient_href": patient_href, "swatch": swatch}

    @bp.get("/trends")
    def trends_page() -> tuple[str, int]:
        filters, errors = trend_filter_from_args()
        trends = audit_log.trends(filters) if not errors else None
        charts = trend_charts(trends) if trends is not None else None
        kept: dict[str, Any] = {
            k: v for k, v in request.args.items() if k in ("since", "until", "recommendation") and v
        }
        return (
            render_template(
                "audit/trends.html",
                trends=trends,
                charts=charts,
                errors=errors,
                args=request.args,
                csv_url=url_for("audit.trends_csv_download", **kept),
                colours=SERIES_COLOURS,
            ),
            400 if errors else 200,
        )

    @bp.get("/trends.csv")
    def trends_csv_download() -> Response:
        filters, errors = trend_filter_from_args()
        if errors:
            return Response("\n".join(errors) + "\n", status=400, mimetype="text/plain")
        body = trends_csv(audit_log.trends(filters))
        response = Response(body, mimetype="text/csv")
        response.headers["Content-Disposition"] = 'attachment; filename="mgcds-trends.csv"'
        return response

    @bp.get("/patients/<path:patient_id>")
    def patient_timeline(patient_id: str) -> tuple[str, int]:
        if _bad_text(patient_id):
            return render_template("audit/unavailable.html", message="not a patient id"), 404
        errors: list[str] = []
        period = _period_from_args(errors)
        page = _page_from_args(errors)
        filters = CallFilter(patient_id=patient_id, since=period.since, until=period.until)
        if errors:
            calls: list[StoredRecord] = []
            total = 0
        else:
            calls, total = audit_log.list_calls(filters, limit=TIMELINE_PAGE, offset=(page - 1) * TIMELINE_PAGE)
        uuids = card_uuids(calls)
        feedback = audit_log.feedback_on_cards(uuids) if uuids else []
        suppressing_ids = suppression_feedback_ids(calls)
        suppressing = audit_log.get_many(suppressing_ids) if suppressing_ids else {}
        pages = max(1, (total + TIMELINE_PAGE - 1) // TIMELINE_PAGE)
        kept: dict[str, Any] = {k: v for k, v in request.args.items() if k in ("since", "until") and v}
        return (
            render_template(
                "audit/timeline.html",
                patient_id=patient_id,
                entries=timeline(calls, feedback, suppressing),
                origins=origins(calls),
                total=total,
                page=page,
                pages=pages,
                earlier_url=url_for("audit.patient_timeline", patient_id=patient_id, page=page + 1, **kept)
                if page < pages
                else None,
                later_url=url_for("audit.patient_timeline", patient_id=patient_id, page=page - 1, **kept)
                if page > 1
                else None,
                errors=errors,
                args=request.args,
            ),
            400 if errors else 200,
        )

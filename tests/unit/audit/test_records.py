"""Record payloads: every field round-trips, timestamps are fixed-width UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from cds_service.audit.records import (
    call_from_payload,
    call_to_payload,
    feedback_from_payload,
    feedback_to_payload,
    format_timestamp,
    parse_moment,
)
from cds_service.errors import AuditStoreError
from tests.unit.audit.helpers import make_call, make_feedback


def test_call_payload_round_trips_every_field() -> None:
    record = make_call()
    assert call_from_payload(call_to_payload(record)) == record


def test_feedback_payload_round_trips_every_field() -> None:
    record = make_feedback("card-1", "overridden", accepted=("s1",))
    assert feedback_from_payload(feedback_to_payload(record)) == record


def test_timestamps_are_utc_with_microseconds() -> None:
    # 10:30+01:00 is 09:30 UTC (hand conversion).
    moment = datetime(2026, 3, 1, 10, 30, 0, 5, tzinfo=timezone(timedelta(hours=1)))
    assert format_timestamp(moment) == "2026-03-01T09:30:00.000005Z"


def test_naive_timestamps_are_refused() -> None:
    with pytest.raises(AuditStoreError):
        format_timestamp(datetime(2026, 3, 1, 9, 30))  # noqa: DTZ001 - the point of the test


def test_parse_moment_bare_dates_and_offsets() -> None:
    assert parse_moment("2026-03-01") == datetime(2026, 3, 1, tzinfo=UTC)
    assert parse_moment("2026-03-01", end_of_day=True) == datetime(2026, 3, 1, 23, 59, 59, 999999, tzinfo=UTC)
    assert parse_moment("2026-03-01T10:00+01:00") == datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    assert parse_moment("2026-03-01T10:00") == datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_moment("yesterday")

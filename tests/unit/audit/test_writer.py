"""The spooling writer: the caller never waits for or fails with the database; records reach the store once, in
order. And the in-memory log, which is both writer and reader."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from cds_service.audit.memory import InMemoryAuditLog
from cds_service.audit.sqlwrite import SqlAuditAppender
from cds_service.audit.store import init_audit_store
from cds_service.audit.writer import SpoolingAuditWriter, open_audit_writer
from cds_service.errors import AuditStoreError
from tests.unit.audit.helpers import make_call, make_feedback, open_pair

UNREACHABLE_PG = "postgresql://postgres@127.0.0.1:1/test"  # nothing listens on port 1


def test_record_call_does_not_block_or_raise_when_the_database_is_down(tmp_path: Path) -> None:
    log = open_audit_writer(UNREACHABLE_PG, tmp_path / "spool.jsonl", asynchronous=True)
    try:
        started = time.perf_counter()
        ids = [log.record_call(make_call(minutes=i)) for i in range(20)]
        elapsed = time.perf_counter() - started
        assert elapsed < 1.0  # 20 spool appends; a single database connect attempt alone can take longer
        assert len(set(ids)) == 20
        assert log.flush(timeout=0.5) is False
        assert log.spool is not None
        assert log.spool.pending_count() == 20
    finally:
        log.close()


def test_synchronous_mode_also_survives_an_outage(tmp_path: Path) -> None:
    log = open_audit_writer(UNREACHABLE_PG, tmp_path / "spool.jsonl", asynchronous=False)
    try:
        log.record_call(make_call())
        log.record_feedback(make_feedback("card-x"))
        assert log.has_pending()
    finally:
        log.close()


def test_records_written_during_an_outage_reach_the_store_in_order_when_it_is_back(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'audit.sqlite3'}"
    spool_path = tmp_path / "spool.jsonl"
    pair = open_pair(url, spool_path)  # schema not created yet: every write fails
    log = pair.writer
    first = [log.record_call(make_call(minutes=i)) for i in range(3)]
    assert log.has_pending()
    init_audit_store(url)  # the store comes back
    log._next_attempt = 0.0  # skip the back-off, as the next write after the retry delay would
    last = log.record_call(make_call(minutes=9))  # "replayed at the next write"
    assert not log.has_pending()
    assert [r.record_id for r in pair.reader.iter_records()] == [*first, last]
    assert pair.reader.verify().ok
    pair.close()


def test_background_writer_stores_everything_and_flush_waits(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'audit.sqlite3'}"
    pair = open_pair(url, tmp_path / "spool.jsonl", asynchronous=True, init=True)
    log, reader = pair.writer, pair.reader
    try:
        call = make_call()
        ids = [log.record_call(call)] + [log.record_call(make_call(minutes=i)) for i in range(1, 50)]
        feedback_id = log.record_feedback(make_feedback(call.cards[0].uuid))
        assert log.flush(timeout=10)
        assert reader.count() == 51
        assert [r.record_id for r in reader.iter_records()] == [*ids, feedback_id]
        stored = reader.get(feedback_id)
        assert stored is not None
        assert stored.linked_record_id == ids[0]
        assert reader.verify().ok
    finally:
        pair.close()


def test_check_ready(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'audit.sqlite3'}"
    log = SpoolingAuditWriter(SqlAuditAppender.open(url), None, asynchronous=False)
    try:
        with pytest.raises(AuditStoreError, match="mgcds audit init"):
            log.check_ready()
        init_audit_store(url)
        log.check_ready()
    finally:
        log.close()


def test_in_memory_audit_log_keeps_records_and_answers_queries() -> None:
    log = InMemoryAuditLog()
    call = make_call()
    record_id = log.record_call(call)
    log.record_feedback(make_feedback(call.cards[0].uuid, "overridden"))
    assert log.calls == [call]
    assert len(log.feedback) == 1
    assert log.count() == 2
    assert log.feedback_for([record_id])[record_id][0].payload["outcome"] == "overridden"
    assert log.verify().ok
    log.check_ready()
    log.close()


def test_odd_values_from_the_engine_never_make_record_call_raise() -> None:
    from dataclasses import replace
    from datetime import datetime
    from enum import Enum

    class Category(Enum):
        LOW = "low"

    log = InMemoryAuditLog()
    odd = replace(
        make_call(),
        occurred_at=datetime(2026, 3, 1, 9, 30),  # noqa: DTZ001 - naive on purpose
        assessment={
            "egfr": float("nan"),
            "serum": Category.LOW,
            "codes": {"b", "a"},
            "when": datetime(2026, 1, 2),  # noqa: DTZ001 - naive on purpose
        },
    )
    record_id = log.record_call(odd)
    stored = log.get(record_id)
    assert stored is not None
    assert stored.payload["occurred_at"] == "2026-03-01T09:30:00.000000Z"
    assert stored.payload["assessment"] == {
        "egfr": "nan",
        "serum": "low",
        "codes": ["a", "b"],
        "when": "2026-01-02T00:00:00",
    }
    assert log.verify().ok
    log.close()

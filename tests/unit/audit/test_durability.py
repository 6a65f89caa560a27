"""Issue 19, R1/R2/R4/R5: a record is complete in the spool or the call is refused; the drain streams; the retry
interval is what it says; a closing writer says what it left.

The disk faults are injected here (a short ``os.write``, a write of zero bytes, ENOSPC); the same behaviour on a
real, tiny file system is in tests/integration/test_audit_durability.py.
"""

from __future__ import annotations

import errno
import gc
import logging
import os
import time
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from cds_service.audit import spool as spool_module
from cds_service.audit.entries import make_entry
from cds_service.audit.model import AppendOutcome, PendingEntry
from cds_service.audit.records import AuditEventType, call_to_payload
from cds_service.audit.spool import Spool
from cds_service.audit.store import SqlAuditStore
from cds_service.audit.writer import RETRY_MAX_SECONDS, SpoolingAuditWriter, open_audit_writer
from cds_service.errors import AuditNotDurable, AuditStoreError
from tests.unit.audit.helpers import make_call, make_card, make_feedback, sqlite_pair

RealWrite = Callable[[int, bytes | memoryview], int]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlAuditStore]:
    """An initialised SQLite store."""
    s = SqlAuditStore(f"sqlite:///{tmp_path / 'audit.sqlite3'}")
    s.init_schema()
    yield s
    s.dispose()


def _short_writes(monkeypatch: pytest.MonkeyPatch, *, accept: int, then: OSError | None) -> list[int]:
    """Make the spool's os.write take at most ``accept`` bytes once, then raise ``then`` (None: return 0)."""
    real: RealWrite = os.write
    calls: list[int] = []

    def write(fd: int, data: bytes | memoryview) -> int:
        calls.append(len(data))
        if len(calls) == 1:
            return real(fd, bytes(data[:accept]))
        if then is not None:
            raise then
        return 0

    monkeypatch.setattr(spool_module.os, "write", write)
    return calls


@pytest.mark.parametrize(
    "then", [OSError(errno.ENOSPC, "No space left on device"), None], ids=["short-then-enospc", "short-then-zero"]
)
def test_a_short_write_is_refused_and_leaves_no_fragment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, then: OSError | None
) -> None:
    pair = sqlite_pair(tmp_path)
    try:
        kept = pair.writer.record_call(make_call(minutes=0))
        before = pair.spool_path.read_bytes() if pair.spool_path.exists() else b""
        calls = _short_writes(monkeypatch, accept=40, then=then)
        with pytest.raises(AuditNotDurable, match="local spool"):
            pair.writer.record_call(make_call(minutes=1))
        assert len(calls) == 2, "the writer went on writing after the short write"
        after = pair.spool_path.read_bytes() if pair.spool_path.exists() else b""
        assert after == before, "the 40 bytes of the cut record were left in the spool"
        monkeypatch.undo()
        again = pair.writer.record_call(make_call(minutes=2))  # the disk has room again: recorded
        assert [r.record_id for r in pair.reader.iter_records()] == [kept, again]
        assert pair.reader.verify().ok
    finally:
        pair.close()


def test_a_refused_record_marks_the_spool_not_ready_until_a_probe_succeeds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pair = sqlite_pair(tmp_path)
    try:
        _short_writes(monkeypatch, accept=0, then=OSError(errno.EIO, "Input/output error"))
        with pytest.raises(AuditNotDurable):
            pair.writer.record_call(make_call())
        assert pair.writer.spool_failure is not None
        monkeypatch.undo()
        spool = {c.name: c for c in pair.writer.readiness().checks}["spool"]
        assert spool.status == "ok"  # the probe writes again: the failure is cleared
        assert pair.writer.spool_failure is None
    finally:
        pair.close()


def test_the_items_of_one_feedback_call_are_spooled_all_or_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pair = sqlite_pair(tmp_path)
    try:
        call = make_call(cards=(make_card("test-serum-mg"), make_card("supplement-organic")))
        pair.writer.record_call(call)
        items = [make_feedback(card.uuid, "overridden") for card in call.cards]
        _short_writes(monkeypatch, accept=100, then=OSError(errno.ENOSPC, "No space left on device"))
        with pytest.raises(AuditNotDurable):
            pair.writer.record_feedback_items(items)
        monkeypatch.undo()
        assert pair.reader.count() == 1  # neither item: a retried feedback call is not recorded twice
        ids = pair.writer.record_feedback_items(items)
        assert len(ids) == 2
        assert [r.record_id for r in pair.reader.iter_records()][1:] == ids
    finally:
        pair.close()


def test_fsync_policy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real = os.fdatasync
    monkeypatch.setattr(spool_module.os, "fdatasync", lambda fd: (synced.append(fd), real(fd))[1])
    line = make_entry(AuditEventType.SERVICE_CALL, call_to_payload(make_call())).payload_text
    Spool(tmp_path / "off.jsonl").append(line)
    assert synced == []
    durable = Spool(tmp_path / "always.jsonl", fsync=True)
    durable.append(line)
    durable.append(line)
    assert len(synced) == 2  # one per record


def _entries(n: int) -> list[PendingEntry]:
    return [make_entry(AuditEventType.SERVICE_CALL, call_to_payload(make_call(minutes=i))) for i in range(n)]


def test_the_live_spool_is_rotated_at_its_size_bound(tmp_path: Path, store: SqlAuditStore) -> None:
    spool = Spool(tmp_path / "spool.jsonl", rotate_bytes=4096)
    entries = _entries(12)
    for entry in entries:
        spool.append(entry.payload_text)
    files = spool.draining_files()
    assert len(files) >= 2, "the live spool grew past its bound"
    assert all(path.stat().st_size < 4096 + 4000 for path in files)
    assert spool.drain(store.append) == 12
    assert [r.record_id for r in store.iter_records()] == [e.record_id for e in entries]


def _spool_of(path: Path, target_bytes: int) -> int:
    """Write a spool of about ``target_bytes`` of distinct call records; returns how many."""
    template = make_entry(AuditEventType.SERVICE_CALL, call_to_payload(make_call()))
    text = template.payload_text
    count = 0
    with path.open("w", encoding="utf-8") as handle:
        while handle.tell() < target_bytes:
            record_id = f"{count:032x}"
            handle.write(text.replace(template.record_id, record_id) + "\n")
            count += 1
    return count


def _drain_peak(tmp_path: Path, name: str, size: int) -> tuple[int, int]:
    path = tmp_path / name / "spool.jsonl"
    path.parent.mkdir()
    written = _spool_of(path, size)
    stored = 0

    def sink(batch: Sequence[PendingEntry]) -> AppendOutcome:
        nonlocal stored
        stored += len(batch)
        return AppendOutcome(len(batch))

    gc.collect()
    tracemalloc.start()
    try:
        Spool(path).drain(sink)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert stored == written
    return peak, written


def test_draining_streams_the_file_its_memory_does_not_grow_with_it(tmp_path: Path) -> None:
    # Before issue 19 a drain read and parsed the whole file (about 7x its size in memory).
    small, _ = _drain_peak(tmp_path, "small", 2 * 1024 * 1024)
    large, count = _drain_peak(tmp_path, "large", 24 * 1024 * 1024)
    print(f"drain peak (Python allocations): 2 MiB spool {small / 2**20:.1f} MiB, 24 MiB spool {large / 2**20:.1f} MiB")
    assert large < 12 * 1024 * 1024, "draining a 24 MiB spool held more than 12 MiB"
    assert large < small * 2, "the drain's memory grew with the file"
    assert count > 10_000


def test_a_large_backlog_is_estimated_cheaply_and_counted_exactly_on_demand(tmp_path: Path) -> None:
    path = tmp_path / "spool.jsonl"
    written = _spool_of(path, 20 * 1024 * 1024)  # past the 16 MiB counted exactly
    spool = Spool(path)
    quick = spool.backlog()
    assert quick.estimated
    assert abs(quick.records - written) <= written * 0.05
    assert quick.bytes == path.stat().st_size
    assert quick.oldest_occurred_at == "2026-03-01T09:30:00.000000Z"
    assert spool.pending_count() == written  # exact


class _Down:
    """A store that is unavailable, counting the attempts made on it."""

    def __init__(self) -> None:
        self.attempts: list[float] = []

    def append(self, entries: Sequence[PendingEntry]) -> AppendOutcome:
        self.attempts.append(time.monotonic())
        raise AuditStoreError("connection refused")

    def check_ready(self, time_limit_seconds: float | None = None) -> None:
        raise AuditStoreError("connection refused")

    def dispose(self) -> None:
        """Nothing to release."""


def test_the_retry_interval_is_what_the_log_says_and_new_records_do_not_shorten_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    down = _Down()
    writer = SpoolingAuditWriter(down, Spool(tmp_path / "spool.jsonl"), asynchronous=True)
    try:
        with caplog.at_level(logging.ERROR, logger="mgcds.audit"):
            writer.record_call(make_call())
            deadline = time.monotonic() + 1.6
            while time.monotonic() < deadline:  # a busy service: a record every 20 ms during the outage
                writer.record_call(make_call())
                time.sleep(0.02)
        # Back-off 0.2, 0.4, 0.8 s: four attempts in 1.6 s, not one per record (there were about 80 records).
        assert 2 <= len(down.attempts) <= 5, down.attempts
        gaps = [b - a for a, b in zip(down.attempts, down.attempts[1:], strict=False)]
        assert all(gap >= 0.18 for gap in gaps), gaps
        first = next(r.getMessage() for r in caplog.records if "unavailable" in r.getMessage())
        assert "next attempt in 0.2 s" in first
        assert f"backing off to {RETRY_MAX_SECONDS:.0f} s" in first
        assert writer.spool is not None
        assert writer.spool.pending_count() > 50
    finally:
        writer.close()


def test_a_closing_writer_says_what_it_left_in_the_spool(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    writer = SpoolingAuditWriter(_Down(), Spool(tmp_path / "spool.jsonl"), asynchronous=False)
    for minutes in range(3):
        writer.record_call(make_call(minutes=minutes))
    with caplog.at_level(logging.WARNING, logger="mgcds.audit"):
        writer.close()
    [closed] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("audit writer closed")]
    assert "3 records" in closed
    assert "2026-03-01T09:30:00.000000Z" in closed  # the oldest one's time


def test_nothing_is_kept_in_memory_when_the_spool_refuses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Before issue 19 the writer kept such records in a list and answered 200; a kill lost them all.
    writer = open_audit_writer(f"sqlite:///{tmp_path / 'a.sqlite3'}", tmp_path / "spool.jsonl", asynchronous=False)
    try:
        _short_writes(monkeypatch, accept=0, then=OSError(errno.ENOSPC, "No space left on device"))
        for minutes in range(3):
            with pytest.raises(AuditNotDurable):
                writer.record_call(make_call(minutes=minutes))
        monkeypatch.undo()
        assert not writer.has_pending()
        assert not hasattr(writer, "_memory")
    finally:
        writer.close()


def test_a_lone_surrogate_in_a_record_is_replaced_not_fatal(tmp_path: Path) -> None:
    pair = sqlite_pair(tmp_path)
    try:
        record_id = pair.writer.record_call(make_call(patient_id="pat-\ud800"))
        stored = pair.reader.get(record_id)
        assert stored is not None
        assert stored.payload["patient_id"] == "pat-\ufffd"
    finally:
        pair.close()

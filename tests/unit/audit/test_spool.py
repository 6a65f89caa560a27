"""The spool: order, outage, exactly-once replay, torn writes, appends racing a drain."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from cds_service.audit.entries import make_entry
from cds_service.audit.model import AppendOutcome, PendingEntry
from cds_service.audit.records import AuditEventType, call_to_payload
from cds_service.audit.spool import Spool
from cds_service.audit.store import SqlAuditStore
from cds_service.errors import AuditStoreError
from tests.unit.audit.helpers import make_call


@pytest.fixture
def store(tmp_path: Path) -> SqlAuditStore:
    """An initialised SQLite store."""
    s = SqlAuditStore(f"sqlite:///{tmp_path / 'audit.sqlite3'}")
    s.init_schema()
    return s


def _entries(n: int) -> list[PendingEntry]:
    return [make_entry(AuditEventType.SERVICE_CALL, call_to_payload(make_call(minutes=i))) for i in range(n)]


def _stored_ids(store: SqlAuditStore) -> list[str]:
    return [r.record_id for r in store.iter_records()]


def test_drain_stores_in_spool_order_and_empties_the_spool(tmp_path: Path, store: SqlAuditStore) -> None:
    spool = Spool(tmp_path / "spool.jsonl", batch_records=2)
    entries = _entries(5)
    for entry in entries:
        spool.append(entry.payload_text)
    assert spool.pending_count() == 5
    assert spool.drain(store.append) == 5
    assert _stored_ids(store) == [e.record_id for e in entries]
    assert not spool.has_pending()
    assert store.verify().ok


def test_outage_keeps_records_and_they_replay_later(tmp_path: Path, store: SqlAuditStore) -> None:
    spool = Spool(tmp_path / "spool.jsonl")
    entries = _entries(3)
    for entry in entries:
        spool.append(entry.payload_text)

    def down(_batch: Sequence[PendingEntry]) -> AppendOutcome:
        raise AuditStoreError("database unreachable")

    with pytest.raises(AuditStoreError):
        spool.drain(down)
    assert spool.pending_count() == 3
    later = _entries(1)[0]
    spool.append(later.payload_text)  # written during the outage, after the claim
    assert spool.drain(store.append) == 4
    assert _stored_ids(store) == [e.record_id for e in [*entries, later]]


def test_crash_after_commit_before_cleanup_replays_exactly_once(tmp_path: Path, store: SqlAuditStore) -> None:
    spool = Spool(tmp_path / "spool.jsonl")
    entries = _entries(4)
    for entry in entries:
        spool.append(entry.payload_text)

    def commit_then_die(batch: Sequence[PendingEntry]) -> AppendOutcome:
        store.append(batch)  # committed ...
        raise AuditStoreError("killed before the spool file was removed")  # ... but the file stays

    with pytest.raises(AuditStoreError):
        spool.drain(commit_then_die)
    assert spool.has_pending()
    assert spool.drain(store.append) == 0  # all already stored: skipped
    assert store.count() == 4
    assert not spool.has_pending()
    assert store.verify().ok


def test_torn_line_is_skipped_and_next_record_stays_readable(tmp_path: Path, store: SqlAuditStore) -> None:
    path = tmp_path / "spool.jsonl"
    spool = Spool(path)
    first, second = _entries(2)
    spool.append(first.payload_text)
    with path.open("ab") as handle:  # a writer killed mid-line
        handle.write(second.payload_text.encode()[:40])
    third = _entries(1)[0]
    spool.append(third.payload_text)
    assert spool.drain(store.append) == 2
    assert _stored_ids(store) == [first.record_id, third.record_id]


def test_append_after_a_claim_goes_to_a_fresh_file(tmp_path: Path, store: SqlAuditStore) -> None:
    path = tmp_path / "spool.jsonl"
    spool = Spool(path)
    a, b = _entries(2)
    spool.append(a.payload_text)
    spool._claim()  # what a drain does first
    assert not path.exists()
    spool.append(b.payload_text)
    assert path.exists()
    assert len(spool.draining_files()) == 1
    assert spool.drain(store.append) == 2
    assert _stored_ids(store) == [a.record_id, b.record_id]


def test_spool_file_is_private(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.jsonl")
    spool.append(_entries(1)[0].payload_text)
    assert (tmp_path / "spool.jsonl").stat().st_mode & 0o077 == 0


def test_lines_that_are_not_records_do_not_block_the_rest(tmp_path: Path, store: SqlAuditStore) -> None:
    path = tmp_path / "spool.jsonl"
    spool = Spool(path)
    good = _entries(2)
    spool.append(good[0].payload_text)
    spool.append('{"record_id": "x", "event_type": "service-call"}')  # fields missing
    spool.append('{"record_id": "y", "event_type": "unknown-kind", "occurred_at": "t", "service_id": "s"}')
    spool.append("[1, 2]")
    spool.append(good[1].payload_text)
    assert spool.drain(store.append) == 2
    assert _stored_ids(store) == [e.record_id for e in good]

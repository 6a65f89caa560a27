"""The drain may take the entries it spooled itself instead of parsing their lines: same records, same chain."""

from __future__ import annotations

from pathlib import Path

import pytest

from cds_service.audit.entries import make_entry
from cds_service.audit.model import PendingEntry
from cds_service.audit.records import AuditEventType, call_to_payload
from cds_service.audit.spool import Spool
from cds_service.audit.store import SqlAuditStore
from cds_service.audit.writer import _KnownEntries
from tests.unit.audit.helpers import make_call


@pytest.fixture
def store(tmp_path: Path) -> SqlAuditStore:
    """An initialised SQLite store."""
    s = SqlAuditStore(f"sqlite:///{tmp_path / 'audit.sqlite3'}")
    s.init_schema()
    return s


def _entries(n: int) -> list[PendingEntry]:
    return [make_entry(AuditEventType.SERVICE_CALL, call_to_payload(make_call(minutes=i))) for i in range(n)]


def test_known_and_unknown_lines_are_stored_in_spool_order(tmp_path: Path, store: SqlAuditStore) -> None:
    spool = Spool(tmp_path / "spool.jsonl")
    known = _KnownEntries(capacity=10)
    entries = _entries(4)
    for index, entry in enumerate(entries):
        if index % 2 == 0:  # the others stand for lines another worker wrote to the shared spool
            known.put(entry)
        spool.append(entry.payload_text)
    assert spool.drain(store.append, known=known.pop) == 4
    assert [r.record_id for r in store.iter_records()] == [e.record_id for e in entries]
    assert [r.payload for r in store.iter_records()] == [e.payload for e in entries]
    assert store.verify().ok
    # What was drained is forgotten.
    assert known.pop(entries[0].payload_text) is None


def test_known_entries_drop_the_oldest_beyond_capacity() -> None:
    known = _KnownEntries(capacity=2)
    first, second, third = _entries(3)
    for entry in (first, second, third):
        known.put(entry)
    assert known.pop(first.payload_text) is None
    assert known.pop(second.payload_text) is second
    assert known.pop(third.payload_text) is third

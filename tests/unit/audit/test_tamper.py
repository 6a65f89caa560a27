"""Tampering with a stored chain: verify names the first broken link for each kind of edit."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import text

from cds_service.audit.entries import make_entry
from cds_service.audit.records import AuditEventType, call_to_payload, feedback_to_payload
from cds_service.audit.store import SqlAuditStore
from tests.unit.audit.helpers import make_call, make_feedback

N_RECORDS = 6


@pytest.fixture
def chain(store_url: str) -> Iterator[SqlAuditStore]:
    """A store holding a valid chain of six records (five calls, one feedback)."""
    store = SqlAuditStore(store_url)
    store.init_schema()
    calls = [make_call(patient_id=f"pat-{i}", minutes=i) for i in range(5)]
    entries = [make_entry(AuditEventType.SERVICE_CALL, call_to_payload(c)) for c in calls]
    entries.append(make_entry(AuditEventType.FEEDBACK, feedback_to_payload(make_feedback(calls[0].cards[0].uuid))))
    for entry in entries:  # one transaction each, as the writer does under load
        store.append([entry])
    assert store.verify().ok
    yield store
    store.dispose()


def _sql(store: SqlAuditStore, statement: str, **params: object) -> None:
    with store.engine.begin() as conn:
        conn.execute(text(statement), params)


def test_intact_chain_verifies(chain: SqlAuditStore) -> None:
    report = chain.verify()
    assert report.ok
    assert report.checked == N_RECORDS
    assert report.head_seq == N_RECORDS


def test_edited_value_is_found(chain: SqlAuditStore) -> None:
    _sql(
        chain,
        "UPDATE mgcds_audit_records SET payload = REPLACE(payload, '\"pat-2\"', '\"pat-9\"') WHERE seq = 3",
    )
    report = chain.verify()
    assert report.broken is not None
    assert report.broken.seq == 3
    assert "edited" in report.broken.reason


def test_edited_index_column_is_found(chain: SqlAuditStore) -> None:
    _sql(chain, "UPDATE mgcds_audit_records SET patient_id = 'someone-else' WHERE seq = 2")
    report = chain.verify()
    assert report.broken is not None
    assert report.broken.seq == 2
    assert "patient_id" in report.broken.reason


def test_edit_with_recomputed_payload_hash_is_found(chain: SqlAuditStore) -> None:
    import hashlib

    with chain.engine.connect() as conn:
        payload = conn.execute(text("SELECT payload FROM mgcds_audit_records WHERE seq = 4")).scalar_one()
    forged = payload.replace('"latency_ms":41.25', '"latency_ms":1.0')
    assert forged != payload
    _sql(
        chain,
        "UPDATE mgcds_audit_records SET payload = :p, payload_sha256 = :h WHERE seq = 4",
        p=forged,
        h=hashlib.sha256(forged.encode()).hexdigest(),
    )
    report = chain.verify()
    assert report.broken is not None
    assert report.broken.seq == 4
    assert "entry hash" in report.broken.reason


def test_deleted_row_is_found(chain: SqlAuditStore) -> None:
    _sql(chain, "DELETE FROM mgcds_audit_records WHERE seq = 3")
    report = chain.verify()
    assert report.broken is not None
    assert report.broken.seq == 4
    assert "deleted" in report.broken.reason


def test_deleted_first_row_is_found(chain: SqlAuditStore) -> None:
    _sql(chain, "DELETE FROM mgcds_audit_records WHERE seq = 1")
    report = chain.verify()
    assert report.broken is not None
    assert report.broken.seq == 2


def test_swapped_rows_are_found(chain: SqlAuditStore) -> None:
    # Swap the sequence numbers of records 2 and 3 (through a free number: seq is the primary key).
    _sql(chain, "UPDATE mgcds_audit_records SET seq = 1000 WHERE seq = 2")
    _sql(chain, "UPDATE mgcds_audit_records SET seq = 2 WHERE seq = 3")
    _sql(chain, "UPDATE mgcds_audit_records SET seq = 3 WHERE seq = 1000")
    report = chain.verify()
    assert report.broken is not None
    assert report.broken.seq == 2
    assert "reordered" in report.broken.reason or "entry hash" in report.broken.reason


def test_truncated_tail_is_found(chain: SqlAuditStore) -> None:
    _sql(chain, "DELETE FROM mgcds_audit_records WHERE seq > 4")
    report = chain.verify()
    assert report.broken is not None
    assert "tail" in report.broken.reason
    assert report.broken.seq == 4


def test_everything_deleted_is_found(chain: SqlAuditStore) -> None:
    _sql(chain, "DELETE FROM mgcds_audit_records")
    report = chain.verify()
    assert report.broken is not None
    assert "tail" in report.broken.reason


def test_missing_head_row_is_found(chain: SqlAuditStore) -> None:
    _sql(chain, "DELETE FROM mgcds_audit_head")
    report = chain.verify()
    assert report.broken is not None
    assert "head row is missing" in report.broken.reason

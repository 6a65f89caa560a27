"""hookInstance as an indexed column (issue 18 item 3, schema 3), on both backends: written from the payload,
filled by ``mgcds audit init`` in a store made before it existed, checked by ``verify`` like the other columns."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
from pydantic import ValidationError
from sqlalchemy import inspect, text

from cds_service.audit.entries import make_entry
from cds_service.audit.memory import InMemoryAuditLog
from cds_service.audit.model import CallFilter, PendingEntry
from cds_service.audit.records import AuditEventType, CallRecord, call_to_payload
from cds_service.audit.schema import SCHEMA_VERSION, records_table
from cds_service.audit.store import SqlAuditStore
from cds_service.cdshooks import PatientViewRequest
from tests.unit.audit.helpers import make_call


@pytest.fixture
def store(store_url: str) -> Iterator[SqlAuditStore]:
    """An initialised store."""
    s = SqlAuditStore(store_url)
    s.init_schema()
    yield s
    s.dispose()


def _entry(record: CallRecord) -> PendingEntry:
    return make_entry(AuditEventType.SERVICE_CALL, call_to_payload(record))


def _instances(store: SqlAuditStore) -> dict[int, str | None]:
    with store.engine.connect() as conn:
        return {
            int(seq): value for seq, value in conn.execute(text("SELECT seq, hook_instance FROM mgcds_audit_records"))
        }


def test_the_column_holds_the_payloads_hook_instance_and_filters(store: SqlAuditStore) -> None:
    calls = [make_call(patient_id=f"p{i}", minutes=i) for i in range(3)]
    store.append([_entry(call) for call in calls])
    assert _instances(store) == {i + 1: call.hook_instance for i, call in enumerate(calls)}
    found, total = store.list_calls(CallFilter(hook_instance=calls[1].hook_instance))
    assert total == 1
    assert found[0].payload["patient_id"] == "p1"
    assert store.summary(CallFilter(hook_instance=calls[1].hook_instance)).calls == 1
    assert store.list_calls(CallFilter(hook_instance="absent")) == ([], 0)
    indexed = {tuple(index["column_names"]) for index in inspect(store.engine).get_indexes(records_table.name)}
    assert ("hook_instance",) in indexed


def test_verify_catches_an_edited_hook_instance_column(store: SqlAuditStore) -> None:
    store.append([_entry(make_call())])
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE mgcds_audit_records SET hook_instance = 'forged' WHERE seq = 1"))
    report = store.verify()
    assert report.broken is not None
    assert report.broken.reason == "column hook_instance differs from the hashed payload: it was edited"


def test_a_schema_2_store_is_brought_to_3_by_init(store: SqlAuditStore) -> None:
    old = make_call(patient_id="old")
    # Before schema 3 the API took any text of up to 200 characters: one the column cannot hold (NUL, which a
    # PostgreSQL text column refuses) stays in the payload only.
    odd = replace(make_call(patient_id="odd", minutes=1), hook_instance="hi\x00there")
    store.append([_entry(old), _entry(odd)])
    with store.engine.begin() as conn:  # as schema 2 left it: no column, no index
        conn.execute(text("DROP INDEX ix_mgcds_audit_records_hook_instance"))
        conn.execute(text("ALTER TABLE mgcds_audit_records DROP COLUMN hook_instance"))
        conn.execute(text("UPDATE mgcds_audit_meta SET value = '2' WHERE key = 'schema_version'"))
    with pytest.raises(Exception, match="run `mgcds audit init`"):
        store.check_ready()
    store.init_schema()
    store.check_ready()
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT value FROM mgcds_audit_meta")).scalar_one() == SCHEMA_VERSION == "3"
    assert _instances(store) == {1: old.hook_instance, 2: None}
    assert store.verify().ok
    found, _ = store.list_calls(CallFilter(hook_instance=old.hook_instance))
    assert [call.payload["patient_id"] for call in found] == ["old"]
    store.append([_entry(make_call(patient_id="new", minutes=2))])  # and writing goes on as before
    store.init_schema()  # again: nothing changes
    assert store.verify().ok


def test_the_api_refuses_a_hook_instance_the_column_could_not_hold() -> None:
    base = {"hook": "patient-view", "context": {"userId": "Practitioner/1", "patientId": "p1"}}
    PatientViewRequest.model_validate({**base, "hookInstance": "h" * 200})
    for bad in ("h" * 201, "a\x00b", "a\nb"):
        with pytest.raises(ValidationError):
            PatientViewRequest.model_validate({**base, "hookInstance": bad})


def test_the_in_memory_log_filters_by_hook_instance_too() -> None:
    log = InMemoryAuditLog()
    calls = [make_call(patient_id=f"p{i}", minutes=i) for i in range(2)]
    for call in calls:
        log.record_call(call)
    found, total = log.list_calls(CallFilter(hook_instance=calls[0].hook_instance))
    assert total == 1
    assert found[0].payload["hook_instance"] == calls[0].hook_instance
    assert log.summary(CallFilter(hook_instance=calls[1].hook_instance)).calls == 1
    log.close()

"""Issue 19 R3 and issue 16 item 8: feedback is linked to the call that issued its card whichever reached the store
first, only when it comes from the same issuer, tenant and service; the link is recomputed by ``verify``.
On both backends."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from cds_service.audit.entries import make_entry
from cds_service.audit.export import iter_csv, iter_fhir_ndjson
from cds_service.audit.model import CallFilter, PendingEntry
from cds_service.audit.records import AuditEventType, CallRecord, FeedbackRecord, call_to_payload, feedback_to_payload
from cds_service.audit.schema import SCHEMA_VERSION
from cds_service.audit.store import SqlAuditStore
from tests.unit.audit.helpers import make_call, make_feedback


@pytest.fixture
def store(store_url: str) -> Iterator[SqlAuditStore]:
    """An initialised store."""
    s = SqlAuditStore(store_url)
    s.init_schema()
    yield s
    s.dispose()


def _call(record: CallRecord) -> PendingEntry:
    return make_entry(AuditEventType.SERVICE_CALL, call_to_payload(record))


def _feedback(record: FeedbackRecord) -> PendingEntry:
    return make_entry(AuditEventType.FEEDBACK, feedback_to_payload(record))


def test_feedback_stored_before_its_call_is_linked_once_the_call_lands(store: SqlAuditStore) -> None:
    call = make_call()
    feedback = _feedback(make_feedback(call.cards[0].uuid, "overridden"))
    assert store.append([feedback]).stored == 1  # the other instance's spool drained first
    first = store.get(feedback.record_id)
    assert first is not None
    assert first.linked_record_id is None
    assert store.list_calls(CallFilter(outcome="overridden")) == ([], 0)
    call_entry = _call(call)
    assert store.append([call_entry]).stored == 1  # the call lands later
    linked = store.get(feedback.record_id)
    assert linked is not None
    assert linked.linked_record_id == call_entry.record_id
    assert linked.sealed_link is None  # the chain was not rewritten: the link comes from the index
    calls, total = store.list_calls(CallFilter(outcome="overridden"))
    assert (total, [c.record_id for c in calls]) == (1, [call_entry.record_id])
    assert store.list_calls(CallFilter(outcome="none")) == ([], 0)
    assert [r.record_id for r in store.feedback_for([call_entry.record_id])[call_entry.record_id]] == [
        feedback.record_id
    ]
    summary = store.summary(CallFilter())
    assert (summary.overridden, summary.unlinked_feedback) == (1, 0)
    events = [json.loads(line) for line in iter_fhir_ndjson(store.iter_records(), lambda _: "pat-1")]
    fb_event = next(e for e in events if e["id"] == feedback.record_id)
    details = {d["type"]: d["valueString"] for d in fb_event["entity"][-1]["detail"]}
    assert details["linkedRecordId"] == call_entry.record_id
    assert fb_event["entity"][0]["what"] == {"reference": "Patient/pat-1"}  # named though the call came later
    rows = list(iter_csv(store.iter_records()))
    assert call_entry.record_id in rows[1]  # the feedback's row names its call
    assert store.verify().ok


def test_feedback_stored_after_its_call_is_also_sealed_into_the_chain(store: SqlAuditStore) -> None:
    call = make_call()
    call_entry = _call(call)
    feedback = _feedback(make_feedback(call.cards[0].uuid))
    store.append([call_entry])
    store.append([feedback])
    stored = store.get(feedback.record_id)
    assert stored is not None
    assert (stored.linked_record_id, stored.sealed_link) == (call_entry.record_id, call_entry.record_id)


@pytest.mark.parametrize(
    "changes",
    [
        {"issuer": "https://other-ehr.example.org"},
        {"tenant": "hospital-b"},
        {"tenant": None},
        {"service_id": "mgcds-order-sign"},
    ],
    ids=["other-issuer", "other-tenant", "no-tenant", "other-service"],
)
def test_feedback_from_another_issuer_tenant_or_service_is_not_linked(
    store: SqlAuditStore, changes: dict[str, str | None]
) -> None:
    call = make_call()  # issued by https://ehr.example.org, tenant hospital-a, service mgcds-patient-view
    call_entry = _call(call)
    store.append([call_entry])
    foreign = _feedback(make_feedback(call.cards[0].uuid, "overridden", **changes))  # type: ignore[arg-type]
    store.append([foreign])
    stored = store.get(foreign.record_id)
    assert stored is not None
    assert (stored.linked_record_id, stored.sealed_link) == (None, None)
    assert store.feedback_for([call_entry.record_id]) == {call_entry.record_id: []}
    assert store.list_calls(CallFilter(outcome="overridden")) == ([], 0)
    assert store.summary(CallFilter()).unlinked_feedback == 1


def test_verify_finds_an_edited_card_index(store: SqlAuditStore) -> None:
    call = make_call()
    store.append([_call(call)])
    assert store.verify().ok
    with store.engine.begin() as conn:
        # Someone re-points a card at another EHR so that its feedback would link elsewhere.
        conn.execute(text("UPDATE mgcds_audit_cards SET origin_key = :k"), {"k": "0" * 64})
    report = store.verify()
    assert not report.ok
    assert report.broken is not None
    assert "card index differs from the hashed payload" in report.broken.reason


def test_verify_finds_an_index_row_no_record_gives(store: SqlAuditStore) -> None:
    call = make_call()
    store.append([_call(call)])
    with store.engine.begin() as conn:
        # A forged feedback index row would suppress a card without any feedback record.
        conn.execute(
            text(
                "INSERT INTO mgcds_audit_feedback (record_id, card_uuid, origin_key, outcome, answered_at) "
                "VALUES ('forged', :card, :key, 'overridden', '2026-03-01T09:31:00.000000Z')"
            ),
            {"card": call.cards[0].uuid, "key": "f" * 64},
        )
    report = store.verify()
    assert not report.ok
    assert report.broken is not None
    assert "index rows were added or removed" in report.broken.reason


def test_audit_init_brings_a_version_1_store_to_version_2(store: SqlAuditStore) -> None:
    call = make_call()
    call_entry = _call(call)
    feedback = _feedback(make_feedback(call.cards[0].uuid, "overridden"))
    store.append([call_entry, feedback])
    with store.engine.begin() as conn:  # make it look as issue 13 left it: schema 1, no new columns or table
        conn.execute(text("DROP TABLE mgcds_audit_feedback"))
        conn.execute(text("DROP TABLE mgcds_audit_cards"))
        conn.execute(
            text(
                "CREATE TABLE mgcds_audit_cards (record_id VARCHAR(64) NOT NULL, card_uuid VARCHAR(64) NOT NULL, "
                "recommendation VARCHAR(64) NOT NULL, PRIMARY KEY (record_id, card_uuid))"
            )
        )
        conn.execute(
            text("INSERT INTO mgcds_audit_cards VALUES (:r, :c, 'test-serum-mg')"),
            {"r": call_entry.record_id, "c": call.cards[0].uuid},
        )
        conn.execute(text("UPDATE mgcds_audit_meta SET value = '1' WHERE key = 'schema_version'"))
    with pytest.raises(Exception, match="run `mgcds audit init`"):
        store.check_ready()
    store.init_schema()
    store.check_ready()
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT value FROM mgcds_audit_meta")).scalar_one() == SCHEMA_VERSION
    linked = store.get(feedback.record_id)
    assert linked is not None
    assert linked.linked_record_id == call_entry.record_id
    assert store.verify().ok
    store.init_schema()  # and again: nothing changes
    assert store.verify().ok

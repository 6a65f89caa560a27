"""The store on both backends: every field kept, feedback linked, filters, summary, idempotence, tampering."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import text

from cds_service.audit.chain import GENESIS_HASH
from cds_service.audit.entries import make_entry
from cds_service.audit.model import CallFilter
from cds_service.audit.records import (
    AuditEventType,
    CallRecord,
    FeedbackRecord,
    call_from_payload,
    call_to_payload,
    feedback_from_payload,
    feedback_to_payload,
)
from cds_service.audit.store import SqlAuditStore
from cds_service.audit.writer import SpoolingAuditWriter
from cds_service.errors import AuditStoreError
from tests.unit.audit.helpers import BASE_TIME, OVERRIDE_DECLINED, make_call, make_card, make_feedback


@pytest.fixture
def store(store_url: str) -> Iterator[SqlAuditStore]:
    """An initialised store."""
    s = SqlAuditStore(store_url)
    s.init_schema()
    yield s
    s.dispose()


def _append_call(store: SqlAuditStore, record: CallRecord) -> str:
    entry = make_entry(AuditEventType.SERVICE_CALL, call_to_payload(record))
    assert store.append([entry]).stored == 1
    return entry.record_id


def _append_feedback(store: SqlAuditStore, record: FeedbackRecord) -> str:
    entry = make_entry(AuditEventType.FEEDBACK, feedback_to_payload(record))
    assert store.append([entry]).stored == 1
    return entry.record_id


def test_check_ready_fails_before_init_and_passes_after(store_url: str) -> None:
    s = SqlAuditStore(store_url)
    with pytest.raises(AuditStoreError, match="mgcds audit init"):
        s.check_ready()
    s.init_schema()
    s.init_schema()  # init is explicit and repeatable
    s.check_ready()
    s.dispose()


def test_every_call_field_is_stored_and_read_back(store: SqlAuditStore) -> None:
    record = make_call()
    record_id = _append_call(store, record)
    stored = store.get(record_id)
    assert stored is not None
    assert stored.seq == 1
    assert stored.prev_hash == GENESIS_HASH
    assert call_from_payload(stored.payload) == record
    # Spot-check the fields issue 7 names, independently of the round trip above.
    p = stored.payload
    assert (p["service_id"], p["hook"], p["tenant"], p["issuer"]) == (
        "mgcds-patient-view",
        "patient-view",
        "hospital-a",
        "https://ehr.example.org",
    )
    assert (p["patient_id"], p["encounter_id"], p["user_id"]) == ("pat-1", "enc-7", "Practitioner/doc-1")
    assert p["occurred_at"] == "2026-03-01T09:30:00.000000Z"
    assert [(s["key"], s["origin"]) for s in p["data_sources"]] == [
        ("patient", "prefetch"),
        ("observations", "fetched"),
        ("medications", "failed"),
    ]
    assert p["data_sources"][1]["resources"][0] == {
        "resource_type": "Observation",
        "resource_id": "obs-creat",
        "version_id": "1",
        "last_updated": "2026-02-20T08:00:00Z",
    }
    assert p["data_sources"][2]["error"] == "FHIR server unreachable"
    assert p["assessment"]["egfr"] == {"value": 52.0, "source": "computed"}
    assert p["cards"][0]["recommendation"] == "test-serum-mg"
    assert p["cards"][0]["card"]["extension"] == {"org.mgcds.recommendation": "test-serum-mg"}
    assert (p["rule_version"], p["http_status"], p["latency_ms"]) == ("2026.03", 200, 41.25)


def test_failed_call_is_recorded_without_payload(store: SqlAuditStore) -> None:
    record = make_call(cards=(), http_status=412, error="prefetch_unobtainable: Patient could not be read")
    stored = store.get(_append_call(store, record))
    assert stored is not None
    assert stored.payload["http_status"] == 412
    assert stored.payload["assessment"] is None
    assert stored.payload["cards"] == []
    assert stored.payload["error"].startswith("prefetch_unobtainable")


def test_feedback_is_linked_to_the_call_that_issued_the_card(store: SqlAuditStore) -> None:
    call = make_call()
    call_id = _append_call(store, call)
    feedback = make_feedback(call.cards[0].uuid, "overridden")
    stored = store.get(_append_feedback(store, feedback))
    assert stored is not None
    assert stored.linked_record_id == call_id
    assert feedback_from_payload(stored.payload) == feedback
    assert stored.payload["override_reason"] == OVERRIDE_DECLINED
    assert store.feedback_for([call_id])[call_id][0].record_id == stored.record_id


def test_feedback_for_an_unknown_card_is_marked_unknown(store: SqlAuditStore) -> None:
    stored = store.get(_append_feedback(store, make_feedback("no-such-card")))
    assert stored is not None
    assert stored.linked_record_id is None
    assert store.summary(CallFilter()).unlinked_feedback == 1


def test_feedback_in_the_same_batch_as_its_call_is_linked(store: SqlAuditStore) -> None:
    call = make_call()
    call_entry = make_entry(AuditEventType.SERVICE_CALL, call_to_payload(call))
    fb_entry = make_entry(AuditEventType.FEEDBACK, feedback_to_payload(make_feedback(call.cards[0].uuid)))
    assert store.append([call_entry, fb_entry]).stored == 2
    stored = store.get(fb_entry.record_id)
    assert stored is not None
    assert stored.linked_record_id == call_entry.record_id


def test_append_is_idempotent_by_record_id(store: SqlAuditStore) -> None:
    entry = make_entry(AuditEventType.SERVICE_CALL, call_to_payload(make_call()))
    assert store.append([entry]).stored == 1
    assert store.append([entry, entry]).stored == 0
    assert store.count() == 1
    assert store.verify().ok


@pytest.fixture
def populated(store: SqlAuditStore) -> dict[str, str]:
    """Four calls: two patients, two users, cards of three codes; feedback accepted/overridden on some."""
    c1 = make_call(patient_id="pat-1", user_id="Practitioner/a", minutes=0)
    c2 = make_call(
        patient_id="pat-2",
        user_id="Practitioner/b",
        minutes=60,
        cards=(make_card("supplement-organic", indicator="warning"), make_card("check-renal-function")),
    )
    c3 = make_call(patient_id="pat-1", user_id="Practitioner/b", minutes=24 * 60, cards=())
    c4 = make_call(patient_id="pat-3", user_id="Practitioner/a", minutes=48 * 60)
    ids = {name: _append_call(store, call) for name, call in (("c1", c1), ("c2", c2), ("c3", c3), ("c4", c4))}
    _append_feedback(store, make_feedback(c1.cards[0].uuid, "accepted"))
    _append_feedback(store, make_feedback(c2.cards[0].uuid, "overridden"))
    _append_feedback(store, make_feedback(c2.cards[1].uuid, "accepted"))
    return ids


def _ids(store: SqlAuditStore, **filters: object) -> list[str]:
    calls, total = store.list_calls(CallFilter(**filters))  # type: ignore[arg-type]
    assert total == len(calls)
    return [c.record_id for c in calls]


def test_filters(store: SqlAuditStore, populated: dict[str, str]) -> None:
    ids = populated
    assert _ids(store) == [ids["c4"], ids["c3"], ids["c2"], ids["c1"]]  # newest first
    assert _ids(store, patient_id="pat-1") == [ids["c3"], ids["c1"]]
    assert _ids(store, user_id="Practitioner/b") == [ids["c3"], ids["c2"]]
    assert _ids(store, since=BASE_TIME + timedelta(minutes=30)) == [ids["c4"], ids["c3"], ids["c2"]]
    assert _ids(store, until=BASE_TIME + timedelta(minutes=60)) == [ids["c2"], ids["c1"]]
    assert _ids(store, recommendation="supplement-organic") == [ids["c2"]]
    assert _ids(store, recommendation="test-serum-mg") == [ids["c4"], ids["c1"]]
    assert _ids(store, outcome="accepted") == [ids["c2"], ids["c1"]]
    assert _ids(store, outcome="overridden") == [ids["c2"]]
    assert _ids(store, outcome="none") == [ids["c4"], ids["c3"]]
    assert _ids(store, patient_id="pat-1", outcome="none") == [ids["c3"]]


def test_pagination(store: SqlAuditStore, populated: dict[str, str]) -> None:
    page, total = store.list_calls(CallFilter(), limit=3, offset=3)
    assert total == 4
    assert [c.record_id for c in page] == [populated["c1"]]


def test_summary_counts(store: SqlAuditStore, populated: dict[str, str]) -> None:
    # By hand from the fixture: cards c1 test-serum-mg, c2 supplement-organic + check-renal-function,
    # c3 none, c4 test-serum-mg -> 4 shown; accepted: c1's card and c2's renal card;
    # overridden: c2's supplement card.
    summary = store.summary(CallFilter())
    assert (summary.calls, summary.failed_calls, summary.cards_shown) == (4, 0, 4)
    assert (summary.accepted, summary.overridden, summary.unlinked_feedback) == (2, 1, 0)
    assert summary.override_reasons == {"patient-declined: Patient declined": 1}
    assert summary.per_recommendation == {
        "check-renal-function": {"shown": 1, "accepted": 1, "overridden": 0},
        "supplement-organic": {"shown": 1, "accepted": 0, "overridden": 1},
        "test-serum-mg": {"shown": 2, "accepted": 1, "overridden": 0},
    }
    only_pat1 = store.summary(CallFilter(patient_id="pat-1"))
    assert (only_pat1.calls, only_pat1.cards_shown, only_pat1.accepted) == (2, 1, 1)


def test_no_token_or_jwt_reaches_the_store(store: SqlAuditStore, store_url: str) -> None:
    # The records have no field a credential could travel in; scan everything stored to be sure.
    for cls in (CallRecord, FeedbackRecord):
        names = " ".join(cls.__dataclass_fields__)
        for word in ("token", "jwt", "authorization", "secret", "password"):
            assert word not in names.lower()
    call = make_call()
    _append_call(store, call)
    _append_feedback(store, make_feedback(call.cards[0].uuid, "overridden"))
    with store.engine.connect() as conn:
        tables = ("mgcds_audit_records", "mgcds_audit_cards", "mgcds_audit_head")
        queries = [text(f"SELECT * FROM {table}") for table in tables]  # noqa: S608 - fixed table names
        dump = json.dumps([[list(row) for row in conn.execute(query)] for query in queries])
    for needle in ("eyJ", "access_token", "Bearer", "fhirAuthorization"):
        assert needle not in dump


def test_a_writer_without_a_spool_writes_through_to_the_store(store: SqlAuditStore) -> None:
    log = SpoolingAuditWriter(store, None, asynchronous=False)
    record_id = log.record_call(make_call())
    assert store.get(record_id) is not None
    assert store.count() == 1
    assert store.verify().ok

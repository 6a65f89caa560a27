"""Suppression after feedback, the store side (clinical-rules.md 7.5): periods, keys, ordering, one indexed query,
fail open. On both backends.

Expected periods are the table of clinical-rules.md 7.5, written out by hand:

| feedback                                   | period                         |
|--------------------------------------------|--------------------------------|
| accepted                                   | 7 days                         |
| overridden, already-addressed              | 30 days                        |
| overridden, recent-result-elsewhere        | the magnesium window (90 days) |
| overridden, patient-declined               | 180 days                       |
| overridden, not-clinically-relevant        | 365 days                       |
| overridden, another or no reason           | 30 days                        |
| urgent-evaluation or a critical card       | never more than 24 hours       |
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from cds_service.audit.entries import make_entry
from cds_service.audit.records import (
    AuditEventType,
    CallRecord,
    FeedbackRecord,
    SuppressedRecord,
    call_from_payload,
    call_to_payload,
    feedback_to_payload,
)
from cds_service.audit.store import SqlAuditStore
from cds_service.audit.suppression import (
    InMemorySuppressionSource,
    SqlSuppressionSource,
    suppression_days,
    suppression_until,
)
from cds_service.config import Settings
from cds_service.engine.settings import ClinicalSettings
from cds_service.factory import build_suppression_source
from cds_service.interfaces import Suppression
from tests.unit.audit.helpers import BASE_TIME, make_call, make_card, make_feedback

ISSUER, TENANT = "https://ehr.example.org", "hospital-a"  # make_call's and make_feedback's EHR
SYSTEM = "https://mgcds.example.org/fhir/CodeSystem/override-reason"
DAY = timedelta(days=1)


def _reason(code: str) -> dict[str, str]:
    return {"system": SYSTEM, "code": code, "display": code}


@pytest.mark.parametrize(
    ("outcome", "reason", "days"),
    [
        ("accepted", None, 7),
        ("overridden", "already-addressed", 30),
        ("overridden", "recent-result-elsewhere", 90),
        ("overridden", "patient-declined", 180),
        ("overridden", "not-clinically-relevant", 365),
        ("overridden", "prefers-another-lab", 30),
        ("overridden", None, 30),
    ],
)
def test_periods_follow_the_table(outcome: str, reason: str | None, days: int) -> None:
    assert suppression_days(ClinicalSettings(), outcome, reason) == days


def test_recent_result_elsewhere_follows_the_magnesium_window_unless_set() -> None:
    assert suppression_days(ClinicalSettings(magnesium_window_days=60), "overridden", "recent-result-elsewhere") == 60
    chosen = ClinicalSettings(magnesium_window_days=60, suppression_recent_result_elsewhere_days=45)
    assert suppression_days(chosen, "overridden", "recent-result-elsewhere") == 45


@pytest.mark.parametrize(
    ("recommendation", "indicator", "outcome", "reason", "hours"),
    [
        ("test-serum-mg", "critical", "overridden", "patient-declined", 24),  # 180 days capped
        ("urgent-evaluation", "warning", "accepted", None, 24),  # 7 days capped
        ("urgent-evaluation", "critical", "overridden", "already-addressed", 24),
        ("test-serum-mg", "warning", "overridden", "patient-declined", 180 * 24),  # not critical: the full period
    ],
)
def test_critical_and_urgent_cards_are_never_suppressed_longer_than_24_hours(
    recommendation: str, indicator: str, outcome: str, reason: str | None, hours: int
) -> None:
    until = suppression_until(
        ClinicalSettings(),
        outcome=outcome,
        reason=reason,
        answered_at=BASE_TIME,
        recommendation=recommendation,
        indicator=indicator,
    )
    assert until == BASE_TIME + timedelta(hours=hours)


@pytest.fixture
def store(store_url: str) -> Iterator[SqlAuditStore]:
    """An initialised store."""
    s = SqlAuditStore(store_url)
    s.init_schema()
    yield s
    s.dispose()


def _append(store: SqlAuditStore, *records: CallRecord | FeedbackRecord) -> list[str]:
    entries = [
        make_entry(AuditEventType.SERVICE_CALL, call_to_payload(r))
        if isinstance(r, CallRecord)
        else make_entry(AuditEventType.FEEDBACK, feedback_to_payload(r))
        for r in records
    ]
    assert store.append(entries).stored == len(entries)
    return [e.record_id for e in entries]


def _answered_call() -> tuple[CallRecord, FeedbackRecord, FeedbackRecord]:
    call = make_call(cards=(make_card("test-serum-mg"), make_card("urgent-evaluation", indicator="critical")))
    declined = make_feedback(call.cards[0].uuid, "overridden", minutes=1, reason=_reason("patient-declined"))
    accepted = make_feedback(call.cards[1].uuid, "accepted", minutes=2)
    return call, declined, accepted


@pytest.mark.parametrize("feedback_first", [False, True], ids=["call-first", "feedback-first"])
def test_active_suppressions_for_the_patient_whatever_landed_first(store: SqlAuditStore, feedback_first: bool) -> None:
    call, declined, accepted = _answered_call()
    if feedback_first:
        declined_id, accepted_id, _ = _append(store, declined, accepted, call)
    else:
        _, declined_id, accepted_id = _append(store, call, declined, accepted)
    source = SqlSuppressionSource(store.engine, ClinicalSettings())
    two_hours = source.active(ISSUER, TENANT, "pat-1", BASE_TIME + timedelta(hours=2))
    assert [(s.code, s.feedback_record_id, s.outcome, s.reason) for s in two_hours] == [
        ("test-serum-mg", declined_id, "overridden", "patient-declined"),
        ("urgent-evaluation", accepted_id, "accepted", None),
    ]
    declined_s, urgent_s = two_hours
    assert declined_s.answered_at == BASE_TIME + timedelta(minutes=1)
    assert declined_s.until == BASE_TIME + timedelta(minutes=1) + 180 * DAY
    assert (urgent_s.until, urgent_s.answered_indicator) == (BASE_TIME + timedelta(minutes=2, hours=24), "critical")
    next_day = source.active(ISSUER, TENANT, "pat-1", BASE_TIME + timedelta(hours=25))
    assert [s.code for s in next_day] == ["test-serum-mg"]  # the urgent card's 24 hours are over
    assert source.active(ISSUER, TENANT, "pat-1", BASE_TIME + 181 * DAY) == []


def test_suppression_is_keyed_by_issuer_tenant_and_patient(store: SqlAuditStore) -> None:
    call, declined, _ = _answered_call()
    _append(store, call, declined)
    source = SqlSuppressionSource(store.engine, ClinicalSettings())
    later = BASE_TIME + DAY
    assert len(source.active(ISSUER, TENANT, "pat-1", later)) == 1
    assert source.active(ISSUER, TENANT, "pat-2", later) == []
    assert source.active("https://other-ehr.example.org", TENANT, "pat-1", later) == []
    assert source.active(ISSUER, "hospital-b", "pat-1", later) == []
    assert source.active(ISSUER, None, "pat-1", later) == []
    assert source.active(ISSUER, TENANT, "pat-1", BASE_TIME) == []  # answered after `now`: not yet


def test_feedback_from_another_ehr_does_not_suppress(store: SqlAuditStore) -> None:
    call = make_call()
    foreign = make_feedback(call.cards[0].uuid, "overridden", issuer="https://other-ehr.example.org")
    _append(store, call, foreign)
    source = SqlSuppressionSource(store.engine, ClinicalSettings())
    assert source.active(ISSUER, TENANT, "pat-1", BASE_TIME + DAY) == []
    assert source.active("https://other-ehr.example.org", TENANT, "pat-1", BASE_TIME + DAY) == []


def test_an_outcome_timestamp_in_the_future_does_not_lengthen_it(store: SqlAuditStore) -> None:
    call = make_call()
    late = replace(
        make_feedback(call.cards[0].uuid, "accepted", minutes=1),
        outcome_timestamp=(BASE_TIME + 100 * DAY).isoformat(),
    )
    _append(store, call, late)
    source = SqlSuppressionSource(store.engine, ClinicalSettings())
    [found] = source.active(ISSUER, TENANT, "pat-1", BASE_TIME + DAY)
    assert found.answered_at == BASE_TIME + timedelta(minutes=1)  # when we received it
    assert found.until == BASE_TIME + timedelta(minutes=1) + 7 * DAY


def test_one_query_per_call(store: SqlAuditStore) -> None:
    call, declined, accepted = _answered_call()
    _append(store, call, declined, accepted)
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(store.engine, "before_cursor_execute", count)
    try:
        assert (
            len(SqlSuppressionSource(store.engine, ClinicalSettings()).active(ISSUER, TENANT, "pat-1", BASE_TIME + DAY))
            == 2
        )
    finally:
        event.remove(store.engine, "before_cursor_execute", count)
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) == 1, statements


def test_the_query_uses_the_indexes(tmp_path: Path) -> None:
    store = SqlAuditStore(f"sqlite:///{tmp_path / 'audit.sqlite3'}")
    store.init_schema()
    try:
        source = SqlSuppressionSource(store.engine, ClinicalSettings())
        captured: list[tuple[str, Any]] = []
        event.listen(store.engine, "before_cursor_execute", lambda _c, _k, s, p, *_: captured.append((s, p)))
        source.active(ISSUER, TENANT, "pat-1", BASE_TIME)
        statement, parameters = captured[-1]
        with store.engine.connect() as conn:
            plan = " ".join(str(row[-1]) for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters))
        assert "ix_mgcds_audit_cards_subject" in plan, plan
        assert "ix_mgcds_audit_feedback_card" in plan, plan
    finally:
        store.dispose()


def test_a_store_that_cannot_answer_suppresses_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # Fail open: the card is shown again, the safe direction for a clinical prompt.
    missing = SqlSuppressionSource.open(f"sqlite:///{tmp_path / 'never-created.sqlite3'}", ClinicalSettings())
    assert missing.active(ISSUER, TENANT, "pat-1", BASE_TIME) == []
    assert "suppressions unavailable" in caplog.text
    missing.close()


def test_the_in_memory_source() -> None:
    source = InMemorySuppressionSource()
    held = Suppression(
        code="test-serum-mg",
        feedback_record_id="fb-1",
        outcome="overridden",
        reason="patient-declined",
        answered_at=BASE_TIME,
        until=BASE_TIME + 180 * DAY,
        answered_indicator="info",
    )
    source.add(ISSUER, TENANT, "pat-1", held)
    assert source.active(ISSUER, TENANT, "pat-1", BASE_TIME + DAY) == [held]
    assert source.active(ISSUER, TENANT, "pat-2", BASE_TIME + DAY) == []
    assert source.active(ISSUER, TENANT, "pat-1", BASE_TIME + 180 * DAY) == []  # ended
    assert source.active(ISSUER, TENANT, "pat-1", BASE_TIME - DAY) == []  # not yet answered


def test_the_factory_builds_a_source_over_the_configured_store(tmp_path: Path) -> None:
    settings = Settings(instance_path=tmp_path)
    store = SqlAuditStore(settings.resolved_audit_url)
    store.init_schema()
    call, declined, _ = _answered_call()
    _append(store, call, declined)
    store.dispose()
    source = build_suppression_source(settings)
    assert isinstance(source, SqlSuppressionSource)
    assert [s.code for s in source.active(ISSUER, TENANT, "pat-1", BASE_TIME + DAY)] == ["test-serum-mg"]
    source.close()
    assert isinstance(build_suppression_source(Settings(audit_url="sqlite://")), InMemorySuppressionSource)


def test_the_stored_call_lists_what_was_suppressed(store: SqlAuditStore) -> None:
    # The hook side fills the list; the store keeps it and gives it back as given.
    call = make_call()
    suppressed = (
        SuppressedRecord(
            code="supplement-organic",
            feedback_record_id="fb-1",
            outcome="overridden",
            reason="patient-declined",
            until=BASE_TIME + 180 * DAY,
        ),
    )
    [record_id] = _append(store, replace(call, suppressed=suppressed))
    stored = store.get(record_id)
    assert stored is not None
    assert stored.payload["suppressed"] == [
        {
            "code": "supplement-organic",
            "feedback_record_id": "fb-1",
            "outcome": "overridden",
            "reason": "patient-declined",
            "until": "2026-08-28T09:30:00.000000Z",  # 2026-03-01 09:30 + 180 days, by hand: Mar 30, ... Aug 28
        }
    ]
    assert call_from_payload(stored.payload).suppressed == suppressed

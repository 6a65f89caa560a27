"""The recorder: a record for every call, written however the call ends, with the status the client got."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest

from cds_service.audit.memory import InMemoryAuditLog
from cds_service.audit.recorder import AuditRecorder
from cds_service.cdshooks import FeedbackItem
from cds_service.errors import AuditNotDurable
from cds_service.interfaces import Suppression
from cds_service.security.identity import CallerIdentity
from tests.unit.audit.helpers import BASE_TIME

CALLER = CallerIdentity(
    issuer="https://ehr.example.org", subject="Practitioner/doc-1", tenant="t1", jti="j", key_id="k"
)


@dataclass
class Outcome:
    """The shape of hooks.HookOutcome the recorder reads."""

    cards: list[dict[str, Any]]
    assessment: dict[str, Any] | None = None
    data: Any = None
    notes: list[str] = field(default_factory=list)


CARD = {
    "uuid": "card-1",
    "summary": "Check serum magnesium",
    "indicator": "info",
    "source": {"label": "MgCDS"},
    "extension": {"org.mgcds.recommendation": "test-serum-mg"},
    "suggestions": [{"label": "Order serum magnesium", "uuid": "sugg-1"}],
}


@pytest.fixture
def log() -> InMemoryAuditLog:
    """An in-memory audit log."""
    return InMemoryAuditLog()


def recorder(log: InMemoryAuditLog) -> AuditRecorder:
    """A recorder with a fixed clock and a timer that advances 25 ms per reading."""
    ticks = iter(range(1000))
    return AuditRecorder(log, clock=lambda: BASE_TIME, timer=lambda: next(ticks) * 0.025)


def test_an_answered_call_keeps_its_cards_and_latency(log: InMemoryAuditLog) -> None:
    with recorder(log).hook_call("mg-patient-view") as call:
        call.caller = CALLER
        call.outcome = Outcome(cards=[CARD], assessment={"deficiency": "possible"})
        call.answered(200)
    [record] = log.calls
    assert (record.http_status, record.error, record.issuer, record.tenant) == (200, None, CALLER.issuer, "t1")
    assert record.latency_ms == 25.0  # one timer tick between start and end
    assert [(c.uuid, c.recommendation, c.suggestion_uuids) for c in record.cards] == [
        ("card-1", "test-serum-mg", ("sugg-1",))
    ]
    assert record.assessment == {"deficiency": "possible"}


def test_the_suppressions_the_hook_applied_are_listed_when_it_answered(log: InMemoryAuditLog) -> None:
    applied = Suppression(
        code="supplement-organic",
        feedback_record_id="fb-1",
        outcome="overridden",
        reason="patient-declined",
        answered_at=BASE_TIME,
        until=BASE_TIME + timedelta(days=180),
        answered_indicator="warning",
    )
    with recorder(log).hook_call("mg-patient-view") as call:
        call.outcome = Outcome(cards=[CARD])
        call.suppressed = [applied]
        call.answered(200)
    with recorder(log).hook_call("mg-patient-view") as refused:
        refused.suppressed = [applied]
        refused.refused(412, "prefetch_unobtainable: no Patient")
    answered, failed = log.calls
    assert [(s.code, s.feedback_record_id, s.outcome, s.reason, s.until) for s in answered.suppressed] == [
        ("supplement-organic", "fb-1", "overridden", "patient-declined", BASE_TIME + timedelta(days=180))
    ]
    assert failed.suppressed == ()  # a refused call showed nothing, so it suppressed nothing either


def test_feedback_records_carry_the_callers_tenant_and_none_named_when_accepted_bare(log: InMemoryAuditLog) -> None:
    rec = recorder(log)
    bare = FeedbackItem.model_validate(
        {"card": "card-1", "outcome": "accepted", "outcomeTimestamp": "2026-03-01T10:00Z"}
    )
    with rec.feedback_call("mg-patient-view") as call:
        call.caller = CALLER
        assert len(rec.record_feedback_items(call, [bare, bare])) == 2
        call.answered(200)
    assert [(f.tenant, f.accepted_suggestions) for f in log.feedback] == [("t1", ()), ("t1", ())]


def test_a_refused_call_keeps_no_payload_even_if_an_outcome_was_set(log: InMemoryAuditLog) -> None:
    with recorder(log).hook_call("mg-patient-view") as call:
        call.outcome = Outcome(cards=[CARD], assessment={"deficiency": "possible"})
        call.refused(412, "prefetch_unobtainable: no Patient")
    [record] = log.calls
    assert (record.http_status, record.error, record.cards, record.assessment) == (
        412,
        "prefetch_unobtainable: no Patient",
        (),
        None,
    )


def test_a_call_whose_answer_never_came_is_recorded_as_500(log: InMemoryAuditLog) -> None:
    with recorder(log).hook_call("mg-patient-view"):
        pass  # the HTTP layer never said what it answered
    assert log.calls[0].http_status == 500


def _answer_then_fail(rec: AuditRecorder) -> None:
    with rec.hook_call("mg-patient-view") as call:
        call.answered(200)
        raise KeyError("bug")


def test_an_exception_out_of_the_block_is_recorded_as_500_and_still_raised(log: InMemoryAuditLog) -> None:
    with pytest.raises(KeyError):
        _answer_then_fail(recorder(log))
    [record] = log.calls
    assert (record.http_status, record.error) == (500, "internal_error: KeyError")


def test_feedback_calls_are_recorded_only_when_not_answered_200(log: InMemoryAuditLog) -> None:
    rec = recorder(log)
    item = FeedbackItem.model_validate(
        {
            "card": "card-1",
            "outcome": "accepted",
            "acceptedSuggestions": [{"id": "sugg-1"}],
            "outcomeTimestamp": "2026-03-01T10:00:00Z",
        }
    )
    with rec.feedback_call("mg-patient-view") as call:
        call.caller = CALLER
        rec.record_feedback(call, item)
        call.answered(200)
    with rec.feedback_call("mg-patient-view") as call:
        call.refused(415, "unsupported_media_type: the body must be JSON")
    assert [f.card_uuid for f in log.feedback] == ["card-1"]
    assert log.feedback[0].sender == "Practitioner/doc-1"
    [refused] = log.feedback_calls
    assert (refused.http_status, refused.error, refused.items_recorded, refused.issuer) == (
        415,
        "unsupported_media_type: the body must be JSON",
        0,
        None,
    )


class RaisingWriter(InMemoryAuditLog):
    """A writer with a bug."""

    def record_call(self, record: Any) -> str:
        raise OSError("disk refused")


def _answered_but_unrecorded(rec: AuditRecorder) -> None:
    with rec.hook_call("mg-patient-view") as call:
        call.answered(200)


def test_a_writer_failure_leaves_the_block_as_not_durable(caplog: pytest.LogCaptureFixture) -> None:
    # Fail closed (issue 19): the call must not be answered as if it had been recorded; the handler answers 503.
    with pytest.raises(AuditNotDurable):
        _answered_but_unrecorded(recorder(RaisingWriter()))
    assert "could not be written: answered 503" in caplog.text

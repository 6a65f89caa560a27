"""Every call is audited, whatever it was answered (issue 13, defect 2): a hook that fails on our bug (500), calls
refused before any hook ran (401, 404, 413, 415), refused feedback calls; each record carries the status actually
sent and none of the payload. And recording never turns an answer into a 500.

Before the recorder, only ClientError and PrerequisiteFailed were recorded, and feedback only when accepted.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from cds_service import create_app
from cds_service.audit.memory import InMemoryAuditLog
from cds_service.audit.records import CallRecord, FeedbackCallRecord, FeedbackRecord
from cds_service.config import Settings
from terminology import CodeRef, LabMatch, default_terminology
from tests.functional.conftest import EXAMPLE_NOW, load_example
from tests.support.audit import runtime_of, stored_records
from tests.support.secured_app import SecuredApp, es384_signing_key, secured_app

PV = "/cds-services/mg-patient-view"


class ExplodingTerminology:
    """The packaged value sets, except that classifying an Observation is a bug: it raises."""

    def __init__(self) -> None:
        self._real = default_terminology()

    def classify_observation(self, codings: Sequence[CodeRef], text: str | None = None) -> LabMatch | None:
        raise RuntimeError("a bug of ours inside the hook (holding Ada Lovelace's value 0.41)")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


@pytest.fixture
def exploding_app(tmp_path: Path) -> Iterator[Flask]:
    """An app whose patient-view hook raises an unexpected exception."""
    app = create_app(
        Settings(dev=True, instance_path=tmp_path / "instance"),
        terminology=ExplodingTerminology(),  # type: ignore[arg-type] - duck-typed on purpose
        clock=lambda: EXAMPLE_NOW,
    )
    yield app
    runtime_of(app).close()


def test_a_hook_that_raises_is_answered_500_and_recorded_as_500(exploding_app: Flask) -> None:
    request = load_example("patient-view-request.json")
    response = exploding_app.test_client().post(PV, json=request)
    assert response.status_code == 500
    assert response.get_json()["error"] == "internal_error"
    [record] = stored_records(exploding_app)
    payload = record.payload
    assert record.event_type == "service-call"
    assert payload["http_status"] == 500
    assert payload["error"].startswith("internal_error: ")
    assert payload["error"].endswith("(RuntimeError)")
    assert payload["hook_instance"] == request["hookInstance"]  # the request had been parsed: who and what
    assert payload["patient_id"] == "example-mg-1"
    assert (payload["cards"], payload["assessment"], payload["data_sources"]) == ([], None, [])
    assert "Ada" not in json.dumps(payload)
    assert "0.41" not in json.dumps(payload)


@pytest.mark.parametrize(
    ("path", "kwargs", "status"),
    [
        ("/cds-services/no-such-service", {"json": {}}, 404),
        (PV, {"data": b"{}", "content_type": "text/plain"}, 415),
        (PV, {"data": b"{" + b" " * 6000 + b"}", "content_type": "application/json"}, 413),
        (PV, {"data": b"[1]", "content_type": "application/json"}, 400),
    ],
    ids=["404-unknown-service", "415-not-json", "413-too-large", "400-not-an-object"],
)
def test_a_refused_hook_call_is_recorded_with_its_status(
    tmp_path: Path, path: str, kwargs: dict[str, Any], status: int
) -> None:
    app = create_app(Settings(dev=True, instance_path=tmp_path / "instance", max_body_bytes=4096))
    try:
        response = app.test_client().post(path, **kwargs)
        assert response.status_code == status
        [record] = stored_records(app)
        assert record.payload["http_status"] == status
        assert record.payload["error"].startswith(response.get_json()["error"] + ": ")
        assert record.payload["cards"] == []
    finally:
        runtime_of(app).close()


@pytest.mark.parametrize(
    ("path", "kwargs", "status"),
    [
        (PV + "/feedback", {"data": b"{", "content_type": "application/json"}, 400),
        (PV + "/feedback", {"json": {"feedback": [{"card": "c1", "outcome": "maybe"}]}}, 400),
        (PV + "/feedback", {"data": b"x", "content_type": "text/plain"}, 415),
        ("/cds-services/no-such-service/feedback", {"json": {"feedback": []}}, 404),
    ],
    ids=["400-bad-json", "400-bad-outcome", "415-not-json", "404-unknown-service"],
)
def test_a_refused_feedback_call_is_recorded(
    app: Flask, client: FlaskClient, path: str, kwargs: dict[str, Any], status: int
) -> None:
    response = client.post(path, **kwargs)
    assert response.status_code == status
    [record] = stored_records(app)
    assert record.event_type == "feedback-call"
    assert record.payload["http_status"] == status
    assert record.payload["error"].startswith(response.get_json()["error"] + ": ")
    assert record.payload["items_recorded"] == 0
    assert record.linked_record_id is None
    assert runtime_of(app).audit_reader.verify().ok


def test_accepted_feedback_is_recorded_as_its_items_only(app: Flask, client: FlaskClient) -> None:
    cards = client.post(PV, json=load_example("patient-view-request.json")).get_json()["cards"]
    item = {"card": cards[0]["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-11-21T12:05:00Z"}
    assert client.post(PV + "/feedback", json={"feedback": [item]}).status_code == 200
    assert [r.event_type for r in stored_records(app)] == ["service-call", "feedback"]


def test_unauthenticated_calls_are_recorded_as_401(tmp_path: Path) -> None:
    with secured_app(tmp_path, [es384_signing_key()]) as secured:
        assert secured.post(PV, load_example("patient-view-request.json")).status_code == 401
        assert secured.post(PV + "/feedback", {"feedback": []}, "not.a.jwt").status_code == 401
        call, feedback_call = stored_records(secured.app)
    assert (call.event_type, call.payload["http_status"], call.payload["issuer"]) == ("service-call", 401, None)
    assert call.payload["error"].startswith("unauthorized: ")
    assert call.payload["hook_instance"] is None, "the body of a refused caller is never read"
    assert (feedback_call.event_type, feedback_call.payload["http_status"]) == ("feedback-call", 401)


def test_an_authenticated_refusal_names_the_issuer(tmp_path: Path) -> None:
    with secured_app(tmp_path, [es384_signing_key()]) as secured:
        app: SecuredApp = secured
        path = PV + "/feedback"
        assert app.post(path, b"{", app.token(path)).status_code == 400
        [record] = stored_records(app.app)
    assert record.payload["issuer"] == "https://ehr.example.org"
    assert record.payload["http_status"] == 400


class BrokenWriter(InMemoryAuditLog):
    """An audit writer with a bug: every record raises."""

    def record_call(self, record: CallRecord) -> str:
        raise RuntimeError("writer bug")

    def record_feedback_items(self, records: Sequence[FeedbackRecord]) -> list[str]:
        raise RuntimeError("writer bug")

    def record_feedback_call(self, record: FeedbackCallRecord) -> str:
        raise RuntimeError("writer bug")


def test_a_failing_audit_writer_turns_every_answer_into_a_503_never_a_200_or_a_500(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Issue 19: an answer whose record cannot be written is not given (fail closed); never a 500 either.
    broken = BrokenWriter()
    app = create_app(
        Settings(dev=True, instance_path=tmp_path / "instance"),
        audit_writer=broken,
        audit_reader=broken,
        clock=lambda: EXAMPLE_NOW,
    )
    client = app.test_client()
    with caplog.at_level(logging.CRITICAL, logger="mgcds.audit"):
        refused = client.post(PV, json=load_example("patient-view-request.json"))
        item = {
            "card": "4e0a3a1e-3283-4575-ab82-028d55fe2719",
            "outcome": "overridden",
            "outcomeTimestamp": "2026-11-21T12:05:00Z",
        }
        feedback = client.post(PV + "/feedback", json={"feedback": [item]})
        malformed = client.post(PV + "/feedback", data=b"{", content_type="application/json")
    for response in (refused, feedback, malformed):
        assert response.status_code == 503
        assert response.get_json()["error"] == "audit_unavailable"
        assert response.headers["Retry-After"] == "30"
    assert "cards" not in refused.get_json()
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.CRITICAL and r.name == "mgcds.audit"]
    assert "audit record of a hook call could not be written: answered 503" in messages
    assert "audit record of a feedback call could not be written: answered 503" in messages
    runtime_of(app).close()

"""Every call and every feedback item through the HTTP API lands in the audit log, with the fields issue 7 lists."""

from __future__ import annotations

import errno
import json
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from cds_service import create_app
from cds_service.audit import spool as spool_module
from cds_service.audit.model import AppendOutcome, PendingEntry
from cds_service.audit.spool import Spool
from cds_service.audit.sqlwrite import SqlAuditAppender
from cds_service.audit.store import init_audit_store
from cds_service.audit.suppression import SqlSuppressionSource
from cds_service.audit.writer import SpoolingAuditWriter
from cds_service.cli import main
from cds_service.config import Settings
from cds_service.errors import AuditStoreError
from cds_service.factory import build_suppression_source
from tests.functional.conftest import EXAMPLE_NOW, load_example
from tests.support.audit import runtime_of, stored_records
from tests.support.fhir_peer import FhirPeer
from tests.support.secured_app import es384_signing_key, secured_app

DAY = timedelta(days=1)

PV = "/cds-services/mg-patient-view"


def records(app: Flask) -> list[Any]:
    return stored_records(app)


def test_a_call_is_recorded_with_its_sources_assessment_and_cards(app: Flask, client: FlaskClient) -> None:
    request = load_example("patient-view-request.json")
    cards = client.post(PV, json=request).get_json()["cards"]
    [record] = records(app)
    payload = record.payload
    assert record.event_type == "service-call"
    assert payload["service_id"] == "mg-patient-view"
    assert payload["hook_instance"] == request["hookInstance"]
    assert payload["patient_id"] == "example-mg-1"
    assert payload["user_id"] == "Practitioner/example"
    assert payload["encounter_id"] == "enc-1"
    assert payload["http_status"] == 200
    assert payload["latency_ms"] > 0
    # clinical-rules.md version 2: "rules version string 2026.12"; every audit record names it, as the assessment does.
    assert payload["rule_version"] == "2026.12"
    assert payload["assessment"]["rules_version"] == "2026.12"
    sources = {s["key"]: s for s in payload["data_sources"]}
    assert sources["observations"]["origin"] == "prefetch"
    assert {r["resource_id"] for r in sources["observations"]["resources"]} == {"egfr-1", "drinks-1"}
    assert payload["assessment"]["mds"]["min"] == 4
    assert [c["uuid"] for c in payload["cards"]] == [c["uuid"] for c in cards]
    assert payload["cards"][0]["card"] == cards[0], "the card exactly as the clinician saw it"


def test_fetched_data_and_failures_are_named(app: Flask, client: FlaskClient, fhir_peer: FhirPeer) -> None:
    request = load_example("patient-view-request.json")
    del request["prefetch"]["conditions"]
    request["fhirServer"] = fhir_peer.base_url
    request["fhirAuthorization"] = {
        "access_token": "secret-token-value",
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "patient/*.read",
        "subject": "mgcds",
    }
    fhir_peer.overrides["/Condition"] = lambda path, query: (500, {"resourceType": "OperationOutcome"})
    assert client.post(PV, json=request).status_code == 200
    [record] = records(app)
    sources = {s["key"]: s for s in record.payload["data_sources"]}
    assert sources["conditions"]["origin"] == "failed"
    assert "server-error" in sources["conditions"]["error"]
    assert "secret-token-value" not in json.dumps(record.payload), "tokens never reach the audit log"


def test_failed_calls_are_recorded_without_the_payload(app: Flask, client: FlaskClient) -> None:
    request = load_example("patient-view-request.json")
    del request["prefetch"]
    assert client.post(PV, json=request).status_code == 412
    assert client.post(PV, data=b"{", content_type="application/json").status_code == 400
    first, second = records(app)
    assert first.payload["http_status"] == 412
    assert first.payload["error"].startswith("prefetch_unobtainable")
    assert first.payload["patient_id"] == "example-mg-1"
    assert second.payload["http_status"] == 400
    assert second.payload["hook_instance"] is None
    assert "Ada" not in json.dumps(first.payload)


def test_feedback_is_linked_to_the_call_that_issued_the_card(app: Flask, client: FlaskClient) -> None:
    cards = client.post(PV, json=load_example("patient-view-request.json")).get_json()["cards"]
    card = cards[0]
    feedback = {
        "card": card["uuid"],
        "outcome": "overridden",
        "overrideReason": {
            "reason": {
                "system": "https://mgcds.example.org",
                "code": "patient-declined",
                "display": "Patient declined",
            },
            "userComment": "will test next visit",
        },
        "outcomeTimestamp": "2026-11-21T12:05:00Z",
    }
    unknown = {
        "card": "00000000-0000-0000-0000-000000000000",
        "outcome": "accepted",
        "acceptedSuggestions": [{"id": "x"}],
        "outcomeTimestamp": "2026-11-21T12:06:00Z",
    }
    assert client.post(PV + "/feedback", json={"feedback": [feedback, unknown]}).status_code == 200
    call, linked, unlinked = records(app)
    assert linked.event_type == "feedback"
    assert linked.linked_record_id == call.record_id
    assert linked.payload["outcome"] == "overridden"
    assert linked.payload["override_reason"]["code"] == "patient-declined"
    assert linked.payload["user_comment"] == "will test next visit"
    assert unlinked.linked_record_id is None
    assert runtime_of(app).audit_reader.verify().ok


# --- issue 19 R3 and issue 16 item 8: links whatever the order, and only from the EHR and service that got the card


class GatedStore:
    """The store as one instance reaches it: down (its connection refused) until opened."""

    def __init__(self, url: str) -> None:
        self.inner = SqlAuditAppender.open(url)
        self.open = False

    def append(self, entries: Sequence[PendingEntry]) -> AppendOutcome:
        if not self.open:
            raise AuditStoreError("connection refused (this instance's route to the database is down)")
        return self.inner.append(entries)

    def check_ready(self, time_limit_seconds: float | None = None) -> None:
        self.inner.check_ready(time_limit_seconds)

    def dispose(self) -> None:
        self.inner.dispose()


def _overridden(card_uuid: str) -> dict[str, Any]:
    return {
        "card": card_uuid,
        "outcome": "overridden",
        "overrideReason": {"reason": {"code": "patient-declined", "display": "Patient declined"}},
        "outcomeTimestamp": "2026-11-21T12:05:00Z",
    }


def test_two_instances_feedback_reaching_the_store_before_its_call_is_linked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shared = Settings(
        dev=True, instance_path=tmp_path / "a", public_base_url="http://localhost", reviewer_token="r" * 24
    )
    url = shared.resolved_audit_url  # both instances write one store (as with PostgreSQL)
    init_audit_store(url)
    gate = GatedStore(url)
    writer_a = SpoolingAuditWriter(gate, Spool(tmp_path / "a" / "spool.jsonl"), asynchronous=True)
    app_a = create_app(shared, audit_writer=writer_a, clock=lambda: EXAMPLE_NOW)
    settings_b = shared.with_overrides(instance_path=tmp_path / "b", audit_url=url)
    app_b = create_app(settings_b, clock=lambda: EXAMPLE_NOW + timedelta(minutes=5))
    try:
        cards = app_a.test_client().post(PV, json=load_example("patient-view-request.json")).get_json()["cards"]
        card = cards[0]
        assert app_b.test_client().post(PV + "/feedback", json=_overridden(card["uuid"])).status_code == 200
        assert runtime_of(app_b).audit_writer.flush(10)
        reader = runtime_of(app_b).audit_reader
        [feedback] = list(reader.iter_records())  # the feedback is stored; its call still waits in A's spool
        assert feedback.linked_record_id is None
        gate.open = True  # A's route to the database is back
        assert writer_a.flush(10)
        call = next(r for r in reader.iter_records() if r.event_type == "service-call")
        linked = reader.get(feedback.record_id)
        assert linked is not None
        assert linked.linked_record_id == call.record_id
        assert reader.verify().ok
        # `mgcds audit list --outcome overridden` finds the call with its feedback ...
        capsys.readouterr()
        assert main(["audit", "list", "--outcome", "overridden", "--json"], settings=settings_b) == 0
        listing = json.loads(capsys.readouterr().out)
        assert [c["record_id"] for c in listing["calls"]] == [call.record_id]
        assert [f["outcome"] for f in listing["calls"][0]["feedback"]] == ["overridden"]
        # ... the review page shows it on the call ...
        page = app_b.test_client().get(
            f"/audit/calls/{call.record_id}", headers={"Authorization": "Bearer " + "r" * 24}
        )
        assert page.status_code == 200
        assert b"patient-declined" in page.data
        # ... the AuditEvent export links it and names the patient ...
        assert main(["audit", "export", "--format", "fhir"], settings=settings_b) == 0
        events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        event = next(e for e in events if e["id"] == feedback.record_id)
        details = {d["type"]: d["valueString"] for d in event["entity"][-1]["detail"]}
        assert details["linkedRecordId"] == call.record_id
        assert event["entity"][0]["what"] == {"reference": "Patient/example-mg-1"}
        # ... and it suppresses the card's recommendation for that patient, on any instance.
        source = build_suppression_source(settings_b)
        assert isinstance(source, SqlSuppressionSource)
        suppressions = source.active(None, None, "example-mg-1", EXAMPLE_NOW + DAY)
        source.close()
        assert [s.code for s in suppressions] == [card["extension"]["org.mgcds.recommendation"]]
    finally:
        runtime_of(app_a).close()
        runtime_of(app_b).close()


def test_feedback_sent_to_another_service_is_not_linked(app: Flask, client: FlaskClient) -> None:
    cards = client.post(PV, json=load_example("patient-view-request.json")).get_json()["cards"]
    other = "/cds-services/mg-order-sign/feedback"
    assert client.post(other, json=_overridden(cards[0]["uuid"])).status_code == 200
    call, feedback = records(app)
    assert feedback.linked_record_id is None
    assert runtime_of(app).audit_reader.feedback_for([call.record_id]) == {call.record_id: []}


def test_feedback_is_linked_only_from_the_issuer_and_tenant_that_got_the_card(tmp_path: Path) -> None:
    with secured_app(tmp_path, [es384_signing_key()], clock=lambda: EXAMPLE_NOW) as secured:
        request = load_example("patient-view-request.json")
        answered = secured.post(PV, request, secured.token(PV, tenant="hospital-a"))
        card = answered.get_json()["cards"][0]["uuid"]
        path = PV + "/feedback"
        assert secured.post(path, _overridden(card), secured.token(path, tenant="hospital-b")).status_code == 200
        assert secured.post(path, _overridden(card), secured.token(path)).status_code == 200  # no tenant
        assert secured.post(path, _overridden(card), secured.token(path, tenant="hospital-a")).status_code == 200
        call, other_tenant, no_tenant, same = stored_records(secured.app)
    assert (other_tenant.payload["tenant"], other_tenant.linked_record_id) == ("hospital-b", None)
    assert (no_tenant.payload["tenant"], no_tenant.linked_record_id) == (None, None)
    assert (same.payload["tenant"], same.linked_record_id) == ("hospital-a", call.record_id)


# --- issue 19 R1/R2: a call is answered only once its record is durable


def test_an_unwritable_spool_answers_503_and_readyz_names_it(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    request = load_example("patient-view-request.json")
    assert client.post(PV, json=request).status_code == 200
    assert client.get("/readyz").status_code == 200

    def full(fd: int, data: bytes | memoryview) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(spool_module.os, "write", full)
    refused = client.post(PV, json=request)
    assert refused.status_code == 503
    body = refused.get_json()
    assert (body["error"], body["status"]) == ("audit_unavailable", 503)
    assert "nothing was recorded" in body["message"]
    assert refused.headers["Retry-After"] == "30"
    feedback = client.post(PV + "/feedback", json=_overridden("4e0a3a1e-3283-4575-ab82-028d55fe2719"))
    assert feedback.status_code == 503  # nothing of it recorded: the EHR may send it again
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.get_json()["not_ready"] == ["spool"]
    assert "No space left on device" in ready.get_json()["checks"]["spool"]["detail"]
    monkeypatch.undo()
    assert client.get("/readyz").status_code == 200  # room again: ready, and calls are recorded again
    assert client.post(PV, json=request).status_code == 200
    stored = records(app)
    assert [r.event_type for r in stored] == ["service-call", "service-call"]  # exactly the two answered 200
    assert all(r.payload["http_status"] == 200 for r in stored)

"""Every call and every feedback item through the HTTP API lands in the audit log, with the fields issue 7 lists."""

from __future__ import annotations

import json
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from tests.functional.conftest import load_example
from tests.support.audit import runtime_of, stored_records
from tests.support.fhir_peer import FhirPeer

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

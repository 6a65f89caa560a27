"""The CDS Hooks wire contract: discovery, invocation, validation errors, prefetch semantics, feedback, CORS, health."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.functional.conftest import assert_no_null_or_empty, load_example, strip_ids
from tests.support.audit import stored_records
from tests.support.fhir_peer import FhirPeer

PV = "/cds-services/mg-patient-view"
PREFETCH_KEYS = {
    "patient",
    "observations",
    "medicationStatements",
    "medicationRequests",
    "conditions",
    "serviceRequests",
}


def post(client: FlaskClient, path: str, body: Any, **kwargs: Any) -> Any:
    return client.post(path, data=json.dumps(body), content_type="application/json", **kwargs)


def without_prefetch(request: dict[str, Any], peer: FhirPeer, token: str) -> dict[str, Any]:
    """The same request, but the EHR sends no prefetch: the service must read the FHIR server."""
    for key, value in request["prefetch"].items():
        if key == "patient":
            peer.add(value)
        else:
            peer.add(*(entry["resource"] for entry in value.get("entry", [])))
    stripped = {k: v for k, v in request.items() if k != "prefetch"}
    stripped["fhirServer"] = peer.base_url
    stripped["fhirAuthorization"] = {
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "patient/*.read",
        "subject": "mgcds",
    }
    return stripped


# --- discovery ---------------------------------------------------------------------------------------------------


def test_discovery_lists_the_three_services_with_exact_prefetch_keys(client: FlaskClient) -> None:
    response = client.get("/cds-services")
    assert response.status_code == 200
    services = {s["id"]: s for s in response.get_json()["services"]}
    assert {k: v["hook"] for k, v in services.items()} == {
        "mg-patient-view": "patient-view",
        "mg-order-select": "order-select",
        "mg-order-sign": "order-sign",
    }
    for service in services.values():
        assert service["title"]
        assert service["description"]
        assert set(service["prefetch"]) == PREFETCH_KEYS
        assert service["prefetch"]["patient"] == "Patient/{{context.patientId}}"
        for template in service["prefetch"].values():
            # Only CDS Hooks 2.0 tokens: {{context.<root field>}} (no FHIRPath, no nested paths).
            tokens = re.findall(r"\{\{([^}]*)\}\}", template)
            assert tokens == ["context.patientId"], template


def test_observation_template_asks_for_every_lab_code_newest_first(client: FlaskClient) -> None:
    template = client.get("/cds-services").get_json()["services"][0]["prefetch"]["observations"]
    for code in (
        "19123-9",
        "2601-3",
        "2160-0",
        "38483-4",
        "14682-9",
        "33914-3",
        "98979-8",
        "74013-4",
        "68518-0",
    ):
        assert f"http://loinc.org|{code}" in template
    assert "_sort=-date" in template


# --- invocation --------------------------------------------------------------------------------------------------


def test_full_prefetch_returns_valid_cards_without_null_or_empty_values(client: FlaskClient) -> None:
    response = post(client, PV, load_example("patient-view-request.json"))
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert_no_null_or_empty(body)
    codes = [c["extension"]["org.mgcds.recommendation"] for c in body["cards"]]
    # examples/README.md: MDS 4 of 5 and no magnesium result -> check serum magnesium.
    assert codes == ["test-serum-mg"]
    for card in body["cards"]:
        assert len(card["summary"]) < 140
        assert card["indicator"] in {"info", "warning", "critical"}
        assert card["source"]["label"]
        assert {r["code"] for r in card["overrideReasons"]} == {
            "already-addressed",
            "recent-result-elsewhere",
            "patient-declined",
            "not-clinically-relevant",
        }
        assert all(r["display"] for r in card["overrideReasons"])
        if "suggestions" in card:
            assert card["selectionBehavior"] in {"at-most-one", "any"}


def test_same_cards_without_prefetch_when_the_fhir_server_is_reachable(
    client: FlaskClient, fhir_peer: FhirPeer
) -> None:
    request = load_example("patient-view-request.json")
    with_prefetch = post(client, PV, request).get_json()
    fhir_peer.token = "tok-1"
    fetched = post(client, PV, without_prefetch(request, fhir_peer, "tok-1"))
    assert fetched.status_code == 200, fetched.get_data(as_text=True)
    assert strip_ids(fetched.get_json()) == strip_ids(with_prefetch)
    # Every key was fetched, each with the EHR's token.
    assert {path.split("?")[0].split("/")[2] for path in fhir_peer.paths()} >= {
        "Patient",
        "Observation",
        "MedicationStatement",
        "MedicationRequest",
        "Condition",
        "ServiceRequest",
    }
    assert {auth for _, auth in fhir_peer.requests} == {"Bearer tok-1"}


def test_no_prefetch_and_no_reachable_server_is_412(client: FlaskClient) -> None:
    request = load_example("patient-view-request.json")
    del request["prefetch"]
    response = post(client, PV, request)
    assert response.status_code == 412
    assert response.get_json()["error"] == "prefetch_unobtainable"
    request["fhirServer"] = "http://127.0.0.1:9/fhir"  # discard port: nothing listens
    response = post(client, PV, request)
    assert response.status_code == 412


def test_patient_not_found_on_the_server_is_412(client: FlaskClient, fhir_peer: FhirPeer) -> None:
    request = without_prefetch(load_example("patient-view-request.json"), fhir_peer, "tok-1")
    fhir_peer.resources.pop("Patient")
    response = post(client, PV, request)
    assert response.status_code == 412
    assert "patient" in response.get_json()["message"]


def test_null_prefetch_key_is_not_fetched_and_missing_key_is(client: FlaskClient, fhir_peer: FhirPeer) -> None:
    request = load_example("patient-view-request.json")
    request["prefetch"]["conditions"] = None
    del request["prefetch"]["serviceRequests"]
    request["fhirServer"] = fhir_peer.base_url
    response = post(client, PV, request)
    assert response.status_code == 200
    assert [p.split("?")[0] for p in fhir_peer.paths()] == ["/fhir/ServiceRequest"]


def test_operation_outcome_in_prefetch_is_refetched(client: FlaskClient, fhir_peer: FhirPeer) -> None:
    request = load_example("patient-view-request.json")
    fhir_peer.add(*(e["resource"] for e in request["prefetch"]["medicationRequests"]["entry"]))
    request["prefetch"]["medicationRequests"] = {"resourceType": "OperationOutcome", "issue": []}
    request["fhirServer"] = fhir_peer.base_url
    response = post(client, PV, request)
    assert response.status_code == 200
    assert [p.split("?")[0] for p in fhir_peer.paths()] == ["/fhir/MedicationRequest"]
    codes = [c["extension"]["org.mgcds.recommendation"] for c in response.get_json()["cards"]]
    assert codes == ["test-serum-mg"]


def test_a_failing_supporting_query_is_named_in_the_card_not_a_500(client: FlaskClient, fhir_peer: FhirPeer) -> None:
    request = load_example("patient-view-request.json")
    del request["prefetch"]["medicationStatements"]
    request["fhirServer"] = fhir_peer.base_url
    fhir_peer.overrides["/MedicationStatement"] = lambda path, query: (
        500,
        {"resourceType": "OperationOutcome"},
    )
    response = post(client, PV, request)
    assert response.status_code == 200
    cards = response.get_json()["cards"]
    assert cards, "eGFR 55 alone gives MDS >= 2: still a testing card"
    assert any("medicationStatements" in card["detail"] for card in cards)
    # One retry on 5xx, then the key is unknown.
    assert len([p for p in fhir_peer.paths() if p.startswith("/fhir/MedicationStatement")]) == 2


def test_fhir_reads_are_cached_per_token(client: FlaskClient, fhir_peer: FhirPeer) -> None:
    request = load_example("patient-view-request.json")
    first = without_prefetch(request, fhir_peer, "tok-A")
    assert post(client, PV, first).status_code == 200
    count = len(fhir_peer.requests)
    assert post(client, PV, first).status_code == 200
    assert len(fhir_peer.requests) == count, "same server, query and token: served from the cache"
    second = without_prefetch(load_example("patient-view-request.json"), FhirPeer(), "tok-B")
    second["fhirServer"] = fhir_peer.base_url
    assert post(client, PV, second).status_code == 200
    assert len(fhir_peer.requests) == 2 * count, "another token never shares cache entries"


# --- bad input ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda r: r.pop("hookInstance"), "hookInstance"),
        (lambda r: r.pop("hook"), "hook"),
        (lambda r: r.pop("context"), "context"),
        (lambda r: r.update(context="nope"), "context"),
        (lambda r: r["context"].pop("patientId"), "context"),
        (lambda r: r["context"].pop("userId"), "context"),
        (lambda r: r.update(hook="order-sign"), "hook"),
        (lambda r: r.update(hookInstance=12), "hookInstance"),
        (lambda r: r.update(prefetch=[1, 2]), "prefetch"),
        (
            lambda r: r.update(
                fhirAuthorization={
                    "access_token": "t",
                    "token_type": "Bearer",
                    "expires_in": 1,
                    "scope": "s",
                    "subject": "x",
                }
            ),
            "body",
        ),
        (lambda r: r.update(fhirAuthorization={"access_token": "t"}), "fhirAuthorization"),
    ],
)
def test_invalid_requests_get_400_naming_the_field(client: FlaskClient, mutate: Any, field: str) -> None:
    request = load_example("patient-view-request.json")
    mutate(request)
    response = post(client, PV, request)
    assert response.status_code == 400, response.get_data(as_text=True)
    body = response.get_json()
    assert body["error"] == "bad_request"
    assert body.get("field", "body").startswith(field)
    assert body["message"]


def test_unknown_service_is_404(client: FlaskClient) -> None:
    response = post(client, "/cds-services/no-such-service", load_example("patient-view-request.json"))
    assert response.status_code == 404
    assert response.get_json()["error"] == "not_found"


def test_wrong_media_type_is_415(client: FlaskClient) -> None:
    body = json.dumps(load_example("patient-view-request.json"))
    response = client.post(PV, data=body, content_type="text/plain")
    assert response.status_code == 415


def test_body_over_the_limit_is_413(client: FlaskClient) -> None:
    request = load_example("patient-view-request.json")
    request["context"]["padding"] = "x" * (5 * 1024 * 1024)
    response = post(client, PV, request)
    assert response.status_code == 413
    assert response.get_json()["error"] == "payload_too_large"


@pytest.mark.parametrize(
    "raw",
    [b"{", b"[]", b'"text"', b"\xff\xfe", b"[" * 100000 + b"]" * 100000, b'{"hook": NaN}'],
    ids=["truncated", "array", "string", "not-utf8", "deeply-nested", "nan"],
)
def test_malformed_json_is_400(client: FlaskClient, raw: bytes) -> None:
    response = client.post(PV, data=raw, content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["field"] == "body"


def test_prefetched_patient_of_another_id_is_rejected(client: FlaskClient) -> None:
    request = load_example("patient-view-request.json")
    request["prefetch"]["patient"]["id"] = "someone-else"
    response = post(client, PV, request)
    assert response.status_code == 400
    assert response.get_json()["field"] == "prefetch.patient"


def test_unknown_path_and_method_answer_json(client: FlaskClient) -> None:
    assert client.get("/nothing-here").get_json()["status"] == 404
    response = client.get(PV)
    assert response.status_code == 405
    assert response.get_json()["status"] == 405


# --- feedback ----------------------------------------------------------------------------------------------------


def test_feedback_list_and_single_object_are_accepted(client: FlaskClient) -> None:
    accepted = {
        "card": "4e0a3a1e-3283-4575-ab82-028d55fe2719",
        "outcome": "accepted",
        "acceptedSuggestions": [{"id": "e56e1945-20b3-4393-8503-a1a20fd73152"}],
        "outcomeTimestamp": "2026-11-21T10:05:31Z",
    }
    assert post(client, PV + "/feedback", {"feedback": [accepted]}).get_json() == {"received": 1}
    assert post(client, PV + "/feedback", accepted).get_json() == {"received": 1}


def test_accepted_without_suggestions_is_recorded_with_none_named(app: Flask, client: FlaskClient) -> None:
    # Issue 15 item 5: a card without suggestions can only be accepted this way, and EHRs send it.
    item = {
        "card": "4e0a3a1e-3283-4575-ab82-028d55fe2719",
        "outcome": "accepted",
        "outcomeTimestamp": "2026-11-21T10:05:31Z",
    }
    assert post(client, PV + "/feedback", {"feedback": [item]}).get_json() == {"received": 1}
    [record] = stored_records(app)
    assert (record.event_type, record.payload["outcome"]) == ("feedback", "accepted")
    assert record.payload["accepted_suggestions"] == []


@pytest.mark.parametrize(
    "item",
    [
        {"card": "c", "outcome": "maybe", "outcomeTimestamp": "2026-11-21T10:05:31Z"},
        {"card": "c", "outcome": "overridden"},
        {"card": "c", "outcome": "overridden", "outcomeTimestamp": "2026-11-21T10:05:31"},
        {"outcome": "overridden", "outcomeTimestamp": "2026-11-21T10:05:31Z"},
        {
            "card": "c",
            "outcome": "accepted",
            "overrideReason": {"reason": {"code": "patient-declined"}},
            "outcomeTimestamp": "2026-11-21T10:05:31Z",
        },
        {"card": "c", "outcome": "accepted", "acceptedSuggestions": [{}], "outcomeTimestamp": "2026-11-21T10:05:31Z"},
        {"card": "c" * 65, "outcome": "overridden", "outcomeTimestamp": "2026-11-21T10:05:31Z"},
        {"card": "c\u0000", "outcome": "overridden", "outcomeTimestamp": "2026-11-21T10:05:31Z"},
    ],
    ids=[
        "bad-outcome",
        "no-timestamp",
        "naive-timestamp",
        "no-card",
        "accepted-with-override-reason",
        "suggestion-without-id",
        "card-id-longer-than-its-column",
        "nul-in-card-id",
    ],
)
def test_invalid_feedback_is_400(client: FlaskClient, item: dict[str, Any]) -> None:
    response = post(client, PV + "/feedback", {"feedback": [item]})
    assert response.status_code == 400
    assert response.get_json()["field"].startswith("feedback")


# --- CORS and health ---------------------------------------------------------------------------------------------


def test_cors_preflight_for_an_allowed_origin(tmp_path: Any) -> None:
    from cds_service import create_app
    from cds_service.config import Settings

    app = create_app(Settings(dev=True, instance_path=tmp_path, cors_origins=("https://ehr.example.org",)))
    client = app.test_client()
    response = client.options(
        PV,
        headers={
            "Origin": "https://ehr.example.org",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == "https://ehr.example.org"
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert "Authorization" in response.headers["Access-Control-Allow-Headers"]
    other = client.options(PV, headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert "Access-Control-Allow-Origin" not in other.headers
    app.extensions["mgcds.runtime"].close()


def test_health_and_readiness(client: FlaskClient) -> None:
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json()["audit_store"] == "ok"

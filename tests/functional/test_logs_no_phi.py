"""Issue 6 item 6: log lines carry hookInstance, service id, card uuids and timings; never names, birth dates, values,
drug names or tokens.

A full run (patient-view, order-select, order-sign from prefetch; patient-view read from a FHIR server with an access
token; feedback; a refused call; a bad JWT) is captured at DEBUG twice: the raw records (message, arguments and every
extra, before any redaction: code must not log PHI in the first place) and the production JSON lines
(cds_service.logging's handler with its redacting filter and SAFE_FIELDS formatter).
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from cds_service.cdshooks import CardsResponse, HookRequest
from cds_service.logging import build_handler, logging_configured
from tests.functional.conftest import EXAMPLE_NOW, load_example
from tests.support.secured_app import SecuredApp, es384_signing_key, secured_app
from tests.support.security import CountingFhirServer, counting_fhir_server

pytestmark = pytest.mark.timeout(30)

PV = "/cds-services/mg-patient-view"
OSEL = "/cds-services/mg-order-select"
OSIGN = "/cds-services/mg-order-sign"
FHIR_TOKEN = "fhir-access-token-Secr3tValue-0123456789"
# Distinctive stand-ins for PHI, so a match in the logs cannot be a coincidence.
FAMILY, GIVEN = "Quixwellby", "Zebulonia"
BIRTH_DATES = ("1956-03-14", "1961-", "1970-")  # the three example patients' birth years (examples/*.json)
EGFR_VALUE = 57.25  # still eGFR 30-60 (2 MDS points), so the example's card is unchanged
DRUG_NAMES = ("Lasix", "Omeprazole", "omeprazole", "furosemide", "Magnesium oxide", "magnesium oxide")


def with_phi(name: str) -> dict[str, Any]:
    """An example request whose patient carries the distinctive name, and the patient-view eGFR value."""
    request = load_example(name)
    request["prefetch"]["patient"]["name"] = [{"family": FAMILY, "given": [GIVEN]}]
    if name.startswith("patient-view"):
        egfr = request["prefetch"]["observations"]["entry"][0]["resource"]
        egfr["valueQuantity"]["value"] = EGFR_VALUE
    return request


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """The production handler (redacting filter + JSON formatter) on the root logger, writing to a buffer."""
    stream = io.StringIO()
    handler = build_handler(stream)
    root = logging.getLogger()
    saved_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(saved_level)


@pytest.fixture
def fhir_server() -> Iterator[CountingFhirServer]:
    """A FHIR server on loopback holding the patient-view example's resources (with the distinctive PHI)."""
    with counting_fhir_server() as server:
        server.peer.token = FHIR_TOKEN
        request = with_phi("patient-view-request.json")
        for key, value in request["prefetch"].items():
            if key == "patient":
                server.peer.add(value)
            else:
                server.peer.add(*(entry["resource"] for entry in value.get("entry", [])))
        yield server


@pytest.fixture
def app(tmp_path: Path, fhir_server: CountingFhirServer) -> Iterator[SecuredApp]:
    """dev mode with a registry (JWTs required; http allowed so the loopback FHIR server can be used)."""
    servers = [{"url": fhir_server.base_url, "allow_private_network": True}]
    with secured_app(tmp_path, [es384_signing_key()], fhir_servers=servers, dev=True, clock=lambda: EXAMPLE_NOW) as a:
        yield a


def raw_text(records: list[logging.LogRecord]) -> str:
    """Everything a record holds before redaction: message, arguments, extras, exception text."""
    parts = []
    for record in records:
        parts.append(record.getMessage())
        parts.append(repr(record.args))
        parts.append(repr({k: v for k, v in record.__dict__.items() if k not in ("msg", "args")}))
    return "\n".join(parts)


def full_run(app: SecuredApp, fhir_server: CountingFhirServer) -> tuple[list[str], dict[str, list[str]], list[str]]:
    """Run every kind of call; returns (tokens presented, card uuids by hookInstance, hookInstances)."""
    tokens: list[str] = []
    cards: dict[str, list[str]] = {}

    def call(path: str, body: dict[str, Any]) -> Any:
        token = app.token(path)
        tokens.append(token)
        response = app.post(path, body, token)
        assert response.status_code == 200, response.get_json()
        if "hookInstance" in body:
            cards[body["hookInstance"]] = [card["uuid"] for card in response.get_json()["cards"]]
        return response

    call(PV, with_phi("patient-view-request.json"))
    call(OSEL, with_phi("order-select-request.json"))
    call(OSIGN, with_phi("order-sign-request.json"))

    from_server = with_phi("patient-view-request.json")
    del from_server["prefetch"]
    from_server["hookInstance"] = "0e9f7c3a-3a43-4f7e-9d1c-fhir-read"
    from_server["fhirServer"] = fhir_server.base_url
    from_server["fhirAuthorization"] = {
        "access_token": FHIR_TOKEN,
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "patient/*.read",
        "subject": "mgcds",
    }
    call(PV, from_server)
    assert fhir_server.connections > 0

    card_uuid = next(uuid for uuids in cards.values() for uuid in uuids)
    feedback = {
        "feedback": [
            {
                "card": card_uuid,
                "outcome": "overridden",
                "overrideReason": {"reason": {"code": "patient-declined"}, "userComment": f"{GIVEN} declined"},
                "outcomeTimestamp": "2026-11-21T12:05:00Z",
            }
        ]
    }
    call(PV + "/feedback", feedback)

    refused = with_phi("patient-view-request.json")
    refused["prefetch"]["patient"]["id"] = "someone-else"
    token = app.token(PV)
    tokens.append(token)
    assert app.post(PV, refused, token).status_code == 400

    forged = app.token(PV)[:-12] + "AAAAAAAAAAAA"
    tokens.append(forged)
    assert app.post(PV, with_phi("patient-view-request.json"), forged).status_code == 401
    return tokens, cards, list(cards)


def test_a_full_run_logs_ids_and_timings_but_no_phi_or_tokens(
    app: SecuredApp,
    fhir_server: CountingFhirServer,
    caplog: pytest.LogCaptureFixture,
    json_log: io.StringIO,
) -> None:
    caplog.set_level(logging.DEBUG)
    tokens, cards, hook_instances = full_run(app, fhir_server)
    raw = raw_text(caplog.records)
    lines = [json.loads(line) for line in json_log.getvalue().splitlines()]
    written = json_log.getvalue()
    assert lines, "the run must log something"

    forbidden = [FAMILY, GIVEN, *BIRTH_DATES, str(EGFR_VALUE), "1.8 mg", *DRUG_NAMES, FHIR_TOKEN]
    forbidden += [segment for token in tokens for segment in token.split(".") if len(segment) >= 16]
    for text in forbidden:
        assert text not in raw, f"{text!r} reached a log record"
        assert text not in written, f"{text!r} reached the JSON log"

    answered = [line for line in lines if line.get("event") == "hook_answered"]
    assert {line["hookInstance"] for line in answered} == set(hook_instances)
    for line in answered:
        assert line["service_id"] in {"mg-patient-view", "mg-order-select", "mg-order-sign"}
        assert line["card_uuids"] == cards[line["hookInstance"]]
        assert isinstance(line["duration_ms"], int | float)
        assert line["status"] == 200
    feedback = [line for line in lines if line.get("event") == "feedback_received"]
    assert len(feedback) == 1
    assert feedback[0]["count"] == 1
    refused = [line for line in lines if line.get("event") == "hook_refused"]
    assert [(line["status"], line["reason"]) for line in refused] == [(400, "bad_request"), (401, "unauthorized")]
    assert "hookInstance" not in refused[1]  # refused before the body was read
    assert any(line.get("event") == "jwt_rejected" for line in lines)
    # Every extra the service passes is an allowed field: nothing was silently dropped.
    assert [line for line in lines if "dropped_fields" in line] == []


def test_create_app_logs_through_the_json_handler() -> None:
    """The app factory installs configure_logging's handler when nothing has (any WSGI server, not only serve)."""
    assert logging_configured()  # the fixtures above built apps in this process


def test_validation_errors_never_carry_the_input() -> None:
    """A ValidationError's text can reach a log through an exception: it must not hold card text or request data."""
    with pytest.raises(ValidationError) as caught:
        CardsResponse.model_validate({"cards": [{"summary": f"{GIVEN} {FAMILY}", "uuid": 1}]})
    assert GIVEN not in str(caught.value)
    with pytest.raises(ValidationError) as caught:
        HookRequest.model_validate({"hook": "patient-view", "hookInstance": ["x"], "context": f"{FAMILY} 1956-03-14"})
    assert FAMILY not in str(caught.value)
    assert "1956-03-14" not in str(caught.value)

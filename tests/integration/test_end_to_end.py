"""End to end: a live MgCDS on loopback, the real FHIR server, `mgcds invoke` as the EHR, and faults in between.

Expected recommendations come from tests/data/patients/expected.json and drafts/expected-orders.json, derived by hand
from clinical-rules.md (see tests/data/patients/README.md). `now` is fixed at 2026-11-21T12:00:00Z, the moment the
hand-written patients were written for.
"""

from __future__ import annotations

import contextlib
import io
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from werkzeug.serving import make_server

from cds_service import create_app
from cds_service.cli.invoke import main as invoke_main
from cds_service.config import Settings
from tests.integration.conftest import FhirTestServer
from tests.integration.fault_proxy import Fault, FaultProxy, refused_url
from tests.support.audit import stored_records
from tests.support.cards import recommendation_codes, strip_ids

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
DATA = Path(__file__).resolve().parents[1] / "data" / "patients"
EXPECTED: dict[str, Any] = json.loads((DATA / "expected.json").read_text())
EXPECTED_ORDERS: list[dict[str, Any]] = json.loads((DATA / "drafts" / "expected-orders.json").read_text())
FHIR_TIMEOUT_SECONDS = 1.0


@dataclass
class LiveService:
    """MgCDS served by a real HTTP server on loopback."""

    url: str
    app: Flask

    def calls(self) -> list[Any]:
        return [r for r in stored_records(self.app) if r.event_type == "service-call"]


@pytest.fixture
def live_service(tmp_path: Path) -> Iterator[LiveService]:
    settings = Settings(
        dev=True,
        instance_path=tmp_path / "instance",
        fhir_timeout_seconds=FHIR_TIMEOUT_SECONDS,
        fhir_cache_ttl_seconds=0.001,  # every call reads the server afresh: the faults must be seen
    )
    app = create_app(settings, clock=lambda: NOW)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield LiveService(f"http://127.0.0.1:{server.server_port}", app)
    finally:
        server.shutdown()
        app.extensions["mgcds.runtime"].close()


def invoke(service: LiveService, fhir: str, token: str, patient: str, *extra: str) -> dict[str, Any]:
    """Run `mgcds invoke --json` and return the service's answer."""
    out, err = io.StringIO(), io.StringIO()
    argv = [
        "--service-url",
        service.url,
        "--fhir-server",
        fhir,
        "--patient",
        patient,
        "--token",
        token,
        "--json",
        *extra,
    ]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = invoke_main(argv, clock=lambda: NOW)
    assert code == 0, err.getvalue()
    answer: dict[str, Any] = json.loads(out.getvalue())
    return answer


@pytest.mark.parametrize("patient_file", sorted(EXPECTED))
def test_same_cards_with_prefetch_by_invoke_and_without_prefetch(
    live_service: LiveService, fhir_server: FhirTestServer, hand_written_patients: dict[str, str], patient_file: str
) -> None:
    patient = hand_written_patients[patient_file]
    prefetched = invoke(live_service, fhir_server.base_url, fhir_server.token, patient, "--prefetch")
    fetched = invoke(live_service, fhir_server.base_url, fhir_server.token, patient, "--no-prefetch")
    assert recommendation_codes(prefetched["cards"]) == EXPECTED[patient_file]["recommendations"]
    assert strip_ids(fetched) == strip_ids(prefetched)
    with_prefetch, without = live_service.calls()
    origins = {s["key"]: s["origin"] for s in without.payload["data_sources"]}
    assert set(origins.values()) == {"fetched"}
    assert {s["origin"] for s in with_prefetch.payload["data_sources"]} == {"prefetch"}
    used = {(r["resource_type"], r["resource_id"]) for s in without.payload["data_sources"] for r in s["resources"]}
    assert ("Patient", patient) in used, "the audit record names the resources fetched"
    assert all(r["version_id"] for s in without.payload["data_sources"] for r in s["resources"])


@pytest.mark.parametrize("case", EXPECTED_ORDERS, ids=[f"{c['hook']}-{c['drafts'][0]}" for c in EXPECTED_ORDERS])
def test_order_hooks_with_draft_orders(
    live_service: LiveService, fhir_server: FhirTestServer, hand_written_patients: dict[str, str], case: dict[str, Any]
) -> None:
    patient = hand_written_patients[case["patient"]]
    extra = ["--hook", case["hook"]]
    for draft in case["drafts"]:
        extra += ["--draft-order", str(DATA / "drafts" / draft)]
    for selection in case.get("selections", ()):
        extra += ["--selection", selection]
    answer = invoke(live_service, fhir_server.base_url, fhir_server.token, patient, *extra)
    got = [(c["extension"]["org.mgcds.recommendation"], c["indicator"]) for c in answer["cards"]]
    assert got == [(c["code"], c["indicator"]) for c in case["cards"]]


# --- faults between the service and the FHIR server -------------------------------------------------------------


def _call(service: LiveService, fhir: str, token: str, patient: str) -> requests.Response:
    request = {
        "hook": "patient-view",
        "hookInstance": f"fault-{time.monotonic_ns()}",
        "fhirServer": fhir,
        "fhirAuthorization": {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "patient/*.read",
            "subject": "mgcds",
        },
        "context": {"userId": "Practitioner/example", "patientId": patient},
    }
    return requests.post(f"{service.url}/cds-services/mg-patient-view", json=request, timeout=30)


# Patient p02 (MDS 4, no magnesium result): what each fault does to its answer.
PATIENT_FAULTS = [
    ("patient-unauthorized", r"/Patient/", Fault.UNAUTHORIZED),
    ("patient-forbidden", r"/Patient/", Fault.FORBIDDEN),
    ("patient-not-found", r"/Patient/", Fault.NOT_FOUND),
    ("patient-server-error", r"/Patient/", Fault.SERVER_ERROR),
    ("patient-malformed", r"/Patient/", Fault.MALFORMED_JSON),
    ("patient-dropped", r"/Patient/", Fault.DROP),
]


@pytest.mark.parametrize(("name", "pattern", "fault"), PATIENT_FAULTS, ids=[f[0] for f in PATIENT_FAULTS])
def test_when_the_patient_cannot_be_read_the_answer_is_412(
    live_service: LiveService,
    fhir_server: FhirTestServer,
    hand_written_patients: dict[str, str],
    fault_proxy: FaultProxy,
    name: str,
    pattern: str,
    fault: Fault,
) -> None:
    fault_proxy.add_rule(pattern, fault)
    response = _call(
        live_service, fault_proxy.base_url, fhir_server.token, hand_written_patients["p02-no-mg-test-serum.json"]
    )
    assert response.status_code == 412, response.text
    [record] = live_service.calls()
    assert record.payload["http_status"] == 412
    assert "patient" in record.payload["error"]


def test_connection_refused_is_412(live_service: LiveService, fhir_server: FhirTestServer) -> None:
    response = _call(live_service, refused_url(), fhir_server.token, "anyone")
    assert response.status_code == 412


SUPPORTING_FAULTS = [
    ("slow-past-timeout", Fault.DELAY, {"delay_seconds": 3 * FHIR_TIMEOUT_SECONDS}, "unreachable"),
    ("server-error", Fault.SERVER_ERROR, {}, "server-error"),
    ("token-expired", Fault.UNAUTHORIZED, {}, "unauthorized"),
    ("malformed-json", Fault.MALFORMED_JSON, {}, "bad-response"),
    ("operation-outcome", Fault.OPERATION_OUTCOME, {}, "bad-response"),
]


@pytest.mark.parametrize(("name", "fault", "options", "kind"), SUPPORTING_FAULTS, ids=[f[0] for f in SUPPORTING_FAULTS])
def test_a_failing_observation_query_leaves_cards_that_name_the_missing_data(
    live_service: LiveService,
    fhir_server: FhirTestServer,
    hand_written_patients: dict[str, str],
    fault_proxy: FaultProxy,
    name: str,
    fault: Fault,
    options: dict[str, Any],
    kind: str,
) -> None:
    fault_proxy.add_rule(r"/Observation", fault, **options)
    started = time.monotonic()
    response = _call(
        live_service, fault_proxy.base_url, fhir_server.token, hand_written_patients["p02-no-mg-test-serum.json"]
    )
    elapsed = time.monotonic() - started
    assert response.status_code == 200, response.text
    # Two attempts of the timeout at most (one retry) plus the other queries running alongside.
    assert elapsed < 2 * FHIR_TIMEOUT_SECONDS + 3
    cards = response.json()["cards"]
    # Without labs, eGFR is unknown: the score becomes an interval, and the missing data is named in the detail.
    for card in cards:
        assert "observations" in card["detail"]
    [record] = live_service.calls()
    failed = {s["key"]: s for s in record.payload["data_sources"] if s["origin"] == "failed"}
    assert set(failed) == {"observations"}
    assert kind in failed["observations"]["error"]


def test_a_looping_next_link_and_a_huge_bundle_are_bounded(
    live_service: LiveService,
    fhir_server: FhirTestServer,
    hand_written_patients: dict[str, str],
    fault_proxy: FaultProxy,
) -> None:
    patient = hand_written_patients["p02-no-mg-test-serum.json"]
    fault_proxy.add_rule(r"/Observation", Fault.LOOPING_NEXT)
    fault_proxy.add_rule(r"/Condition", Fault.HUGE_BUNDLE)
    response = _call(live_service, fault_proxy.base_url, fhir_server.token, patient)
    assert response.status_code == 200, response.text
    assert fault_proxy.count(r"/Observation") == 1, "a next link that points at itself is not followed again"
    assert recommendation_codes(response.json()["cards"]) == EXPECTED["p02-no-mg-test-serum.json"]["recommendations"]
    [record] = live_service.calls()
    errors = {s["key"]: s["error"] for s in record.payload["data_sources"] if s["error"]}
    assert "loops" in errors["observations"]
    assert "entry cap" in errors["conditions"]

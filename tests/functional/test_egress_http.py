"""Issue 16 B1, B2, B6, B7 over HTTP: the hook endpoint with a hostile FHIR server on 127.0.0.1.

The app is built as production builds it (tests/support/secured_app.py: a real registry, real JWTs), in dev mode
only so that the loopback servers may speak plain http; the allowlist and its private-network opt-in still decide.
Every answer is checked for "no 5xx"; what the servers received is checked for the token going nowhere else.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.functional.conftest import EXAMPLE_NOW, load_example
from tests.support.audit import stored_records
from tests.support.hostile_fhir import HostileHandler, HostileServer, hostile_server
from tests.support.secured_app import SecuredApp, es384_signing_key, secured_app
from tests.support.security import SigningKey

pytestmark = pytest.mark.timeout(90)

PV = "/cds-services/mg-patient-view"
FHIR_TOKEN = "fhir-access-token-for-the-ehr-0123456789"
BUDGET = 1.5
SLACK_SECONDS = 1.5
PATIENT_ID = "example-mg-1"


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return es384_signing_key()


@pytest.fixture
def server() -> Iterator[HostileServer]:
    """The EHR's FHIR server (allowlisted with the private-network opt-in): the Patient, and empty searches."""
    example = load_example("patient-view-request.json")
    with hostile_server() as s:
        s.routes["/fhir/Patient/"] = lambda handler: handler.send_json(200, example["prefetch"]["patient"])
        for kind in ("Observation", "MedicationStatement", "MedicationRequest", "Condition", "ServiceRequest"):
            s.routes[f"/fhir/{kind}?"] = lambda handler: handler.send_json(
                200, {"resourceType": "Bundle", "type": "searchset", "entry": []}
            )
        yield s


@pytest.fixture
def attacker() -> Iterator[HostileServer]:
    """Another port on loopback, not allowlisted: it must never be contacted."""
    with hostile_server() as s:
        s.routes["/"] = lambda handler: handler.send_json(200, {"resourceType": "Bundle", "type": "searchset"})
        yield s


@pytest.fixture
def app(tmp_path: Path, key: SigningKey, server: HostileServer) -> Iterator[SecuredApp]:
    servers: list[Any] = [{"url": server.base_url, "allow_private_network": True}]
    with secured_app(
        tmp_path, [key], fhir_servers=servers, dev=True, clock=lambda: EXAMPLE_NOW, fhir_call_budget_seconds=BUDGET
    ) as application:
        yield application


def request_for(server: HostileServer, *, prefetch: dict[str, Any] | None = None) -> dict[str, Any]:
    """The example patient-view request naming ``server`` with a token; only the prefetch keys given."""
    body = load_example("patient-view-request.json")
    body["prefetch"] = prefetch or {}
    body["fhirServer"] = server.base_url
    body["fhirAuthorization"] = {
        "access_token": FHIR_TOKEN,
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "patient/*.read",
        "subject": "mgcds",
    }
    return body


def full_prefetch() -> dict[str, Any]:
    prefetch: dict[str, Any] = load_example("patient-view-request.json")["prefetch"]
    return prefetch


def notes_of(response: Any) -> str:
    return str(response.get_json())


def last_call(app: SecuredApp) -> dict[str, Any]:
    """The audit payload of the last hook call (what the card was made from)."""
    payload: dict[str, Any] = dict(stored_records(app.app)[-1].payload)
    return payload


def drug_points(app: SecuredApp) -> dict[str, list[int]]:
    """The MDS drug components of the last call, as [low, high] points."""
    components = last_call(app)["assessment"]["mds"]["components"]
    return {c["name"]: c["points"] for c in components if c["name"] in {"diuretic", "proton-pump-inhibitor"}}


def test_b1_a_prefetched_next_link_to_another_port_is_not_followed(
    app: SecuredApp, server: HostileServer, attacker: HostileServer
) -> None:
    """B1 exactly as reported: a Bundle in the caller's prefetch with a ``next`` link elsewhere."""
    prefetch = full_prefetch()
    for key, link in (
        ("observations", attacker.base_url + "/Observation?page=2"),
        ("medicationRequests", server.origin + "/admin/users"),
        ("conditions", server.base_url + "/..;/admin/users"),
        ("serviceRequests", "http://169.254.169.254/latest/meta-data/iam/"),
    ):
        prefetch[key] = {**prefetch[key], "link": [{"relation": "next", "url": link}]}
    response = app.call(PV, request_for(server, prefetch=prefetch))
    assert response.status_code == 200, response.get_json()
    assert attacker.requests == []
    assert server.requests == []
    assert "next link leaves the FHIR server's base; not followed" in notes_of(response)


@pytest.mark.parametrize(
    "reference", ["Medication/../../admin/x", "Medication/..", "Medication/%2e%2e", "Medication/x;jsessionid=1"]
)
def test_b2_a_medication_reference_that_is_a_path_is_not_read(
    app: SecuredApp, server: HostileServer, reference: str
) -> None:
    prefetch = full_prefetch()
    prefetch["medicationRequests"] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [
            {
                "resource": {
                    "resourceType": "MedicationRequest",
                    "id": "mr-hostile",
                    "status": "active",
                    "intent": "order",
                    "subject": {"reference": f"Patient/{PATIENT_ID}"},
                    "medicationReference": {"reference": reference},
                }
            }
        ],
    }
    response = app.call(PV, request_for(server, prefetch=prefetch))
    assert response.status_code == 200, response.get_json()
    assert server.requests == []
    # Not read, and no display: the drug cannot be read, so each drug component widens (clinical-rules.md, MDS).
    assert drug_points(app) == {"diuretic": [0, 1], "proton-pump-inhibitor": [0, 1]}


def test_b2_patient_dot_dot_does_not_read_the_fhir_base(app: SecuredApp, server: HostileServer) -> None:
    body = request_for(server)
    body["context"]["patientId"] = ".."
    response = app.call(PV, body)
    assert response.status_code == 412, response.get_json()
    assert server.requests == []


def test_b6_a_dribbling_server_gets_412_at_the_deadline_not_after_two_minutes(
    app: SecuredApp, server: HostileServer
) -> None:
    server.routes["/fhir/"] = lambda handler: handler.dribble_body(0.2)
    server.routes.pop("/fhir/Patient/")
    started = time.monotonic()
    response = app.call(PV, request_for(server))
    assert response.status_code == 412, response.get_json()
    assert "time budget" in response.get_json()["message"]
    assert time.monotonic() - started < BUDGET + SLACK_SECONDS


def test_b6_the_call_answers_with_what_it_has_by_the_deadline(app: SecuredApp, server: HostileServer) -> None:
    """The Patient comes at once, every search dribbles: answered at the deadline, the searches named as unknown.

    With neither the observations nor either medication list obtained, the answer is 412 (issue 15 item 6: no data
    is not "nothing to say"), given by the deadline like any other answer.
    """
    for kind in ("Observation", "MedicationStatement", "MedicationRequest", "Condition", "ServiceRequest"):
        server.routes[f"/fhir/{kind}?"] = lambda handler: handler.dribble_body(0.2)
    started = time.monotonic()
    response = app.call(PV, request_for(server))
    assert response.status_code == 412, response.get_json()
    assert time.monotonic() - started < BUDGET + SLACK_SECONDS
    message = response.get_json()["message"]
    for key in ("observations", "medicationStatements", "medicationRequests"):
        assert f"{key}: " in message
    assert "time budget ran out" in message


def test_b6_eight_stalled_calls_do_not_hold_the_service(app: SecuredApp, server: HostileServer) -> None:
    """B6's second half: eight dribbling calls took every worker thread and an unrelated call waited 117 s.

    Eight calls at once against a dribbling server all end by the deadline; the FHIR pool is free again after
    them, so an ordinary call that needs the FHIR server is answered at once.
    """
    dribbling = {"on": True}

    def maybe_dribble(handler: HostileHandler) -> None:
        if dribbling["on"]:
            handler.dribble_body(0.2)
        else:
            handler.send_json(200, load_example("patient-view-request.json")["prefetch"]["patient"])

    server.routes["/fhir/Patient/"] = maybe_dribble
    durations: list[float] = []
    statuses: list[int] = []
    lock = threading.Lock()

    def stalled_call() -> None:
        started = time.monotonic()
        response = app.call(PV, request_for(server))
        with lock:
            durations.append(time.monotonic() - started)
            statuses.append(response.status_code)

    threads = [threading.Thread(target=stalled_call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert statuses == [412] * 8
    assert max(durations) < BUDGET + SLACK_SECONDS, durations
    dribbling["on"] = False
    started = time.monotonic()
    response = app.call(PV, request_for(server))
    assert response.status_code == 200, response.get_json()
    assert time.monotonic() - started < 1.0


def test_b7_two_thousand_medication_references_make_at_most_fifty_reads(app: SecuredApp, server: HostileServer) -> None:
    """B7: 2,000 distinct medicationReferences were 2,000 reads with the token (88 s)."""
    served: list[str] = []

    def medication(handler: HostileHandler) -> None:
        served.append(handler.path)
        medication_id = handler.path.rsplit("/", 1)[1]
        # A readable drug that scores nothing (RxNorm 161, acetaminophen): any widening comes from the unread ones.
        code = {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "161"}]}
        handler.send_json(200, {"resourceType": "Medication", "id": medication_id, "code": code})

    server.routes["/fhir/Medication/"] = medication
    prefetch = full_prefetch()
    prefetch["medicationRequests"] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [
            {
                "resource": {
                    "resourceType": "MedicationRequest",
                    "id": f"mr-{i}",
                    "status": "active",
                    "intent": "order",
                    "subject": {"reference": f"Patient/{PATIENT_ID}"},
                    "medicationReference": {"reference": f"Medication/m-{i}"},
                }
            }
            for i in range(2000)
        ],
    }
    started = time.monotonic()
    response = app.call(PV, request_for(server, prefetch=prefetch))
    assert response.status_code == 200, response.get_json()
    assert len(served) == 50
    assert time.monotonic() - started < BUDGET + 10  # 2,000 medication facts to extract on a loaded machine
    # The 1,950 beyond the cap are not read: like a failed read without display, their drug cannot be read.
    assert drug_points(app) == {"diuretic": [0, 1], "proton-pump-inhibitor": [0, 1]}

"""`mgcds invoke` end to end against a fake CDS service (a real HTTP server on 127.0.0.1 recording requests)
and, for ``--prefetch``, against the real FHIR server of the integration fixtures.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from cds_service.cli.invoke import main
from tests.integration.conftest import PATIENTS_DIR, FhirTestServer
from tests.integration.conftest import fault_proxy as fault_proxy  # noqa: PLC0414 - re-exported pytest fixture
from tests.integration.conftest import fhir_server as fhir_server  # noqa: PLC0414 - re-exported pytest fixture
from tests.integration.fault_proxy import Fault, FaultProxy, refused_url

SERVICE_ID = "mg-patient-view"
# The prefetch contract of MgCDS's services (hooks/base.py, issue 2), written out here as an EHR would see it.
PREFETCH = {
    "patient": "Patient/{{context.patientId}}",
    "observations": "Observation?patient={{context.patientId}}&code=http://loinc.org|19123-9,http://loinc.org|2601-3,"
    "http://loinc.org|2160-0,http://loinc.org|33914-3,http://loinc.org|74013-4&_sort=-date&_count=200",
    "medicationStatements": "MedicationStatement?patient={{context.patientId}}&status=active,intended",
    "medicationRequests": "MedicationRequest?patient={{context.patientId}}&status=active",
    "conditions": "Condition?patient={{context.patientId}}&clinical-status=active",
    "serviceRequests": "ServiceRequest?patient={{context.patientId}}&status=active,draft",
}
CARD = {
    "uuid": "0b6c7f1e-1111-4d6a-9a51-3f1f0a1f0001",
    "summary": "MDS 3/5, no magnesium result in 90 days: check serum magnesium",
    "indicator": "info",
    "detail": "Evidence: furosemide, omeprazole, eGFR 46.",
    "source": {"label": "MgCDS"},
    "selectionBehavior": "at-most-one",
    "suggestions": [{"label": "Order serum magnesium", "uuid": "0b6c7f1e-2222-4d6a-9a51-3f1f0a1f0002"}],
    "overrideReasons": [{"code": "patient-declined", "display": "Patient declined"}],
    "extension": {"org.mgcds.recommendation": "test-serum-mg"},
}


@dataclass
class Recorded:
    """One request the fake service received."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class FakeCdsService:
    """A fake CDS service: discovery for three hooks, canned cards, feedback; records every request."""

    base_url: str
    requests: list[Recorded] = field(default_factory=list)
    fail_status: int | None = None

    def calls(self, suffix: str) -> list[Recorded]:
        """The POSTs whose path ends with ``suffix``."""
        return [r for r in self.requests if r.method == "POST" and r.path.endswith(suffix)]


def _handler(service: FakeCdsService) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self, status: int, body: Any) -> None:
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self) -> None:
            service.requests.append(Recorded("GET", self.path, dict(self.headers), None))
            hooks = {
                SERVICE_ID: "patient-view",
                "mg-order-select": "order-select",
                "mg-order-sign": "order-sign",
            }
            services = [{"id": i, "hook": h, "description": i, "prefetch": PREFETCH} for i, h in hooks.items()]
            self._answer(200, {"services": services})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length))
            service.requests.append(Recorded("POST", self.path, dict(self.headers), body))
            if service.fail_status:
                self._answer(service.fail_status, {"error": "boom"})
            elif self.path.endswith("/feedback"):
                self._answer(200, {"received": len(body["feedback"])})
            else:
                self._answer(200, {"cards": [CARD]})

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            """Quiet."""

    return Handler


@pytest.fixture
def cds_service() -> Iterator[FakeCdsService]:
    """The fake CDS service on a free 127.0.0.1 port."""
    service = FakeCdsService(base_url="")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(service))
    service.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield service
    server.shutdown()
    server.server_close()


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> Path:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    path.write_bytes(pem)
    return path


def test_patient_view_without_prefetch_prints_the_cards(
    cds_service: FakeCdsService, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["--service-url", cds_service.base_url, "--fhir-server", "http://fhir.example/r4", "--patient", "123"]
        + ["--no-prefetch", "--token", "fhir-token"]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert f"1. [INFO] {CARD['summary']}" in out
    assert "recommendation: test-serum-mg" in out
    assert "- Order serum magnesium" in out
    (call,) = cds_service.calls(f"/cds-services/{SERVICE_ID}")
    assert "Authorization" not in call.headers
    assert call.body["hook"] == "patient-view"
    assert call.body["context"] == {"userId": "Practitioner/example", "patientId": "123"}
    assert call.body["fhirServer"] == "http://fhir.example/r4"
    assert call.body["fhirAuthorization"]["access_token"] == "fhir-token"
    assert "prefetch" not in call.body


def test_signed_call_and_feedback_carry_verifiable_jwts(
    cds_service: FakeCdsService, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    key_file = _write_key(tmp_path / "ehr.pem", key)
    fixed_now = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    code = main(
        ["--service-url", cds_service.base_url, "--patient", "123", "--no-prefetch", "--json"]
        + ["--sign-key", str(key_file), "--iss", "https://ehr.example", "--kid", "k1"]
        + ["--feedback", "overridden", "--card", "1", "--override-reason", "patient-declined"],
        clock=lambda: fixed_now,
    )
    assert code == 0
    assert json.loads(capsys.readouterr().out) == {"cards": [CARD]}
    hook_url = f"{cds_service.base_url}/cds-services/{SERVICE_ID}"
    for call, audience in (
        (cds_service.calls(SERVICE_ID)[0], hook_url),
        (cds_service.calls("/feedback")[0], f"{hook_url}/feedback"),
    ):
        scheme, token = call.headers["Authorization"].split(" ", 1)
        assert scheme == "Bearer"
        assert jwt.get_unverified_header(token)["kid"] == "k1"
        claims = jwt.decode(
            token,
            key.public_key(),
            algorithms=["ES384"],
            audience=audience,
            options={"verify_exp": False, "verify_iat": False},
        )
        assert claims["iss"] == claims["sub"] == "https://ehr.example"
        assert claims["exp"] == int(fixed_now.timestamp()) + 300
    feedback = cds_service.calls("/feedback")[0].body["feedback"][0]
    assert feedback["card"] == CARD["uuid"]
    assert feedback["outcome"] == "overridden"
    assert feedback["overrideReason"]["reason"] == {"code": "patient-declined", "display": "Patient declined"}
    assert feedback["outcomeTimestamp"] == "2026-11-21T12:00:00Z"


def test_rsa_key_signs_rs384(cds_service: FakeCdsService, tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_file = _write_key(tmp_path / "rsa.pem", key)
    args = ["--service-url", cds_service.base_url, "--patient", "1", "--no-prefetch"]
    assert main([*args, "--sign-key", str(key_file), "--iss", "i", "--kid", "r1", "--jku", "https://ehr/jwks"]) == 0
    token = cds_service.calls(SERVICE_ID)[0].headers["Authorization"].split(" ", 1)[1]
    assert jwt.get_unverified_header(token)["jku"] == "https://ehr/jwks"
    claims = jwt.decode(
        token,
        key.public_key(),
        algorithms=["RS384"],
        audience=f"{cds_service.base_url}/cds-services/{SERVICE_ID}",
    )
    assert claims["iss"] == "i"


def test_order_select_sends_draft_orders_and_selections(cds_service: FakeCdsService, tmp_path: Path) -> None:
    draft = tmp_path / "furosemide.json"
    draft.write_text(
        json.dumps(
            {
                "resourceType": "MedicationRequest",
                "id": "draft-furosemide",
                "status": "draft",
                "intent": "order",
                "subject": {"reference": "Patient/123"},
                "medicationCodeableConcept": {
                    "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "4603"}]
                },
            }
        ),
        encoding="utf-8",
    )
    code = main(
        ["--service-url", cds_service.base_url, "--patient", "123", "--no-prefetch", "--hook", "order-select"]
        + ["--draft-order", str(draft), "--selection", "MedicationRequest/draft-furosemide"]
    )
    assert code == 0
    context = cds_service.calls("/mg-order-select")[0].body["context"]
    assert context["selections"] == ["MedicationRequest/draft-furosemide"]
    assert context["draftOrders"]["entry"][0]["resource"]["id"] == "draft-furosemide"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["--draft-order", "/nonexistent/order.json", "--hook", "order-sign"],
            "cannot read draft order file",
        ),
        (
            ["--sign-key", "/nonexistent/key.pem", "--iss", "i", "--kid", "k"],
            "cannot read the signing key file",
        ),
        (["--sign-key", "/nonexistent/key.pem"], "--sign-key needs --iss and --kid"),
        (["--feedback", "accepted", "--card", "2"], "--card 2"),
    ],
)
def test_bad_input_is_one_line_on_stderr(
    cds_service: FakeCdsService, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    code = main(["--service-url", cds_service.base_url, "--patient", "1", "--no-prefetch", *extra])
    err = capsys.readouterr().err
    assert code == 1
    assert message in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_unreachable_service_is_one_line_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--service-url", refused_url(), "--patient", "1", "--no-prefetch"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("mgcds invoke: cannot reach the CDS service")
    assert len(err.strip().splitlines()) == 1


def test_service_error_status_is_reported(cds_service: FakeCdsService, capsys: pytest.CaptureFixture[str]) -> None:
    cds_service.fail_status = 412
    code = main(["--service-url", cds_service.base_url, "--patient", "1", "--no-prefetch"])
    err = capsys.readouterr().err
    assert code == 1
    assert "answered HTTP 412" in err
    assert "Traceback" not in err


@pytest.mark.integration
def test_prefetch_is_filled_from_the_real_fhir_server(
    cds_service: FakeCdsService, fhir_server: FhirTestServer, capsys: pytest.CaptureFixture[str]
) -> None:
    # p04: serum Mg (2601-3), an eGFR (33914-3), a creatinine (2160-0), drinks/day (74013-4), doxycycline.
    mapping = fhir_server.load_bundle(PATIENTS_DIR / "p04-low-normal-test-ionized.json")
    patient_id = fhir_server.patient_id(mapping)
    code = main(
        [
            "--service-url",
            cds_service.base_url,
            "--fhir-server",
            fhir_server.base_url,
            "--patient",
            patient_id,
        ]
        + ["--prefetch", "--token", fhir_server.token]
    )
    assert code == 0, capsys.readouterr().err
    prefetch = cds_service.calls(SERVICE_ID)[0].body["prefetch"]
    assert set(prefetch) == set(PREFETCH)
    assert prefetch["patient"]["id"] == patient_id
    observation_dates = [e["resource"]["effectiveDateTime"] for e in prefetch["observations"]["entry"]]
    # p04's four Observations newest first (README: 11-05 Mg, 11-01 creatinine, 10-01 drinks, 09-01 eGFR).
    assert [d[:10] for d in observation_dates] == ["2026-11-05", "2026-11-01", "2026-10-01", "2026-09-01"]
    assert [e["resource"]["medicationCodeableConcept"]["text"] for e in prefetch["medicationRequests"]["entry"]] == [
        "doxycycline"
    ]
    assert prefetch["medicationStatements"]["resourceType"] == "Bundle"
    assert prefetch["medicationStatements"].get("entry", []) == []


@pytest.mark.integration
def test_failed_prefetch_query_is_left_out(
    cds_service: FakeCdsService,
    fhir_server: FhirTestServer,
    fault_proxy: FaultProxy,
    capsys: pytest.CaptureFixture[str],
) -> None:
    patient_id = fhir_server.post({"resourceType": "Patient", "gender": "female", "birthDate": "1970-01-01"})["id"]
    fault_proxy.add_rule(r"^/MedicationRequest\?", Fault.SERVER_ERROR)
    code = main(
        [
            "--service-url",
            cds_service.base_url,
            "--fhir-server",
            fault_proxy.base_url,
            "--patient",
            patient_id,
        ]
        + ["--token", fhir_server.token]
    )
    err = capsys.readouterr().err
    assert code == 0
    prefetch = cds_service.calls(SERVICE_ID)[0].body["prefetch"]
    assert "medicationRequests" not in prefetch
    assert set(prefetch) == set(PREFETCH) - {"medicationRequests"}
    assert "prefetch medicationRequests left out: FHIR server answered HTTP 500" in err
    # The request names the proxy as fhirServer: the service would fetch the missing key there itself.
    assert cds_service.calls(SERVICE_ID)[0].body["fhirServer"] == fault_proxy.base_url

"""SMART Backend Services against a real authorization server (oidc-provider) guarding the real test FHIR server.

Processes, all on 127.0.0.1: the Medplum FHIR server (``fhir_server``, static token known only to the test and the
gateway), one Node process with the authorization server and the token-checking gateway (``smart_stack``), and a
Python HTTP server publishing each client's public JWK Set (what a vendor hosts at the JWKS URL it registers with
the EHR). The client under test knows only the gateway's FHIR base URL, its client id, its key and kid.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from cds_service.errors import FhirAuthError
from cds_service.fhir.client import FhirClient
from cds_service.fhir.smart import SmartBackendAuth, SmartSettings
from cds_service.fhir.smart_cli import add_smart_arguments, fhir_token_from_args, main
from cds_service.fhir.smart_keys import load_signing_key, public_jwks
from tests.integration.conftest import FhirTestServer
from tests.integration.smart_stack import SmartStack, serving_jwks, start_smart_stack

pytestmark = pytest.mark.integration

LOINC = "http://loinc.org"
ALL_READS = "system/Patient.rs system/Observation.rs system/MedicationRequest.rs"
RS_CLIENT, ES_CLIENT, LIMITED_CLIENT, SHORT_CLIENT = "mgcds-rs384", "mgcds-es384", "mgcds-limited", "mgcds-short"
SHORT_TTL_SECONDS = 2


def _write_pem(path: Path, key: Any) -> Path:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return path


@pytest.fixture(scope="module")
def key_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Private keys generated for this run: RS384 and ES384 clients, and a stranger's key nobody registered."""
    directory = tmp_path_factory.mktemp("smart-integration-keys")
    return {
        "rsa": _write_pem(directory / "rsa.pem", rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        "ec": _write_pem(directory / "ec.pem", ec.generate_private_key(ec.SECP384R1())),
        "stranger": _write_pem(directory / "x.pem", rsa.generate_private_key(public_exponent=65537, key_size=2048)),
    }


@pytest.fixture(scope="module")
def stack(
    fhir_server: FhirTestServer, key_files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SmartStack]:
    """The authorization server and gateway, with four clients registered by JWKS URL."""
    rsa_jwks = public_jwks(load_signing_key(key_files["rsa"], "rsa-1"))
    ec_jwks = public_jwks(load_signing_key(key_files["ec"], "ec-1"))
    documents = {"/rs/jwks.json": rsa_jwks, "/es/jwks.json": ec_jwks}
    with serving_jwks(documents) as jwks_base:
        clients = [
            {"client_id": RS_CLIENT, "alg": "RS384", "jwks_uri": f"{jwks_base}/rs/jwks.json", "scope": ALL_READS},
            {"client_id": ES_CLIENT, "alg": "ES384", "jwks_uri": f"{jwks_base}/es/jwks.json", "scope": ALL_READS},
            {
                "client_id": LIMITED_CLIENT,
                "alg": "RS384",
                "jwks_uri": f"{jwks_base}/rs/jwks.json",
                "scope": "system/Patient.rs",
            },
            {
                "client_id": SHORT_CLIENT,
                "alg": "RS384",
                "jwks_uri": f"{jwks_base}/rs/jwks.json",
                "scope": ALL_READS,
                "access_token_ttl": SHORT_TTL_SECONDS,
            },
        ]
        running = start_smart_stack(fhir_server, clients, tmp_path_factory.mktemp("smart-stack"))
        try:
            yield running
        finally:
            running.stop()


@pytest.fixture(scope="module")
def patient(fhir_server: FhirTestServer) -> dict[str, Any]:
    """A patient with two Observations, posted straight to the upstream server (with its static token)."""
    created = fhir_server.post({"resourceType": "Patient", "gender": "male", "birthDate": "1948-02-03"})
    ref = f"Patient/{created['id']}"
    observations = [
        fhir_server.post(
            {
                "resourceType": "Observation",
                "status": "final",
                "subject": {"reference": ref},
                "code": {"coding": [{"system": LOINC, "code": code}]},
                "effectiveDateTime": "2026-11-01T10:00:00Z",
                "valueQuantity": {"value": value, "unit": "mg/dL"},
            }
        )
        for code, value in (("19123-9", 1.6), ("2160-0", 1.2))
    ]
    return {"id": created["id"], "observation_ids": sorted(o["id"] for o in observations)}


@pytest.fixture
def client() -> Iterator[FhirClient]:
    """The project's FHIR client without its read cache, so every read reaches the gateway."""
    fhir = FhirClient(timeout_seconds=10, cache_ttl_seconds=0)
    try:
        yield fhir
    finally:
        fhir.close()


def _auth(
    stack: SmartStack, key_files: dict[str, Path], client_id: str = RS_CLIENT, **overrides: Any
) -> SmartBackendAuth:
    values: dict[str, Any] = {"client_id": client_id, "private_key_path": key_files["rsa"], "key_id": "rsa-1"}
    clock = overrides.pop("clock", time.time)
    values.update(overrides)
    return SmartBackendAuth(SmartSettings(**values), stack.fhir_base, clock=clock)


def _delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {key: after[key] - before[key] for key in after if after[key] != before[key]}


def test_the_gateway_refuses_anything_but_a_token_the_authorization_server_issued(
    stack: SmartStack, fhir_server: FhirTestServer, patient: dict[str, Any], key_files: dict[str, Path]
) -> None:
    url = f"{stack.fhir_base}/Patient/{patient['id']}"
    assert requests.get(url, timeout=10).status_code == 401
    # The upstream's own static token is no access token of the authorization server.
    assert requests.get(url, headers={"Authorization": f"Bearer {fhir_server.token}"}, timeout=10).status_code == 401
    # A JWT with the right issuer, audience and scope, signed by a key the authorization server does not hold.
    now = int(time.time())
    forged = jwt.encode(
        {"iss": stack.issuer, "aud": stack.fhir_base, "exp": now + 300, "jti": "x", "client_id": RS_CLIENT,
         "scope": ALL_READS, "sub": RS_CLIENT},
        load_signing_key(key_files["stranger"], "as-key-1").private_key,
        algorithm="RS256",
        headers={"typ": "at+jwt", "kid": "as-key-1"},
    )  # fmt: skip
    answer = requests.get(url, headers={"Authorization": f"Bearer {forged}"}, timeout=10)
    assert answer.status_code == 401
    assert 'error="invalid_token"' in answer.headers["WWW-Authenticate"]
    discovery = requests.get(f"{stack.fhir_base}/.well-known/smart-configuration", timeout=10).json()
    assert discovery["token_endpoint"].startswith(stack.issuer)


def test_reads_a_patient_and_its_observations_with_one_token(
    stack: SmartStack, patient: dict[str, Any], key_files: dict[str, Path], client: FhirClient
) -> None:
    auth = _auth(stack, key_files)
    before = stack.stats()
    read = auth.call(lambda token: client.read(stack.fhir_base, f"Patient/{patient['id']}", token))
    assert read["id"] == patient["id"]
    search = auth.call(lambda token: client.search(stack.fhir_base, f"Observation?patient={patient['id']}", token))
    assert sorted(o["id"] for o in search.resources) == patient["observation_ids"]
    delta = _delta(before, stack.stats())
    # One token for both reads (the cache), and both reads reached the upstream server through the gateway.
    assert delta == {"token_requests": 1, "tokens_issued": 1, "fhir_requests": 2, "fhir_forwarded": 2}
    assert auth.token_requests == 1
    # What the authorization server granted: the requested scopes it holds for this client, and no more.
    assert set((auth.token().scope or "").split()) == {"system/Patient.rs", "system/Observation.rs",
                                                       "system/MedicationRequest.rs"}  # fmt: skip


def test_an_es384_client_registered_by_jwks_url_gets_a_token(
    stack: SmartStack, patient: dict[str, Any], key_files: dict[str, Path], client: FhirClient
) -> None:
    auth = _auth(stack, key_files, ES_CLIENT, private_key_path=key_files["ec"], key_id="ec-1")
    assert auth.key.algorithm == "ES384"
    assert auth.call(lambda token: client.read(stack.fhir_base, f"Patient/{patient['id']}", token))["id"]


def test_a_revoked_token_is_replaced_once(
    stack: SmartStack, patient: dict[str, Any], key_files: dict[str, Path], client: FhirClient
) -> None:
    auth = _auth(stack, key_files)
    path = f"Patient/{patient['id']}"
    auth.call(lambda token: client.read(stack.fhir_base, path, token))
    stack.revoke_seen()
    before = stack.stats()
    assert auth.call(lambda token: client.read(stack.fhir_base, path, token))["id"] == patient["id"]
    delta = _delta(before, stack.stats())
    assert delta == {"token_requests": 1, "tokens_issued": 1, "fhir_requests": 2, "fhir_401": 1, "fhir_forwarded": 1}


def test_an_expired_token_is_replaced_once(
    stack: SmartStack, patient: dict[str, Any], key_files: dict[str, Path], client: FhirClient
) -> None:
    # A client whose clock stands still keeps believing in its token: the gateway's expiry check must catch it.
    frozen = time.time()
    auth = _auth(stack, key_files, SHORT_CLIENT, clock=lambda: frozen)
    path = f"Patient/{patient['id']}"
    assert auth.call(lambda token: client.read(stack.fhir_base, path, token))["id"] == patient["id"]
    assert auth.token().expires_at - frozen <= SHORT_TTL_SECONDS
    time.sleep(SHORT_TTL_SECONDS + 1.1)
    before = stack.stats()
    assert auth.call(lambda token: client.read(stack.fhir_base, path, token))["id"] == patient["id"]
    assert _delta(before, stack.stats()) == {
        "token_requests": 1,
        "tokens_issued": 1,
        "fhir_requests": 2,
        "fhir_401": 1,
        "fhir_forwarded": 1,
    }


def test_a_short_lived_token_is_renewed_before_it_expires(
    stack: SmartStack, patient: dict[str, Any], key_files: dict[str, Path], client: FhirClient
) -> None:
    auth = _auth(stack, key_files, SHORT_CLIENT)
    path = f"Patient/{patient['id']}"
    before = stack.stats()
    auth.call(lambda token: client.read(stack.fhir_base, path, token))
    time.sleep(SHORT_TTL_SECONDS / 2 + 0.2)  # past half the lifetime: the client renews on its own
    auth.call(lambda token: client.read(stack.fhir_base, path, token))
    delta = _delta(before, stack.stats())
    assert delta["token_requests"] == 2
    assert "fhir_401" not in delta


def test_requests_auth_on_the_client_session_replaces_a_revoked_token(
    stack: SmartStack, patient: dict[str, Any], key_files: dict[str, Path]
) -> None:
    auth = _auth(stack, key_files)
    session = requests.Session()
    session.auth = auth.requests_auth()
    fhir = FhirClient(session=session, timeout_seconds=10, cache_ttl_seconds=0)
    try:
        assert fhir.read(stack.fhir_base, f"Patient/{patient['id']}", None)["id"] == patient["id"]
        stack.revoke_seen()
        assert fhir.read(stack.fhir_base, f"Patient/{patient['id']}", None)["id"] == patient["id"]
    finally:
        fhir.close()
    assert auth.token_requests == 2


@pytest.mark.parametrize(("key", "kid"), [("stranger", "rsa-1"), ("rsa", "not-registered")])
def test_a_wrong_key_or_kid_is_a_clear_error_without_secrets(
    stack: SmartStack, key_files: dict[str, Path], key: str, kid: str, caplog: pytest.LogCaptureFixture
) -> None:
    auth = _auth(stack, key_files, private_key_path=key_files[key], key_id=kid)
    before = stack.stats()
    with pytest.raises(FhirAuthError) as caught:
        auth.access_token()
    message = str(caught.value)
    assert caught.value.status in (400, 401)
    assert "invalid_client" in message
    assert "key id" in message
    assert "eyJ" not in message  # no JWT (assertion or token) in the message
    assert "eyJ" not in caplog.text
    assert "PRIVATE KEY" not in message
    delta = _delta(before, stack.stats())
    assert delta["token_errors"] == 1
    assert "tokens_issued" not in delta


def test_a_scope_the_client_lacks_is_a_403_and_not_retried(
    stack: SmartStack, patient: dict[str, Any], key_files: dict[str, Path], client: FhirClient
) -> None:
    auth = _auth(stack, key_files, LIMITED_CLIENT)
    assert auth.call(lambda token: client.read(stack.fhir_base, f"Patient/{patient['id']}", token))["id"]
    before = stack.stats()
    with pytest.raises(FhirAuthError) as caught:
        auth.call(lambda token: client.search(stack.fhir_base, f"Observation?patient={patient['id']}", token))
    assert caught.value.status == 403
    assert _delta(before, stack.stats()) == {"fhir_requests": 1, "fhir_403": 1}  # no new token asked for
    assert auth.token().scope == "system/Patient.rs"


def test_the_cli_flags_get_a_token_for_the_fhir_server(
    stack: SmartStack, patient: dict[str, Any], key_files: dict[str, Path], client: FhirClient,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    parser = argparse.ArgumentParser()
    parser.add_argument("--fhir-server")
    parser.add_argument("--token")
    add_smart_arguments(parser)
    flags = ["--smart-client-id", RS_CLIENT, "--smart-key", str(key_files["rsa"]), "--smart-kid", "rsa-1"]
    args = parser.parse_args(["--fhir-server", stack.fhir_base, *flags, "--smart-scope", "system/Patient.rs"])
    token = fhir_token_from_args(args)
    assert token is not None
    assert client.read(stack.fhir_base, f"Patient/{patient['id']}", token)["id"] == patient["id"]
    assert main(["check", "--fhir-server", stack.fhir_base, *flags]) == 0
    out = capsys.readouterr().out
    assert "granted scope: system/Patient.rs" in out
    assert token not in out

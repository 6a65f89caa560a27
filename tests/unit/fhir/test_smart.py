"""SMART Backend Services client: keys, the client assertion, discovery, caching, refresh, and every failure.

The expected claims come from the specification (HL7 SMART App Launch 2.2 "Backend Services", Authentication
JWT table: iss = sub = client_id, aud = token URL, exp no more than five minutes ahead, unique jti; header alg
RS384/ES384, kid, typ JWT, optional jku), not from the code. The fake servers are real HTTP on 127.0.0.1.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from cds_service.errors import (
    ConfigurationError,
    FhirAuthError,
    FhirBadResponse,
    FhirServerError,
    FhirUnreachable,
)
from cds_service.fhir.client import FhirClient
from cds_service.fhir.smart import DEFAULT_SCOPE, SmartBackendAuth, SmartSettings
from cds_service.fhir.smart_keys import build_client_assertion, load_signing_key, public_jwks
from tests.support.loopback import JsonHandler, serve_on_loopback
from tests.support.smart_peer import PATIENT, SmartPeer, running_smart_peer

CLIENT_ID = "mgcds-backend-test"
RSA_KID = "rsa-1"
EC_KID = "ec-1"
BEARER = {"access_token": "abc", "token_type": "bearer"}
PRIVATE_JWK_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


def _pem(key: Any) -> bytes:
    pem: bytes = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return pem


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


@pytest.fixture(scope="module")
def keys_dir(tmp_path_factory: pytest.TempPathFactory, rsa_key: Any, ec_key: Any) -> Path:
    directory = tmp_path_factory.mktemp("smart-keys")
    (directory / "rsa.pem").write_bytes(_pem(rsa_key))
    (directory / "ec.pem").write_bytes(_pem(ec_key))
    return directory


@pytest.fixture
def peer(rsa_key: Any, ec_key: Any) -> Iterator[SmartPeer]:
    with running_smart_peer(CLIENT_ID, {RSA_KID: rsa_key.public_key(), EC_KID: ec_key.public_key()}) as running:
        yield running


class FakeClock:
    """Epoch seconds that only move when the test says so."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def _settings(keys_dir: Path, **overrides: Any) -> SmartSettings:
    values: dict[str, Any] = {
        "client_id": CLIENT_ID,
        "private_key_path": keys_dir / "rsa.pem",
        "key_id": RSA_KID,
        "timeout_seconds": 2.0,
    }
    values.update(overrides)
    return SmartSettings(**values)


def _auth(peer: SmartPeer, keys_dir: Path, clock: Any = time.time, **overrides: Any) -> SmartBackendAuth:
    peer.clock = clock
    return SmartBackendAuth(_settings(keys_dir, **overrides), peer.base_url, clock=clock)


# -- keys ---------------------------------------------------------------------------------------------------------


def test_key_algorithm_follows_the_key_type(keys_dir: Path) -> None:
    assert load_signing_key(keys_dir / "rsa.pem", "k").algorithm == "RS384"
    assert load_signing_key(keys_dir / "ec.pem", "k").algorithm == "ES384"


@pytest.mark.parametrize(
    ("make_key", "algorithm", "needle"),
    [
        (lambda: rsa.generate_private_key(public_exponent=65537, key_size=1024), None, "1024 bits"),  # noqa: S505
        (lambda: ec.generate_private_key(ec.SECP256R1()), None, "P-384"),
        (lambda: ec.generate_private_key(ec.SECP384R1()), "RS384", "not an RSA key"),
        (lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048), "ES384", "not an EC key"),
    ],
)
def test_keys_that_do_not_fit_the_algorithm_are_refused(
    tmp_path: Path, make_key: Any, algorithm: str | None, needle: str
) -> None:
    pem = _pem(make_key())
    path = tmp_path / "key.pem"
    path.write_bytes(pem)
    with pytest.raises(ConfigurationError, match=needle) as caught:
        load_signing_key(path, "k", algorithm)
    assert _no_pem_body(str(caught.value), pem)


def _no_pem_body(message: str, pem: bytes) -> bool:
    body_lines = [line for line in pem.decode().splitlines() if line and not line.startswith("-----")]
    return not any(line[:16] in message for line in body_lines)


def test_unreadable_encrypted_and_non_pem_keys_are_configuration_errors(tmp_path: Path, rsa_key: Any) -> None:
    with pytest.raises(ConfigurationError, match="cannot be read"):
        load_signing_key(tmp_path / "absent.pem", "k")
    encrypted = rsa_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase"),
    )
    (tmp_path / "enc.pem").write_bytes(encrypted)
    with pytest.raises(ConfigurationError, match="encrypted"):
        load_signing_key(tmp_path / "enc.pem", "k")
    public_only = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (tmp_path / "pub.pem").write_bytes(public_only)
    with pytest.raises(ConfigurationError, match="not a PEM private key") as caught:
        load_signing_key(tmp_path / "pub.pem", "k")
    assert _no_pem_body(str(caught.value), public_only)
    with pytest.raises(ConfigurationError, match="RS384, ES384"):
        load_signing_key(tmp_path / "pub.pem", "k", "HS256")
    with pytest.raises(ConfigurationError, match="kid"):
        load_signing_key(tmp_path / "pub.pem", "")


@pytest.mark.parametrize(("file", "kid", "kty"), [("rsa.pem", RSA_KID, "RSA"), ("ec.pem", EC_KID, "EC")])
def test_public_jwks_holds_only_the_public_half_and_verifies_assertions(
    keys_dir: Path, file: str, kid: str, kty: str
) -> None:
    key = load_signing_key(keys_dir / file, kid)
    jwks = public_jwks(key)
    (jwk,) = jwks["keys"]
    assert jwk["kty"] == kty
    assert jwk["kid"] == kid
    assert jwk["alg"] == key.algorithm
    assert jwk["use"] == "sig"
    assert not PRIVATE_JWK_MEMBERS & set(jwk)
    if kty == "EC":
        assert jwk["crv"] == "P-384"
    # What an EHR does with the registered JWKS: verify the assertion with the key named by kid.
    assertion = build_client_assertion(key, CLIENT_ID, "https://ehr.example.org/token", time.time())
    verified = jwt.decode(
        assertion, jwt.PyJWK(jwk).key, algorithms=[key.algorithm], audience="https://ehr.example.org/token"
    )
    assert verified["iss"] == CLIENT_ID


# -- the assertion and the token request --------------------------------------------------------------------------


@pytest.mark.parametrize(("file", "kid", "alg"), [("rsa.pem", RSA_KID, "RS384"), ("ec.pem", EC_KID, "ES384")])
def test_token_request_carries_a_spec_conformant_assertion(
    peer: SmartPeer, keys_dir: Path, file: str, kid: str, alg: str
) -> None:
    jku = "https://mgcds.example.org/.well-known/jwks.json"
    auth = _auth(peer, keys_dir, private_key_path=keys_dir / file, key_id=kid, jku=jku)
    before = int(time.time())
    assert auth.access_token() == "token-1-" + CLIENT_ID
    (form,) = peer.token_forms
    assert form["grant_type"] == "client_credentials"
    assert form["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    assert form["scope"] == DEFAULT_SCOPE
    assert "client_secret" not in form
    header = jwt.get_unverified_header(form["client_assertion"])
    assert header == {"alg": alg, "kid": kid, "typ": "JWT", "jku": jku}
    claims = jwt.decode(form["client_assertion"], options={"verify_signature": False})
    assert claims["iss"] == claims["sub"] == CLIENT_ID
    assert claims["aud"] == peer.token_url
    assert 0 < claims["exp"] - before <= 300
    assert claims["jti"]


def test_each_token_request_has_a_new_jti_and_scope_is_configurable(peer: SmartPeer, keys_dir: Path) -> None:
    clock = FakeClock()
    auth = _auth(peer, keys_dir, clock=clock, scope="system/Patient.rs")
    auth.access_token()
    clock.now += 10_000
    auth.access_token()
    jtis = [jwt.decode(f["client_assertion"], options={"verify_signature": False})["jti"] for f in peer.token_forms]
    assert len(set(jtis)) == 2
    assert [f["scope"] for f in peer.token_forms] == ["system/Patient.rs"] * 2


def test_token_endpoint_is_discovered_once_and_an_override_skips_discovery(peer: SmartPeer, keys_dir: Path) -> None:
    clock = FakeClock()
    auth = _auth(peer, keys_dir, clock=clock)
    auth.access_token()
    clock.now += 10_000
    auth.access_token()
    assert peer.discovery_requests == 1
    assert auth.configuration().token_endpoint == peer.token_url
    direct = _auth(peer, keys_dir, token_endpoint=peer.token_url)
    direct.access_token()
    assert peer.discovery_requests == 1


@pytest.mark.parametrize(
    ("document_change", "needle"),
    [
        ({"token_endpoint_auth_signing_alg_values_supported": ["RS256"]}, "does not accept RS384"),
        ({"token_endpoint_auth_methods_supported": ["client_secret_basic"]}, "private_key_jwt"),
        ({"grant_types_supported": ["authorization_code"]}, "client_credentials"),
    ],
)
def test_discovery_that_rules_out_our_client_is_a_configuration_error(
    peer: SmartPeer, keys_dir: Path, document_change: dict[str, Any], needle: str
) -> None:
    peer.smart_configuration = {"token_endpoint": peer.token_url, **document_change}
    with pytest.raises(ConfigurationError, match=needle):
        _auth(peer, keys_dir).access_token()
    assert peer.token_forms == []


@pytest.mark.parametrize(
    ("document", "status", "needle"),
    [
        (None, 404, "HTTP 404"),
        (b"<html>not json</html>", 200, "not JSON"),
        (b"[1, 2]", 200, "not an object"),
        ({"token_endpoint_auth_methods_supported": ["private_key_jwt"]}, 200, "no token_endpoint"),
        ({"token_endpoint": "http://ehr.example.org/token"}, 200, "https"),
        (
            {"token_endpoint": "https://ehr.example.org/token", "grant_types_supported": "client_credentials"},
            200,
            "list",
        ),
    ],
)
def test_broken_discovery_is_a_bad_response(
    peer: SmartPeer, keys_dir: Path, document: Any, status: int, needle: str
) -> None:
    peer.discovery_status = status
    if isinstance(document, bytes):
        peer.token_override = None
        peer.smart_configuration = None
        _serve_raw_discovery(peer, document)
    else:
        peer.smart_configuration = document
    with pytest.raises(FhirBadResponse, match=needle):
        _auth(peer, keys_dir).access_token()


def _serve_raw_discovery(peer: SmartPeer, raw: bytes) -> None:
    original = peer.discovery

    def raw_discovery() -> tuple[int, Any, dict[str, str]]:
        original()
        return 200, raw, {}

    peer.discovery = raw_discovery  # type: ignore[method-assign]


# -- caching and refresh ------------------------------------------------------------------------------------------


def test_token_is_cached_until_the_refresh_margin_before_expiry(peer: SmartPeer, keys_dir: Path) -> None:
    clock = FakeClock()
    start = clock.now
    peer.expires_in = 300
    auth = _auth(peer, keys_dir, clock=clock, refresh_margin_seconds=60)
    first = auth.access_token()
    clock.now = start + 239  # 300 s lifetime - 60 s margin = refresh from 240 s on
    assert auth.access_token() == first
    assert len(peer.token_forms) == 1
    clock.now = start + 241
    second = auth.access_token()
    assert second != first
    assert len(peer.token_forms) == 2
    assert auth.token_requests == 2


def test_a_token_still_inside_its_lifetime_outlasts_an_authorization_server_outage(
    peer: SmartPeer, keys_dir: Path
) -> None:
    clock = FakeClock()
    start = clock.now
    auth = _auth(peer, keys_dir, clock=clock, refresh_margin_seconds=60)
    first = auth.access_token()
    peer.token_override = lambda form: (503, {"error": "temporarily_unavailable"}, {})
    clock.now = start + 250  # past the refresh point (240 s), before expiry (300 s)
    assert auth.access_token() == first
    assert len(peer.token_forms) == 3  # the refresh was tried (twice) and failed
    clock.now = start + 301
    with pytest.raises(FhirServerError):
        auth.access_token()

    # A refusal (the registration was withdrawn) is never papered over with the old token.
    peer.token_override = None
    clock.now = start
    refused = _auth(peer, keys_dir, clock=clock, refresh_margin_seconds=60)
    refused.access_token()
    peer.token_override = lambda form: (400, {"error": "invalid_client"}, {})
    clock.now = start + 250
    with pytest.raises(FhirAuthError):
        refused.access_token()


def test_a_short_lived_token_is_used_for_half_its_lifetime(peer: SmartPeer, keys_dir: Path) -> None:
    clock = FakeClock()
    start = clock.now
    peer.expires_in = 10
    auth = _auth(peer, keys_dir, clock=clock, refresh_margin_seconds=60)
    first = auth.access_token()
    clock.now = start + 4.9
    assert auth.access_token() == first
    clock.now = start + 5.1
    assert auth.access_token() != first


def test_a_missing_expires_in_is_reused_for_at_most_a_minute(peer: SmartPeer, keys_dir: Path) -> None:
    clock = FakeClock()
    start = clock.now
    peer.token_override = lambda form: (200, {"access_token": "abc", "token_type": "Bearer"}, {})
    auth = _auth(peer, keys_dir, clock=clock)
    token = auth.token()
    assert token.expires_at == pytest.approx(start + 60)
    clock.now = start + 61
    auth.access_token()
    assert len(peer.token_forms) == 2


def test_concurrent_callers_share_one_refresh(peer: SmartPeer, keys_dir: Path) -> None:
    peer.token_delay = 0.3
    auth = _auth(peer, keys_dir)
    barrier = threading.Barrier(8)
    tokens: list[str] = []

    def work() -> None:
        barrier.wait()
        tokens.append(auth.access_token())

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len(tokens) == 8
    assert set(tokens) == {"token-1-" + CLIENT_ID}
    assert len(peer.token_forms) == 1


def test_call_refreshes_once_after_a_401_from_the_fhir_server(peer: SmartPeer, keys_dir: Path) -> None:
    auth = _auth(peer, keys_dir)
    client = FhirClient(timeout_seconds=2, cache_ttl_seconds=0)
    try:
        assert auth.call(lambda token: client.read(peer.base_url, "Patient/p1", token)) == PATIENT
        peer.revoke_all()  # the server no longer takes the cached token (expired early, or revoked)
        assert auth.call(lambda token: client.read(peer.base_url, "Patient/p1", token)) == PATIENT
    finally:
        client.close()
    assert len(peer.token_forms) == 2
    assert peer.fhir_requests[-2:] == ["Bearer token-1-" + CLIENT_ID, "Bearer token-2-" + CLIENT_ID]


def test_call_gives_up_after_one_retry_and_does_not_retry_a_403(peer: SmartPeer, keys_dir: Path) -> None:
    auth = _auth(peer, keys_dir)
    client = FhirClient(timeout_seconds=2, cache_ttl_seconds=0)
    try:
        peer.token_override = lambda form: (200, {"access_token": "never-valid", "token_type": "bearer"}, {})
        with pytest.raises(FhirAuthError) as caught:
            auth.call(lambda token: client.read(peer.base_url, "Patient/p1", token))
        assert caught.value.status == 401
        assert len(peer.token_forms) == 2
        assert "never-valid" not in str(caught.value)
        peer.token_override = None
        peer.forbidden = True
        before = len(peer.token_forms)
        with pytest.raises(FhirAuthError) as forbidden:
            auth.call(lambda token: client.read(peer.base_url, "Patient/p1", token))
        assert forbidden.value.status == 403
        assert len(peer.token_forms) == before + 1  # the new token, and no second one after the 403
    finally:
        client.close()


def test_requests_auth_sends_the_token_and_retries_a_401_once(peer: SmartPeer, keys_dir: Path) -> None:
    auth = _auth(peer, keys_dir)
    session = requests.Session()
    session.auth = auth.requests_auth()
    client = FhirClient(session=session, timeout_seconds=2, cache_ttl_seconds=0)
    try:
        assert client.read(peer.base_url, "Patient/p1", None) == PATIENT
        peer.revoke_all()
        assert client.read(peer.base_url, "Patient/p1", None) == PATIENT
        assert len(peer.token_forms) == 2
        peer.token_override = lambda form: (200, {"access_token": "never-valid", "token_type": "bearer"}, {})
        peer.revoke_all()
        with pytest.raises(FhirAuthError):
            client.read(peer.base_url, "Patient/p1", None)
        assert len(peer.token_forms) == 3  # one retry, not a loop
    finally:
        client.close()


def test_requests_auth_never_sends_the_token_to_another_origin(peer: SmartPeer, keys_dir: Path) -> None:
    seen: list[str | None] = []

    class Elsewhere(JsonHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            seen.append(self.headers.get("Authorization"))
            self.send_json(200, {"resourceType": "Patient", "id": "x"})

    auth = _auth(peer, keys_dir)
    with serve_on_loopback(Elsewhere) as port, requests.Session() as session:
        session.auth = auth.requests_auth()
        assert session.get(f"http://127.0.0.1:{port}/fhir/Patient/x", timeout=2).status_code == 200
    assert seen == [None]
    assert peer.token_forms == []


# -- failures -----------------------------------------------------------------------------------------------------


def test_a_token_endpoint_that_does_not_answer_times_out(peer: SmartPeer, keys_dir: Path) -> None:
    peer.token_delay = 1.5
    auth = _auth(peer, keys_dir, token_endpoint=peer.token_url, timeout_seconds=0.3)
    started = time.monotonic()
    with pytest.raises(FhirUnreachable, match="in time"):
        auth.access_token()
    assert time.monotonic() - started < 1.4  # two attempts of 0.3 s, never the server's 1.5 s
    assert len(peer.token_forms) == 2


def test_an_unreachable_server_is_fhir_unreachable(keys_dir: Path) -> None:
    with serve_on_loopback(JsonHandler) as port:
        closed = f"http://127.0.0.1:{port}/fhir"
    auth = SmartBackendAuth(_settings(keys_dir), closed)
    with pytest.raises(FhirUnreachable):
        auth.access_token()


@pytest.mark.parametrize(
    ("answer", "error", "needle"),
    [
        ((200, b"{not json", {}), FhirBadResponse, "not JSON"),
        ((200, [], {}), FhirBadResponse, "not an object"),
        ((200, {"token_type": "bearer", "expires_in": 300}, {}), FhirBadResponse, "access_token"),
        ((200, {"access_token": "a b\r\nX: y", "token_type": "bearer"}, {}), FhirBadResponse, "access_token"),
        ((200, {"access_token": "abc", "token_type": "DPoP"}, {}), FhirBadResponse, "not a bearer"),
        ((200, {"access_token": "abc", "token_type": "bearer", "expires_in": -5}, {}), FhirBadResponse, "expires_in"),
        (
            (200, {"access_token": "abc", "token_type": "bearer", "expires_in": "300"}, {}),
            FhirBadResponse,
            "expires_in",
        ),
        ((200, {"access_token": "abc", "token_type": "bearer", "expires_in": True}, {}), FhirBadResponse, "expires_in"),
        ((200, b"x" * (300 * 1024), {}), FhirBadResponse, "too large"),
        ((302, b"", {"Location": "https://elsewhere.example.org/token"}), FhirBadResponse, "HTTP 302"),
        ((503, {"error": "temporarily_unavailable"}, {}), FhirServerError, "HTTP 503"),
        ((400, {"error": "invalid_scope"}, {}), FhirAuthError, "invalid_scope"),
    ],
)
def test_bad_token_answers_become_typed_errors(
    peer: SmartPeer, keys_dir: Path, answer: Any, error: type[Exception], needle: str
) -> None:
    peer.token_override = lambda form: answer
    with pytest.raises(error, match=needle):
        _auth(peer, keys_dir).access_token()


def test_a_5xx_is_retried_once_with_a_fresh_assertion(peer: SmartPeer, keys_dir: Path) -> None:
    answers = iter([(502, {}, {}), None])
    peer.token_override = lambda form: next(answers)
    assert _auth(peer, keys_dir).access_token() == "token-1-" + CLIENT_ID
    assertions = [form["client_assertion"] for form in peer.token_forms]
    assert len(assertions) == 2
    assert assertions[0] != assertions[1]


def test_a_key_the_server_does_not_know_is_a_clear_auth_error_without_secrets(peer: SmartPeer, tmp_path: Path) -> None:
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = _pem(stranger)
    (tmp_path / "stranger.pem").write_bytes(pem)
    auth = SmartBackendAuth(
        _settings(tmp_path, private_key_path=tmp_path / "stranger.pem", key_id=RSA_KID), peer.base_url
    )
    with pytest.raises(FhirAuthError) as caught:
        auth.access_token()
    message = str(caught.value)
    assert caught.value.status == 401
    assert "invalid_client" in message
    assert "client authentication failed" in message
    assert "key id" in message
    assert peer.token_forms[0]["client_assertion"] not in message
    for part in peer.token_forms[0]["client_assertion"].split("."):
        assert part[:20] not in message
    assert _no_pem_body(message, pem)


def test_a_token_in_an_error_description_is_not_repeated(peer: SmartPeer, keys_dir: Path) -> None:
    leaked = "eyJhbGciOiJSUzM4NCJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlc2lnbmF0dXJl"
    peer.token_override = lambda form: (401, {"error": "invalid_client", "error_description": f"bad {leaked}"}, {})
    with pytest.raises(FhirAuthError) as caught:
        _auth(peer, keys_dir).access_token()
    assert "invalid_client: bad [...]" in str(caught.value)
    assert "eyJ" not in str(caught.value)


@pytest.mark.parametrize(
    ("fhir_base", "overrides", "needle"),
    [
        ("http://ehr.example.org/fhir", {}, "https"),
        ("https://user:pw@ehr.example.org/fhir", {}, "credentials"),
        ("https://ehr.example.org/fhir", {"token_endpoint": "http://ehr.example.org/token"}, "https"),
        ("https://ehr.example.org/fhir", {"client_id": ""}, "client id"),
        ("https://ehr.example.org/fhir", {"timeout_seconds": 0}, "timeout"),
    ],
)
def test_settings_that_would_leak_or_never_work_are_refused_before_any_request(
    keys_dir: Path, fhir_base: str, overrides: dict[str, Any], needle: str
) -> None:
    with pytest.raises(ConfigurationError, match=needle):
        SmartBackendAuth(_settings(keys_dir, **overrides), fhir_base)


def test_reprs_never_show_the_token_or_the_key(peer: SmartPeer, keys_dir: Path) -> None:
    auth = _auth(peer, keys_dir)
    token = auth.token()
    assert token.value not in repr(token)
    assert token.value not in repr(auth)
    assert "PrivateKey" not in repr(auth.key)

"""Issue 6 "Done when": without a valid CDS Hooks JWT nothing but discovery and health answer (over HTTP).

The app is built as production builds it (dev=False, a real issuer registry file, JWK Set file with keys generated
here). Expected answers come from CDS Hooks 2.0 "Trusting CDS Clients" (aud = the endpoint's URL, jti not reused)
and issue 6 item 1 (401 with a generic body, the reason in the log, never the token).
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from cds_service.logging import JsonFormatter, RedactingFilter
from tests.functional.conftest import EXAMPLE_NOW, load_example
from tests.support.secured_app import (
    ISSUER,
    PUBLIC_BASE_URL,
    SecuredApp,
    es384_signing_key,
    rs384_signing_key,
    secured_app,
)
from tests.support.security import SigningKey, live_claims, sign

pytestmark = pytest.mark.timeout(30)

PV = "/cds-services/mg-patient-view"
OSIGN = "/cds-services/mg-order-sign"
GENERIC_401 = {"error": "unauthorized", "message": "invalid or missing CDS Hooks JWT", "status": 401}
FEEDBACK = {
    "feedback": [
        {
            "card": "0c5b9d4e-7d55-4b7e-9b0e-3f1f1c2b6a10",
            "outcome": "overridden",
            "overrideReason": {"reason": {"code": "patient-declined", "system": "https://mgcds.example.org/override"}},
            "outcomeTimestamp": "2026-11-21T12:05:00Z",
        }
    ]
}


@pytest.fixture(scope="module")
def es384() -> SigningKey:
    """The EHR's ES384 key."""
    return es384_signing_key()


@pytest.fixture(scope="module")
def rs384() -> SigningKey:
    """The EHR's RS384 key."""
    return rs384_signing_key()


@pytest.fixture
def secured(tmp_path: Path, es384: SigningKey, rs384: SigningKey) -> Iterator[SecuredApp]:
    """A production-shaped app trusting both keys."""
    with secured_app(tmp_path, [es384, rs384], clock=lambda: EXAMPLE_NOW) as built:
        yield built


def formatted_logs(records: list[logging.LogRecord]) -> str:
    """The records as the production handler would write them (redacting filter, then the JSON formatter)."""
    redactor, formatter = RedactingFilter(), JsonFormatter()
    lines = []
    for record in records:
        raw = f"{record.getMessage()} {record.__dict__}"
        redactor.filter(record)
        lines.append(raw)
        lines.append(formatter.format(record))
    return "\n".join(lines)


def assert_generic_401(response: Any) -> None:
    assert response.status_code == 401
    assert response.get_json() == GENERIC_401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


# --- what answers without a JWT -------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/cds-services", "/healthz", "/readyz", "/openapi.json"])
def test_discovery_health_and_openapi_answer_without_a_jwt(secured: SecuredApp, path: str) -> None:
    response = secured.client.get(path)
    assert response.status_code == 200
    assert response.is_json


def test_every_other_route_refuses_a_call_without_a_jwt(secured: SecuredApp) -> None:
    """Walk the app's url map: any route beyond discovery/health/openapi must not answer 2xx anonymously."""
    # The rules page and its stylesheet hold no patient data: every card links there (issue 15 item 2).
    public = {
        "/cds-services",
        "/healthz",
        "/readyz",
        "/openapi.json",
        "/static/<path:filename>",
        "/docs/clinical-rules",
        "/docs/static/<path:filename>",
    }
    checked = 0
    for rule in secured.app.url_map.iter_rules():
        if rule.rule in public:
            continue
        path = rule.rule.replace("<service_id>", "mg-patient-view")
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            response = secured.client.open(path, method=method, json=load_example("patient-view-request.json"))
            assert response.status_code == 401, (method, path, response.status_code)
            checked += 1
    assert checked >= 2  # the service and its feedback at least


def test_an_unknown_service_is_404_without_authentication(secured: SecuredApp) -> None:
    response = secured.post("/cds-services/no-such-service", load_example("patient-view-request.json"))
    assert response.status_code == 404
    assert response.get_json()["error"] == "not_found"


# --- rejected tokens --------------------------------------------------------------------------------------------------


def _unsigned(payload: dict[str, Any]) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT', 'kid': 'es384-http'})}.{part(payload)}."


def _hs256_with_public_key(key: SigningKey, payload: dict[str, Any]) -> str:
    # Algorithm confusion: an HMAC "signature" keyed with the PEM of the EHR's public key. PyJWT refuses a PEM as an
    # HMAC secret, so the token is built by hand (the attacker does not use PyJWT either).
    import hashlib
    import hmac

    pem = key.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )

    def part(data: dict[str, Any]) -> bytes:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=")

    signing_input = part({"alg": "HS256", "typ": "JWT", "kid": key.kid}) + b"." + part(payload)
    signature = base64.urlsafe_b64encode(hmac.new(pem, signing_input, hashlib.sha256).digest()).rstrip(b"=")
    return (signing_input + b"." + signature).decode()


def bad_tokens(secured: SecuredApp, path: str) -> dict[str, str | None]:
    """Every way a token can be wrong, for ``path`` (None: no Authorization header at all)."""
    es384 = secured.keys[0]
    stranger = es384_signing_key()
    good = live_claims(ISSUER, PUBLIC_BASE_URL + path)
    return {
        "missing": None,
        "not-a-jwt": "garbage",
        "malformed": "eyJhbGciOiJFUzM4NCJ9.not-json.sig",
        "alg-none": _unsigned(good),
        "hs256-public-key": _hs256_with_public_key(es384, good),
        "wrong-key-same-kid": sign(SigningKey(stranger.private_key, es384.kid, "ES384"), good),
        "unknown-kid": sign(stranger, good),
        "jku-not-allowlisted": sign(es384, good, jku="https://attacker.example/jwks.json"),
        "expired": sign(es384, live_claims(ISSUER, PUBLIC_BASE_URL + path, exp=good["iat"] - 3600)),
        "iat-future": sign(es384, live_claims(ISSUER, PUBLIC_BASE_URL + path, iat=good["iat"] + 3600)),
        "unknown-iss": sign(es384, live_claims("https://evil.example", PUBLIC_BASE_URL + path)),
        "aud-missing": sign(es384, live_claims(ISSUER, PUBLIC_BASE_URL + path, aud=None)),
        "aud-base-url-only": sign(es384, live_claims(ISSUER, PUBLIC_BASE_URL)),
        "aud-other-host": sign(es384, live_claims(ISSUER, "https://other.example.org" + path)),
        "jti-missing": sign(es384, live_claims(ISSUER, PUBLIC_BASE_URL + path, jti=None)),
        # Issue 16 B4: non-finite or absurd times were accepted (NaN never expired and was never recorded).
        "exp-nan": sign(es384, live_claims(ISSUER, PUBLIC_BASE_URL + path, exp=float("nan"))),
        "exp-infinity": sign(es384, live_claims(ISSUER, PUBLIC_BASE_URL + path, exp=float("inf"))),
        "exp-beyond-a-float": sign(es384, live_claims(ISSUER, PUBLIC_BASE_URL + path, exp=10**400)),
        "iat-nan": sign(es384, live_claims(ISSUER, PUBLIC_BASE_URL + path, iat=float("nan"))),
        "nbf-nan": sign(es384, live_claims(ISSUER, PUBLIC_BASE_URL + path, nbf=float("nan"))),
        "lives-a-century": sign(
            es384, live_claims(ISSUER, PUBLIC_BASE_URL + path, exp=good["iat"] + 100 * 365 * 86400)
        ),
    }


BAD_TOKEN_CASES = [
    "missing",
    "not-a-jwt",
    "malformed",
    "alg-none",
    "hs256-public-key",
    "wrong-key-same-kid",
    "unknown-kid",
    "jku-not-allowlisted",
    "expired",
    "iat-future",
    "unknown-iss",
    "aud-missing",
    "aud-base-url-only",
    "aud-other-host",
    "jti-missing",
    "exp-nan",
    "exp-infinity",
    "exp-beyond-a-float",
    "iat-nan",
    "nbf-nan",
    "lives-a-century",
]


@pytest.mark.parametrize("case", BAD_TOKEN_CASES)
@pytest.mark.parametrize(
    ("path", "body"),
    [(PV, "patient-view-request.json"), (PV + "/feedback", None)],
    ids=["service", "feedback"],
)
def test_a_bad_token_is_401_with_a_generic_body_and_never_logged(
    secured: SecuredApp, caplog: pytest.LogCaptureFixture, case: str, path: str, body: str | None
) -> None:
    token = bad_tokens(secured, path)[case]
    caplog.set_level(logging.DEBUG)
    response = secured.post(path, load_example(body) if body else FEEDBACK, token)
    assert_generic_401(response)
    logs = formatted_logs(caplog.records)
    assert "caller JWT rejected" in logs or "unauthorized call" in logs
    if token is not None:
        for segment in token.split("."):
            if len(segment) >= 16:
                assert segment not in logs


def test_a_bearer_scheme_other_than_bearer_is_401(secured: SecuredApp) -> None:
    response = secured.client.post(
        PV,
        data=json.dumps(load_example("patient-view-request.json")),
        content_type="application/json",
        headers={"Authorization": "Basic " + base64.b64encode(b"ehr:secret").decode()},
    )
    assert_generic_401(response)


def test_the_401_is_answered_before_the_body_is_read(secured: SecuredApp) -> None:
    """An anonymous caller learns nothing about our validation: even a broken body gets the same 401."""
    response = secured.client.post(PV, data=b"{not json", content_type="application/json")
    assert_generic_401(response)
    response = secured.client.post(PV, data=b"<xml/>", content_type="application/xml")
    assert_generic_401(response)


# --- accepted tokens ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key_index", [0, 1], ids=["ES384", "RS384"])
def test_a_valid_token_gets_cards(secured: SecuredApp, key_index: int) -> None:
    key = secured.keys[key_index]
    response = secured.post(PV, load_example("patient-view-request.json"), secured.token(PV, key))
    assert response.status_code == 200, response.get_json()
    codes = [c["extension"]["org.mgcds.recommendation"] for c in response.get_json()["cards"]]
    # examples/README.md: this patient's MDS is 4 with no magnesium result -> test-serum-mg.
    assert codes == ["test-serum-mg"]


@pytest.mark.parametrize("key_index", [0, 1], ids=["ES384", "RS384"])
def test_a_valid_token_records_feedback(secured: SecuredApp, key_index: int) -> None:
    key = secured.keys[key_index]
    path = PV + "/feedback"
    response = secured.post(path, FEEDBACK, secured.token(path, key))
    assert response.status_code == 200
    assert response.get_json() == {"received": 1}


def test_aud_as_an_array_holding_this_endpoint_is_accepted(secured: SecuredApp) -> None:
    token = secured.token(PV, aud=["https://another.example/cds", PUBLIC_BASE_URL + PV])
    assert secured.post(PV, load_example("patient-view-request.json"), token).status_code == 200


# --- aud is bound to one endpoint -----------------------------------------------------------------------------------


def test_a_service_token_is_refused_at_feedback(secured: SecuredApp) -> None:
    assert_generic_401(secured.post(PV + "/feedback", FEEDBACK, secured.token(PV)))


def test_a_feedback_token_is_refused_at_the_service(secured: SecuredApp) -> None:
    token = secured.token(PV + "/feedback")
    assert_generic_401(secured.post(PV, load_example("patient-view-request.json"), token))


def test_a_token_for_another_service_is_refused(secured: SecuredApp) -> None:
    token = secured.token(PV)
    assert_generic_401(secured.post(OSIGN, load_example("order-sign-request.json"), token))


def test_aud_is_compared_with_the_public_base_url_not_the_host_header(secured: SecuredApp) -> None:
    """Behind a proxy the Host we see differs from the EHR's URL; only MGCDS_PUBLIC_BASE_URL counts."""
    local_aud = sign(secured.keys[0], live_claims(ISSUER, "http://localhost" + PV))
    assert_generic_401(secured.post(PV, load_example("patient-view-request.json"), local_aud))
    token = secured.token(PV)
    response = secured.post(PV, load_example("patient-view-request.json"), token, base_url="http://10.0.0.7:8080")
    assert response.status_code == 200


# --- replay -------------------------------------------------------------------------------------------------------


def test_a_replayed_jti_is_refused(secured: SecuredApp, caplog: pytest.LogCaptureFixture) -> None:
    token = secured.token(PV)
    body = load_example("patient-view-request.json")
    assert secured.post(PV, body, token).status_code == 200
    caplog.set_level(logging.WARNING)
    assert_generic_401(secured.post(PV, body, token))
    assert any(getattr(r, "reason", "") == "replayed jti" for r in caplog.records)


def test_a_replayed_jti_is_refused_even_when_the_first_call_failed_validation(secured: SecuredApp) -> None:
    """The jti is spent by authentication, whatever the body: a captured token cannot be retried."""
    token = secured.token(PV)
    assert secured.post(PV, {"hook": "patient-view"}, token).status_code == 400
    assert_generic_401(secured.post(PV, load_example("patient-view-request.json"), token))


def test_the_unsigned_spec_style_token_with_a_fresh_jti_still_fails(secured: SecuredApp) -> None:
    """A token whose claims are all right but which is signed by nobody we trust: the signature decides."""
    claims = live_claims(ISSUER, PUBLIC_BASE_URL + PV)
    stranger = rs384_signing_key()
    token = jwt.encode(claims, stranger.private_key, algorithm="RS384", headers={"kid": secured.keys[1].kid})
    assert_generic_401(secured.post(PV, load_example("patient-view-request.json"), token))


def test_b4_a_nan_expiry_cannot_be_replayed(secured: SecuredApp) -> None:
    """B4: with "exp": NaN the token was accepted on every presentation (its jti never counted as seen)."""
    token = secured.token(PV, exp=float("nan"))
    for _ in range(3):
        assert_generic_401(secured.post(PV, load_example("patient-view-request.json"), token))


def test_b3_a_jti_is_refused_by_every_worker_and_after_a_restart(
    tmp_path: Path, es384: SigningKey, rs384: SigningKey
) -> None:
    """B3: two workers on the default SQLite store each kept their own jtis, and a restart forgot them all.

    Two apps on one instance folder are two gunicorn workers of ``mgcds serve`` (each builds its own app); a third
    one built after them is the service after a restart.
    """
    body = load_example("patient-view-request.json")
    with (
        secured_app(tmp_path, [es384, rs384], clock=lambda: EXAMPLE_NOW) as worker_a,
        secured_app(tmp_path, [es384, rs384], clock=lambda: EXAMPLE_NOW) as worker_b,
    ):
        token = worker_a.token(PV)
        assert worker_a.post(PV, body, token).status_code == 200
        assert_generic_401(worker_b.post(PV, body, token))
        assert_generic_401(worker_a.post(PV, body, token))
    with secured_app(tmp_path, [es384, rs384], clock=lambda: EXAMPLE_NOW) as restarted:
        assert_generic_401(restarted.post(PV, body, token))
        assert restarted.call(PV, body).status_code == 200  # a fresh token still works


@pytest.fixture
def with_subjects(tmp_path: Path, es384: SigningKey) -> Iterator[SecuredApp]:
    """The registry lists the EHR's client id as the only accepted sub."""
    entry = {"subjects": ["ehr-client-id"]}
    with secured_app(tmp_path, [es384], clock=lambda: EXAMPLE_NOW, issuer_entry=entry) as built:
        yield built


def test_sub_must_be_listed_when_the_issuer_lists_subjects(with_subjects: SecuredApp) -> None:
    """Also-item: ``sub`` was never checked against the issuer; the spec lets services allowlist it."""
    body = load_example("patient-view-request.json")
    assert with_subjects.post(PV, body, with_subjects.token(PV, sub="ehr-client-id")).status_code == 200
    assert_generic_401(with_subjects.post(PV, body, with_subjects.token(PV, sub="another-client")))
    assert_generic_401(with_subjects.post(PV, body, with_subjects.token(PV)))  # no sub

"""CDS Hooks JWT verification (issue 6 item 1): every case from "Tests that prove it", with keys made here.

Expected outcomes come from the CDS Hooks 2.0 specification, "Trusting CDS Clients" and "JWT Signing
Algorithm" (requirements 176-205 in ../shared/reference/cds-hooks-2.0-requirements.csv): alg never none or
symmetric; iss and jku allowlisted; aud the endpoint URL (string or array); exp, iat; jti against replay;
optional tenant.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cds_service.errors import ConfigurationError, Unauthorized
from cds_service.security.identity import CallerIdentity
from cds_service.security.issuers import IssuerRegistry
from cds_service.security.jwks import JwksSource
from cds_service.security.jwt_auth import GENERIC_MESSAGE, InvalidCallerToken, JwtVerifier
from cds_service.security.replay import InMemoryReplayCache
from tests.conftest import load_json, shared_path
from tests.unit.security.conftest import (
    AUDIENCE,
    ISSUER,
    NOW,
    TENANT,
    Listener,
    SigningKey,
    claims,
    jwks_of,
    sign,
)


class FakeClock:
    """A settable clock."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def b64url(data: bytes) -> str:
    """Unpadded base64url, as in JWS."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_made_token(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"") -> str:
    """A compact JWS assembled by hand (for algorithms PyJWT refuses to produce)."""
    head = b64url(json.dumps(header).encode())
    body = b64url(json.dumps(payload).encode())
    return f"{head}.{body}.{b64url(signature)}"


Verify = Callable[..., CallerIdentity]


class Harness:
    """A verifier over a JWKS served by the counting listener, with the clocks under the test's control."""

    def __init__(
        self,
        listener: Listener,
        keys: list[SigningKey],
        *,
        issuer_entry: dict[str, Any] | None = None,
        algorithms: tuple[str, ...] = ("ES384", "RS384"),
        skew: int = 60,
    ) -> None:
        self.listener = listener
        listener.documents["/jwks"] = jwks_of(*keys)
        entry = issuer_entry if issuer_entry is not None else {"tenants": [TENANT]}
        if not {"jwks_file", "jku_allowlist"} & set(entry):
            entry.setdefault("jwks_url", listener.url("/jwks"))
        self.registry = IssuerRegistry.from_mapping({ISSUER: entry})
        self.monotonic = FakeClock(1000.0)
        self.jwks = JwksSource(
            requests.Session(), timeout_seconds=2, min_refresh_interval_seconds=30, clock=self.monotonic
        )
        self.replay = InMemoryReplayCache(clock=lambda: NOW)
        self.verifier = JwtVerifier(
            self.registry,
            algorithms=algorithms,
            jwks=self.jwks,
            replay_cache=self.replay,
            clock_skew_seconds=skew,
            clock=lambda: NOW,
        )

    def verify(self, token: str | None, audience: str = AUDIENCE) -> CallerIdentity:
        header = None if token is None else f"Bearer {token}"
        return self.verifier.verify(header, audience)

    def rejects(self, token: str | None, reason_part: str, audience: str = AUDIENCE) -> InvalidCallerToken:
        with pytest.raises(InvalidCallerToken) as caught:
            self.verify(token, audience)
        assert str(caught.value) == GENERIC_MESSAGE
        assert reason_part in caught.value.reason
        return caught.value


@pytest.fixture
def harness(listener: Listener, es384_key: SigningKey, rs384_key: SigningKey) -> Harness:
    """A verifier trusting ISSUER with an ES384 and an RS384 key served from the listener."""
    return Harness(listener, [es384_key, rs384_key])


# --- valid tokens ---------------------------------------------------------------------------------


@pytest.mark.parametrize("key_fixture", ["es384_key", "rs384_key"])
def test_valid_token_yields_the_caller(harness: Harness, key_fixture: str, request: pytest.FixtureRequest) -> None:
    key: SigningKey = request.getfixturevalue(key_fixture)
    payload = claims(sub="ehr-client")
    identity = harness.verify(sign(key, payload))
    assert identity == CallerIdentity(ISSUER, "ehr-client", TENANT, payload["jti"], key.kid)
    assert harness.listener.requests == ["/jwks"]


def test_aud_array_containing_the_endpoint_is_accepted(harness: Harness, es384_key: SigningKey) -> None:
    token = sign(es384_key, claims(aud=["https://other.example.org/x", AUDIENCE]))
    assert harness.verify(token).issuer == ISSUER


def test_keys_are_cached_between_calls(harness: Harness, es384_key: SigningKey) -> None:
    for _ in range(3):
        harness.verify(sign(es384_key, claims()))
    assert harness.listener.requests == ["/jwks"]


def test_invalid_caller_token_is_the_projects_401(harness: Harness) -> None:
    with pytest.raises(Unauthorized) as caught:
        harness.verify(None)
    assert caught.value.status == 401


# --- header and format ----------------------------------------------------------------------------


def test_missing_header(harness: Harness) -> None:
    harness.rejects(None, "missing Authorization")
    with pytest.raises(InvalidCallerToken):
        harness.verifier.verify("", AUDIENCE)


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("Basic dXNlcjpwYXNz", "not a Bearer token"),
        ("Bearer", "not a Bearer token"),
        ("Bearer not-a-jwt", "not three segments"),
        ("Bearer a.b.c", "malformed JWT"),
        ("Bearer eyJhbGciOiJFUzM4NCJ9.!!!.xyz", "malformed JWT"),
        ("Bearer " + "a" * 20000 + ".b.c", "too long"),
    ],
)
def test_malformed(harness: Harness, header: str, reason: str) -> None:
    with pytest.raises(InvalidCallerToken) as caught:
        harness.verifier.verify(header, AUDIENCE)
    assert reason in caught.value.reason
    assert harness.listener.connections == 0


def test_bearer_scheme_is_case_insensitive(harness: Harness, es384_key: SigningKey) -> None:
    assert harness.verifier.verify("bearer " + sign(es384_key, claims()), AUDIENCE).issuer == ISSUER


# --- algorithms -----------------------------------------------------------------------------------


def test_alg_none_is_rejected(harness: Harness, es384_key: SigningKey) -> None:
    token = hand_made_token({"alg": "none", "typ": "JWT", "kid": es384_key.kid}, claims())
    harness.rejects(token, "algorithm not allowed")
    assert harness.listener.connections == 0


def test_hs256_signed_with_the_public_key_as_secret_is_rejected(harness: Harness, es384_key: SigningKey) -> None:
    """The classic algorithm-confusion attack: HMAC keyed with the (public) PEM the service trusts."""
    public_pem = es384_key.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "typ": "JWT", "kid": es384_key.kid}
    head = b64url(json.dumps(header).encode())
    body = b64url(json.dumps(claims()).encode())
    mac = hmac.new(public_pem, f"{head}.{body}".encode(), hashlib.sha256).digest()
    harness.rejects(f"{head}.{body}.{b64url(mac)}", "algorithm not allowed")


@pytest.mark.parametrize("algorithms", [("HS256",), ("none",), ("ES384", "HS384"), ()])
def test_symmetric_or_none_algorithms_cannot_be_configured(harness: Harness, algorithms: tuple[str, ...]) -> None:
    with pytest.raises(ConfigurationError):
        JwtVerifier(
            harness.registry,
            algorithms=algorithms,
            jwks=harness.jwks,
            replay_cache=harness.replay,
            clock_skew_seconds=60,
        )


def test_es256_only_when_configured(listener: Listener, es256_key: SigningKey) -> None:
    default = Harness(listener, [es256_key])
    default.rejects(sign(es256_key, claims()), "algorithm not allowed")
    configured = Harness(listener, [es256_key], algorithms=("ES384", "RS384", "ES256"))
    assert configured.verify(sign(es256_key, claims())).key_id == es256_key.kid


def test_header_alg_must_fit_the_key(listener: Listener, es256_key: SigningKey) -> None:
    """A P-256 key published without alg must not verify a token that claims ES384."""
    harness = Harness(listener, [])
    jwk = es256_key.public_jwk()
    del jwk["alg"]
    listener.documents["/jwks"] = {"keys": [jwk]}
    header = {"alg": "ES384", "typ": "JWT", "kid": es256_key.kid}
    signature = b"\x00" * 96
    harness.rejects(hand_made_token(header, claims(), signature), "curve does not fit")


def test_typ_other_than_jwt_is_rejected(harness: Harness, es384_key: SigningKey) -> None:
    harness.rejects(sign(es384_key, claims(), typ="at+jwt"), "typ")


def test_missing_kid_is_rejected(harness: Harness, es384_key: SigningKey) -> None:
    token = jwt.encode(claims(), es384_key.private_key, algorithm="ES384")
    harness.rejects(token, "missing kid")


# --- keys -----------------------------------------------------------------------------------------


def test_wrong_key_same_kid_is_rejected(harness: Harness, es384_key: SigningKey) -> None:
    impostor = SigningKey(ec.generate_private_key(ec.SECP384R1()), es384_key.kid, "ES384")
    harness.rejects(sign(impostor, claims()), "bad signature")


def test_tampered_payload_is_rejected(harness: Harness, es384_key: SigningKey) -> None:
    head, _, signature = sign(es384_key, claims()).split(".")
    forged_body = b64url(json.dumps(claims(sub="someone-else")).encode())
    harness.rejects(f"{head}.{forged_body}.{signature}", "bad signature")


def test_unknown_kid_refreshes_once_then_rejects_and_is_rate_limited(harness: Harness, es384_key: SigningKey) -> None:
    harness.verify(sign(es384_key, claims()))
    assert harness.listener.requests == ["/jwks"]
    stranger = SigningKey(ec.generate_private_key(ec.SECP384R1()), "unknown-kid", "ES384")

    # Within the refresh interval after the first fetch: no new fetch at all.
    harness.rejects(sign(stranger, claims()), "unknown kid")
    assert harness.listener.requests == ["/jwks"]

    # Interval passed: exactly one refresh, then reject; another unknown kid right after does not fetch.
    harness.monotonic.now += 31
    harness.rejects(sign(stranger, claims()), "unknown kid")
    assert harness.listener.requests == ["/jwks", "/jwks"]
    harness.rejects(sign(stranger, claims()), "unknown kid")
    assert harness.listener.requests == ["/jwks", "/jwks"]
    assert harness.jwks.fetch_count == 2


def test_rotated_key_is_picked_up_by_the_refresh(harness: Harness, es384_key: SigningKey) -> None:
    harness.verify(sign(es384_key, claims()))
    rotated = SigningKey(ec.generate_private_key(ec.SECP384R1()), "rotated-kid", "ES384")
    harness.listener.documents["/jwks"] = jwks_of(es384_key, rotated)
    harness.monotonic.now += 31
    assert harness.verify(sign(rotated, claims())).key_id == "rotated-kid"
    assert harness.listener.requests == ["/jwks", "/jwks"]


def test_jwks_unreachable_fails_closed(listener: Listener, es384_key: SigningKey) -> None:
    harness = Harness(listener, [es384_key], issuer_entry={"jwks_url": listener.url("/missing")})
    harness.rejects(sign(es384_key, claims()), "keys unavailable")


def test_jwks_file_source(listener: Listener, es384_key: SigningKey, tmp_path: Path) -> None:
    keyfile = tmp_path / "ehr-jwks.json"
    keyfile.write_text(json.dumps(jwks_of(es384_key)), encoding="utf-8")
    harness = Harness(listener, [], issuer_entry={"jwks_file": str(keyfile)})
    assert harness.verify(sign(es384_key, claims())).issuer == ISSUER
    assert listener.connections == 0


def test_jku_not_allowlisted_is_rejected_without_any_fetch(harness: Harness, es384_key: SigningKey) -> None:
    harness.listener.documents["/attacker-jwks"] = jwks_of(es384_key)
    token = sign(es384_key, claims(), jku=harness.listener.url("/attacker-jwks"))
    harness.rejects(token, "jku not allowlisted")
    assert harness.listener.connections == 0


def test_jku_allowlisted_is_fetched(listener: Listener, es384_key: SigningKey) -> None:
    jku = listener.url("/ehr-jku")
    listener.documents["/ehr-jku"] = jwks_of(es384_key)
    harness = Harness(listener, [], issuer_entry={"jku_allowlist": [jku]})
    listener.documents.pop("/jwks")
    assert harness.verify(sign(es384_key, claims(), jku=jku)).issuer == ISSUER
    assert listener.requests == ["/ehr-jku"]
    assert listener.connections == 1


# --- claims ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "aud",
    [
        "https://mgcds.example.org/cds-services/other-service",
        AUDIENCE + "/",
        AUDIENCE.upper(),
        "https://mgcds.example.org",
        ["https://mgcds.example.org/cds-services"],
    ],
)
def test_wrong_aud(harness: Harness, es384_key: SigningKey, aud: Any) -> None:
    harness.rejects(sign(es384_key, claims(aud=aud)), "aud is not this endpoint")


def test_missing_aud(harness: Harness, es384_key: SigningKey) -> None:
    harness.rejects(sign(es384_key, claims(aud=None)), "aud")


def test_expired_beyond_skew_is_rejected_within_skew_accepted(harness: Harness, es384_key: SigningKey) -> None:
    # skew 60 s: exp 61 s ago is expired; exp 59 s ago is still accepted.
    harness.rejects(sign(es384_key, claims(exp=int(NOW) - 61, iat=int(NOW) - 300)), "expired")
    assert harness.verify(sign(es384_key, claims(exp=int(NOW) - 59, iat=int(NOW) - 300))).issuer == ISSUER


def test_iat_in_the_future_beyond_skew(harness: Harness, es384_key: SigningKey) -> None:
    harness.rejects(sign(es384_key, claims(iat=int(NOW) + 61, exp=int(NOW) + 300)), "iat in the future")
    assert harness.verify(sign(es384_key, claims(iat=int(NOW) + 59, exp=int(NOW) + 300))).issuer == ISSUER


@pytest.mark.parametrize("claim", ["exp", "iat", "nbf"])
@pytest.mark.parametrize(
    "value",
    [float("nan"), float("inf"), float("-inf"), 10**400, "1767225600", True, [1]],
    ids=["nan", "infinity", "minus-infinity", "10**400", "string", "boolean", "list"],
)
def test_b4_times_must_be_finite_numbers(harness: Harness, es384_key: SigningKey, claim: str, value: Any) -> None:
    """B4: "exp": NaN passed every comparison and was never recorded as used (unlimited replay); 10**400 was a 500."""
    token = sign(es384_key, claims(**{claim: value}))
    reason = "nbf" if claim == "nbf" else "missing or invalid exp/iat"
    harness.rejects(token, reason)
    harness.rejects(token, reason)  # and again: nothing about it was accepted or recorded


def test_b4_a_token_living_longer_than_the_maximum_is_rejected(harness: Harness, es384_key: SigningKey) -> None:
    """B4: exp 100 years ahead was accepted; the spec's tokens live five minutes (the default maximum)."""
    century = int(NOW) + 100 * 365 * 86400
    harness.rejects(sign(es384_key, claims(exp=century)), "lifetime (exp - iat) longer than allowed")
    harness.rejects(sign(es384_key, claims(exp=int(NOW) + 301)), "lifetime (exp - iat) longer than allowed")
    assert harness.verify(sign(es384_key, claims(exp=int(NOW) + 300))).issuer == ISSUER
    harness.rejects(sign(es384_key, claims(exp=int(NOW), iat=int(NOW))), "exp is not after iat")


def test_the_maximum_lifetime_is_configurable(listener: Listener, es384_key: SigningKey) -> None:
    harness = Harness(listener, [es384_key])
    longer = JwtVerifier(
        harness.registry,
        jwks=harness.jwks,
        replay_cache=harness.replay,
        max_lifetime_seconds=3600,
        clock=lambda: NOW,
    )
    assert longer.verify(f"Bearer {sign(es384_key, claims(exp=int(NOW) + 3600))}", AUDIENCE).issuer == ISSUER
    with pytest.raises(ConfigurationError):
        JwtVerifier(harness.registry, jwks=harness.jwks, replay_cache=harness.replay, max_lifetime_seconds=0)


def test_sub_is_checked_when_the_issuer_lists_subjects(listener: Listener, es384_key: SigningKey) -> None:
    """Also-item: sub (the EHR's client id) was never checked; the registry may now list it per issuer."""
    harness = Harness(listener, [es384_key], issuer_entry={"subjects": ["ehr-client-1", "ehr-client-2"]})
    assert harness.verify(sign(es384_key, claims(sub="ehr-client-2"))).subject == "ehr-client-2"
    harness.rejects(sign(es384_key, claims(sub="someone-else")), "sub not listed for issuer")
    harness.rejects(sign(es384_key, claims()), "sub not listed for issuer")  # no sub at all
    harness.rejects(sign(es384_key, claims(sub=["ehr-client-1"])), "bad signature or claim type")


def test_sub_is_not_checked_when_the_issuer_lists_none(harness: Harness, es384_key: SigningKey) -> None:
    assert harness.verify(sign(es384_key, claims(sub="anything"))).subject == "anything"


@pytest.mark.parametrize("missing", ["exp", "iat", "jti"])
def test_required_claims(harness: Harness, es384_key: SigningKey, missing: str) -> None:
    harness.rejects(sign(es384_key, claims(**{missing: None})), missing)


def test_replayed_jti(harness: Harness, es384_key: SigningKey) -> None:
    payload = claims()
    harness.verify(sign(es384_key, payload))
    harness.rejects(sign(es384_key, payload), "replayed jti")


def test_unknown_iss_is_rejected_before_fetching(harness: Harness, es384_key: SigningKey) -> None:
    error = harness.rejects(sign(es384_key, claims(iss="https://evil.example.net")), "untrusted issuer")
    assert error.issuer == "https://evil.example.net"
    assert harness.listener.connections == 0


def test_iss_must_match_exactly(harness: Harness, es384_key: SigningKey) -> None:
    harness.rejects(sign(es384_key, claims(iss=ISSUER + "/")), "untrusted issuer")


@pytest.mark.parametrize("tenant", ["tenant-b", None, 42])
def test_wrong_or_missing_tenant(harness: Harness, es384_key: SigningKey, tenant: Any) -> None:
    harness.rejects(sign(es384_key, claims(tenant=tenant) if tenant is not None else claims(tenant=None)), "tenant")


def test_tenant_not_checked_when_issuer_lists_none(listener: Listener, es384_key: SigningKey) -> None:
    harness = Harness(listener, [es384_key], issuer_entry={})
    assert harness.verify(sign(es384_key, claims(tenant="anything"))).tenant == "anything"
    assert harness.verify(sign(es384_key, claims(tenant=None))).tenant is None


# --- logging --------------------------------------------------------------------------------------


def test_reason_is_logged_and_the_token_never(
    harness: Harness, es384_key: SigningKey, caplog: pytest.LogCaptureFixture
) -> None:
    token = sign(es384_key, claims(aud="https://elsewhere.example.org"))
    with caplog.at_level(logging.WARNING, logger="cds_service.security.jwt_auth"):
        harness.rejects(token, "aud")
    record = next(r for r in caplog.records if r.name == "cds_service.security.jwt_auth")
    assert record.__dict__["reason"] == "aud is not this endpoint"
    text = caplog.text + repr([r.__dict__ for r in caplog.records])
    for segment in token.split("."):
        assert segment not in text


# --- the specification's own example --------------------------------------------------------------


class _FixedJwksAdapter(requests.adapters.BaseAdapter):
    """Answers every request with one JWKS document (the spec's jku host is not reachable from tests)."""

    def __init__(self, document: dict[str, Any]) -> None:
        super().__init__()
        self.document = document
        self.urls: list[str] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        import io

        self.urls.append(str(request.url))
        response = requests.Response()
        response.status_code = 200
        response.raw = io.BytesIO(json.dumps(self.document).encode())
        response.url = str(request.url)
        response.request = request
        return response

    def close(self) -> None:
        return


def test_spec_example_token_verifies_with_a_fixed_clock() -> None:
    """CDS Hooks 2.0.1's example: header (ES384, kid example-kid, jku), payload, private key and JWKS.

    The example's iss is "https://fhir-ehr.example.com/" (with the trailing slash), its aud
    "https://cds.example.org/cds-services/some-service"; exp 1422568860 (2015-01-29), iat 1311280970
    (2011-07-21), so the clock is fixed at 1400000000 (2014-05-13), between the two.
    """
    spec_dir = shared_path("fixtures", "cds-hooks-spec")
    header = load_json(spec_dir / "spec-2.0.1-jwt-header.json")
    payload = load_json(spec_dir / "spec-2.0.1-jwt-payload.json")
    private_jwk = load_json(spec_dir / "spec-2.0.1-jwk-private-example.json")
    jwks = load_json(spec_dir / "spec-2.0.1-jwks.json")
    token = jwt.encode(payload, jwt.PyJWK(private_jwk).key, algorithm="ES384", headers=header)

    registry = IssuerRegistry.from_mapping(
        {
            "https://fhir-ehr.example.com/": {
                "jku_allowlist": ["https://fhir-ehr.example.com/jwk_uri"],
                "tenants": ["2ddd6c3a-8e9a-44c6-a305-52111ad302a2"],
            }
        }
    )
    adapter = _FixedJwksAdapter(jwks)
    session = requests.Session()
    session.mount("https://", adapter)
    verifier = JwtVerifier(
        registry,
        algorithms=("ES384", "RS384"),
        jwks=JwksSource(session),
        replay_cache=InMemoryReplayCache(clock=lambda: 1_400_000_000.0),
        clock_skew_seconds=60,
        # The example token lives three and a half years (iat 2011, exp 2015): allow it here, refuse it below.
        max_lifetime_seconds=4 * 365 * 86400,
        clock=lambda: 1_400_000_000.0,
    )
    identity = verifier.verify(f"Bearer {token}", "https://cds.example.org/cds-services/some-service")
    assert identity.issuer == "https://fhir-ehr.example.com/"
    assert identity.jti == "ee22b021-e1b7-4611-ba5b-8eec6a33ac1e"
    assert identity.tenant == "2ddd6c3a-8e9a-44c6-a305-52111ad302a2"
    assert adapter.urls == ["https://fhir-ehr.example.com/jwk_uri"]

    # Same token at the real present: long expired.
    late = JwtVerifier(
        registry,
        jwks=JwksSource(session),
        replay_cache=InMemoryReplayCache(),
        clock_skew_seconds=60,
        clock=lambda: NOW,
    )
    with pytest.raises(InvalidCallerToken) as caught:
        late.verify(f"Bearer {token}", "https://cds.example.org/cds-services/some-service")
    assert caught.value.reason == "lifetime (exp - iat) longer than allowed"  # the default five minutes

    # With its lifetime allowed, at the real present: long expired.
    later = JwtVerifier(
        registry,
        jwks=JwksSource(session),
        replay_cache=InMemoryReplayCache(),
        clock_skew_seconds=60,
        max_lifetime_seconds=4 * 365 * 86400,
        clock=lambda: NOW,
    )
    with pytest.raises(InvalidCallerToken) as caught:
        later.verify(f"Bearer {token}", "https://cds.example.org/cds-services/some-service")
    assert caught.value.reason == "expired"

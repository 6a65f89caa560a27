"""The KeySource seam: the in-memory StaticKeySource verifies tokens exactly as JwksSource does, with no network;
and what a JWK Set may contribute (signature keys of EC or RSA only)."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from cds_service.errors import KeysUnavailable
from cds_service.interfaces import KeySource
from cds_service.security.issuers import IssuerRegistry
from cds_service.security.jwks import StaticKeySource, parse_jwks
from cds_service.security.jwt_auth import InvalidCallerToken, JwtVerifier
from cds_service.security.replay import InMemoryReplayCache
from tests.unit.security.conftest import AUDIENCE, ISSUER, NOW, TENANT, SigningKey, claims, jwks_of, sign

JWKS_URL = "https://ehr.example.org/jwks"


def _verifier(source: KeySource) -> JwtVerifier:
    registry = IssuerRegistry.from_mapping({ISSUER: {"jwks_url": JWKS_URL, "tenants": [TENANT]}})
    return JwtVerifier(registry, jwks=source, replay_cache=InMemoryReplayCache(clock=lambda: NOW), clock=lambda: NOW)


def test_a_static_key_source_verifies_a_token(es384_key: SigningKey) -> None:
    verifier = _verifier(StaticKeySource.from_documents({JWKS_URL: jwks_of(es384_key)}))
    caller = verifier.verify(f"Bearer {sign(es384_key, claims())}", AUDIENCE)
    assert (caller.issuer, caller.tenant, caller.key_id) == (ISSUER, TENANT, es384_key.kid)


def test_a_static_key_source_without_the_issuers_set_fails_closed(es384_key: SigningKey) -> None:
    verifier = _verifier(StaticKeySource({}))
    with pytest.raises(InvalidCallerToken) as caught:
        verifier.verify(f"Bearer {sign(es384_key, claims())}", AUDIENCE)
    assert "issuer keys unavailable" in caught.value.reason


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_only_ec_and_rsa_signature_keys_are_kept(es384_key: SigningKey, rs384_key: SigningKey) -> None:
    symmetric: dict[str, Any] = {"kty": "oct", "kid": "hmac", "k": _b64(b"0" * 32)}
    encryption = {**es384_key.public_jwk(), "kid": "enc", "use": "enc"}
    no_kid = {k: v for k, v in rs384_key.public_jwk().items() if k != "kid"}
    keys = parse_jwks({"keys": [symmetric, encryption, no_kid, es384_key.public_jwk(), rs384_key.public_jwk()]})
    # A symmetric key in a JWK Set must never verify anything: the spec allows asymmetric algorithms only.
    assert sorted(keys) == sorted([es384_key.kid, rs384_key.kid])


def test_a_document_that_is_not_a_jwk_set_is_refused() -> None:
    with pytest.raises(KeysUnavailable, match="not a JWK Set"):
        parse_jwks({"kty": "EC"})

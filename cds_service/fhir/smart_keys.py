"""SMART Backend Services keys: loading the registered private key, its public JWK Set, the client assertion.

The signing half of :mod:`cds_service.fhir.smart` (RFC 7523 client assertions for ``private_key_jwt``): a key that
can never work is a :class:`ConfigurationError` at start, and no message ever quotes key material.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from cds_service.errors import ConfigurationError

ALGORITHMS = ("RS384", "ES384")  # the two SMART Backend Services names; servers SHALL support both
ASSERTION_LIFETIME_SECONDS = 240
MIN_RSA_BITS = 2048


@dataclass(frozen=True)
class SigningKey:
    """A loaded private key with the ``alg`` and ``kid`` it signs client assertions with."""

    private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey = field(repr=False)
    algorithm: str
    key_id: str


def _algorithm_for(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    if isinstance(key, rsa.RSAPrivateKey):
        return "RS384"
    return "ES384"


def load_signing_key(path: Path | str, key_id: str, algorithm: str | None = None) -> SigningKey:
    """Load an unencrypted PEM private key (RSA >= 2048 bits or EC P-384) and check it fits ``algorithm``."""
    path = Path(path)
    if not key_id:
        raise ConfigurationError("SMART key id (kid) is empty: give the kid of the key registered with the EHR")
    if algorithm is not None and algorithm not in ALGORITHMS:
        raise ConfigurationError(f"SMART algorithm must be one of {', '.join(ALGORITHMS)}, not {algorithm!r}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"SMART private key {path} cannot be read ({exc.strerror or 'error'})") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise ConfigurationError(
            f"SMART private key {path} is encrypted; give an unencrypted PEM readable only by this user"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        # The parser's own text is not passed on: it could quote the file.
        raise ConfigurationError(f"SMART private key {path} is not a PEM private key") from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise ConfigurationError(f"SMART private key {path} must be an RSA or EC P-384 key")
    wanted = algorithm or _algorithm_for(key)
    if wanted == "RS384":
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ConfigurationError(f"SMART private key {path} is not an RSA key, which RS384 needs")
        if key.key_size < MIN_RSA_BITS:
            raise ConfigurationError(
                f"SMART private key {path} has {key.key_size} bits; RS384 needs at least {MIN_RSA_BITS}"
            )
    else:
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ConfigurationError(f"SMART private key {path} is not an EC key, which ES384 needs")
        if not isinstance(key.curve, ec.SECP384R1):
            raise ConfigurationError(f"SMART private key {path} is on {key.curve.name}; ES384 needs P-384 (secp384r1)")
    return SigningKey(private_key=key, algorithm=wanted, key_id=key_id)


def public_jwks(key: SigningKey) -> dict[str, Any]:
    """The JWK Set to register with the EHR (or publish at the JKU): the public half only, with kid and alg."""
    algorithm = jwt.get_algorithm_by_name(key.algorithm)
    jwk: dict[str, Any] = json.loads(algorithm.to_jwk(key.private_key.public_key()))
    # "use" and not "key_ops": RFC 7517 section 4.3 says the two should not be used together.
    jwk.update(kid=key.key_id, alg=key.algorithm, use="sig")
    return {"keys": [jwk]}


def build_client_assertion(
    key: SigningKey, client_id: str, token_endpoint: str, now: float, jku: str | None = None
) -> str:
    """The signed client assertion JWT for one token request (SMART Backend Services, RFC 7523)."""
    issued = int(now)
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": token_endpoint,
        # No iat or nbf: SMART does not ask for them, and a clock running ahead would make them fail.
        "exp": issued + ASSERTION_LIFETIME_SECONDS,
        # A fresh jti each time: the authorization server refuses a replayed one.
        "jti": str(uuid.uuid4()),
    }
    headers: dict[str, Any] = {"kid": key.key_id, "typ": "JWT"}
    if jku:
        headers["jku"] = jku
    return jwt.encode(claims, key.private_key, algorithm=key.algorithm, headers=headers)

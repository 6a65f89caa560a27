"""What a key source hands the JWT verifier: an issuer's public signature key and the ``alg`` its JWK declared.

Plain data (no HTTP, no JWT library): :class:`cds_service.interfaces.KeySource` names these types.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec, rsa

KeyLocation = str | Path  # a JWKS URL, or a JWKS file path
PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey


@dataclass(frozen=True)
class VerificationKey:
    """A public key from a JWK Set; ``declared_alg`` is None when the JWK names no algorithm."""

    key: PublicKey
    declared_alg: str | None

"""Caller authentication: the CDS Hooks 2.0 JWT ("Trusting CDS Clients", https://cds-hooks.hl7.org/2.0/).

Every service and feedback call carries ``Authorization: Bearer <JWT>`` signed by the EHR with an asymmetric
key (spec: never ``none``, never a symmetric algorithm; ES384 and RS384 recommended). Checks, in order, each
failure an :class:`InvalidCallerToken` (HTTP 401, generic message; the reason in ``.reason`` and the log,
never the token):

1. header present, ``Bearer`` scheme, bounded size, three base64url segments;
2. ``alg`` in the configured allowlist (subset of ES384/RS384/ES256/RS256), ``typ`` JWT, ``kid`` present;
3. ``iss`` in the trusted issuer registry (before any key is fetched);
4. key source: ``jku`` only when it is in that issuer's ``jku_allowlist`` (otherwise rejected without
   fetching), else the issuer's configured JWKS URL or file; unknown ``kid``: one rate-limited refresh;
5. signature with the key of that ``kid`` (key type and curve must fit ``alg``);
6. ``aud`` (string or array) holds exactly the called endpoint URL; ``exp``/``iat``/``nbf`` finite numbers, with
   clock skew; ``exp`` at most ``max_lifetime_seconds`` after ``iat`` (the spec's tokens live minutes);
7. ``tenant`` listed for the issuer when the issuer lists tenants; ``sub`` listed when the issuer lists subjects;
8. ``jti`` not seen before within the token's lifetime (replay cache), recorded last so that only fully valid
   tokens consume a ``jti``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.exceptions import PyJWTError

from cds_service.config import ALLOWED_JWT_ALGORITHMS
from cds_service.errors import GENERIC_UNAUTHORIZED, ConfigurationError, InvalidCallerToken, KeysUnavailable
from cds_service.interfaces import KeySource, ReplayCache
from cds_service.security.identity import CallerIdentity
from cds_service.security.issuers import IssuerConfig, IssuerRegistry
from cds_service.security.keys import KeyLocation, PublicKey, VerificationKey
from cds_service.security.replay import MAX_JTI_CHARS

logger = logging.getLogger(__name__)

GENERIC_MESSAGE = GENERIC_UNAUTHORIZED
SUPPORTED_ALGORITHMS = ALLOWED_JWT_ALGORITHMS
DEFAULT_ALGORITHMS = ("ES384", "RS384")
_EC_CURVES = {"ES256": "secp256r1", "ES384": "secp384r1"}
MIN_RSA_BITS = 2048
MAX_TOKEN_CHARS = 16 * 1024
DEFAULT_MAX_LIFETIME_SECONDS = 300

__all__ = ["GENERIC_MESSAGE", "CallerIdentity", "InvalidCallerToken", "JwtVerifier"]


def _number(claims: Mapping[str, Any], name: str) -> float | None:
    """A NumericDate claim as a finite float, else None (absent, not a number, NaN, infinite or beyond a float)."""
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    # JSON parsers accept NaN and Infinity, and integers of any size: "exp": NaN passed every comparison and was
    # never recorded as used, and 10**400 raised OverflowError (a 500).
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


class JwtVerifier:
    """Verifies the CDS Hooks JWT of one request against the issuer registry."""

    def __init__(
        self,
        registry: IssuerRegistry,
        *,
        algorithms: Sequence[str] = DEFAULT_ALGORITHMS,
        jwks: KeySource,
        replay_cache: ReplayCache,
        clock_skew_seconds: int = 60,
        max_lifetime_seconds: int = DEFAULT_MAX_LIFETIME_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        not_allowed = [alg for alg in algorithms if alg not in SUPPORTED_ALGORITHMS]
        if not_allowed or not algorithms:
            raise ConfigurationError(
                f"JWT algorithms must be a non-empty subset of {sorted(SUPPORTED_ALGORITHMS)} "
                f"(never none or HMAC), got {list(algorithms)}"
            )
        if clock_skew_seconds < 0:
            raise ConfigurationError("JWT clock skew must not be negative")
        if max_lifetime_seconds <= 0:
            raise ConfigurationError("JWT maximum lifetime must be above zero")
        self._registry = registry
        self._algorithms = frozenset(algorithms)
        self._jwks = jwks
        self._replay = replay_cache
        self._skew = clock_skew_seconds
        self._max_lifetime = max_lifetime_seconds
        self._clock = clock

    def verify(self, authorization_header: str | None, audience: str) -> CallerIdentity:
        """Authenticate the caller for the endpoint URL ``audience``; raises :class:`InvalidCallerToken`."""
        try:
            return self._verify(authorization_header, audience)
        except InvalidCallerToken as exc:
            # The reason and the (untrusted, truncated) issuer only: the token itself never reaches a log.
            logger.warning(
                "caller JWT rejected",
                extra={"event": "jwt_rejected", "reason": exc.reason, "issuer": (exc.issuer or "")[:200]},
            )
            raise

    def _verify(self, authorization_header: str | None, audience: str) -> CallerIdentity:
        token = self._bearer_token(authorization_header)
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except PyJWTError as exc:
            raise InvalidCallerToken(f"malformed JWT: {type(exc).__name__}") from exc
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._algorithms:
            raise InvalidCallerToken(f"algorithm not allowed: {str(alg)[:20]!r}")
        typ = header.get("typ")
        if typ is not None and (not isinstance(typ, str) or typ.upper() != "JWT"):
            raise InvalidCallerToken("typ is not JWT")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise InvalidCallerToken("missing kid")
        issuer = unverified.get("iss")
        if not isinstance(issuer, str):
            raise InvalidCallerToken("missing iss")
        config = self._registry.get(issuer)
        if config is None:
            raise InvalidCallerToken("untrusted issuer", issuer=issuer)
        location = self._key_location(config, header.get("jku", None))
        try:
            jwk = self._jwks.find_key(location, kid)
        except KeysUnavailable as exc:
            raise InvalidCallerToken(f"issuer keys unavailable: {exc}", issuer=issuer) from exc
        if jwk is None:
            raise InvalidCallerToken("unknown kid (after refresh)", issuer=issuer)
        public_key = self._key_for(jwk, alg, issuer)
        try:
            claims = jwt.decode(
                token,
                key=public_key,
                algorithms=[alg],
                # Time and audience are checked below against our injectable clock and exact endpoint URL.
                options={
                    "verify_signature": True,
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                    "verify_aud": False,
                    "verify_iss": False,
                },
            )
        except PyJWTError as exc:
            raise InvalidCallerToken(f"bad signature or claim type: {type(exc).__name__}", issuer=issuer) from exc
        self._check_audience(claims, audience, issuer)
        expires_at = self._check_times(claims, issuer)
        tenant = self._check_tenant(claims, config)
        subject = self._check_subject(claims, config)
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti or len(jti) > MAX_JTI_CHARS:
            raise InvalidCallerToken("missing or invalid jti", issuer=issuer)
        if self._replay.seen(issuer, jti, expires_at + self._skew):
            raise InvalidCallerToken("replayed jti", issuer=issuer)
        return CallerIdentity(
            issuer=issuer,
            subject=subject,
            tenant=tenant,
            jti=jti,
            key_id=kid,
        )

    @staticmethod
    def _bearer_token(authorization_header: str | None) -> str:
        if not authorization_header:
            raise InvalidCallerToken("missing Authorization header")
        scheme, _, token = authorization_header.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise InvalidCallerToken("Authorization is not a Bearer token")
        if len(token) > MAX_TOKEN_CHARS:
            raise InvalidCallerToken("token too long")
        if token.count(".") != 2 or " " in token:
            raise InvalidCallerToken("malformed JWT: not three segments")
        return token

    @staticmethod
    def _key_location(config: IssuerConfig, jku: Any) -> KeyLocation:
        if jku is not None:
            # Compared before anything is fetched: a forged token must not make us contact its URL.
            if not isinstance(jku, str) or jku not in config.jku_allowlist:
                raise InvalidCallerToken("jku not allowlisted for issuer", issuer=config.issuer)
            return jku
        if config.jwks_file is not None:
            return config.jwks_file
        if config.jwks_url is not None:
            return config.jwks_url
        raise InvalidCallerToken("no jku and no configured JWKS for issuer", issuer=config.issuer)

    @staticmethod
    def _key_for(verification_key: VerificationKey, alg: str, issuer: str) -> PublicKey:
        if verification_key.declared_alg is not None and verification_key.declared_alg != alg:
            raise InvalidCallerToken("key's alg does not match the token's", issuer=issuer)
        key = verification_key.key
        if alg.startswith("ES"):
            if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != _EC_CURVES[alg]:
                raise InvalidCallerToken("key type or curve does not fit alg", issuer=issuer)
        elif not isinstance(key, rsa.RSAPublicKey) or key.key_size < MIN_RSA_BITS:
            raise InvalidCallerToken("key type or size does not fit alg", issuer=issuer)
        return key

    @staticmethod
    def _check_audience(claims: Mapping[str, Any], audience: str, issuer: str) -> None:
        aud = claims.get("aud")
        if isinstance(aud, str):
            accepted = [aud]
        elif isinstance(aud, list) and all(isinstance(item, str) for item in aud):
            accepted = aud
        else:
            raise InvalidCallerToken("missing or invalid aud", issuer=issuer)
        if audience not in accepted:
            raise InvalidCallerToken("aud is not this endpoint", issuer=issuer)

    def _check_times(self, claims: Mapping[str, Any], issuer: str) -> float:
        now = self._clock()
        exp = _number(claims, "exp")
        iat = _number(claims, "iat")
        if exp is None or iat is None:
            raise InvalidCallerToken("missing or invalid exp/iat", issuer=issuer)
        if exp <= iat:
            raise InvalidCallerToken("exp is not after iat", issuer=issuer)
        if exp - iat > self._max_lifetime:
            # A token that outlives minutes is one a thief can use for as long: the spec's tokens live five.
            raise InvalidCallerToken("lifetime (exp - iat) longer than allowed", issuer=issuer)
        if now > exp + self._skew:
            raise InvalidCallerToken("expired", issuer=issuer)
        if iat > now + self._skew:
            raise InvalidCallerToken("iat in the future", issuer=issuer)
        nbf = _number(claims, "nbf")
        if "nbf" in claims and (nbf is None or nbf > now + self._skew):
            raise InvalidCallerToken("not yet valid (nbf)", issuer=issuer)
        return exp

    @staticmethod
    def _check_tenant(claims: Mapping[str, Any], config: IssuerConfig) -> str | None:
        tenant = claims.get("tenant")
        if tenant is not None and not isinstance(tenant, str):
            raise InvalidCallerToken("tenant is not a string", issuer=config.issuer)
        if config.tenants and tenant not in config.tenants:
            raise InvalidCallerToken("tenant not listed for issuer", issuer=config.issuer)
        return tenant

    @staticmethod
    def _check_subject(claims: Mapping[str, Any], config: IssuerConfig) -> str | None:
        subject = claims.get("sub")
        if subject is not None and not isinstance(subject, str):
            raise InvalidCallerToken("sub is not a string", issuer=config.issuer)
        if config.subjects and subject not in config.subjects:
            # CDS Hooks: sub is the EHR's client id, which services may allowlist per issuer.
            raise InvalidCallerToken("sub not listed for issuer", issuer=config.issuer)
        return subject

"""Builds the caller authenticator and the fhirServer guard from Settings (the app factory's one call)."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from cds_service.config import Settings
from cds_service.errors import ConfigurationError
from cds_service.runtime import Authenticator, CallerIdentityLike
from cds_service.security.fhir_allowlist import FhirServerPolicy
from cds_service.security.issuers import IssuerRegistry
from cds_service.security.jwt_auth import (
    InMemoryReplayCache,
    JwksSource,
    JwtVerifier,
    ReplayCache,
    SqlReplayCache,
)


@dataclass(frozen=True)
class Security:
    """The caller check and the SSRF guard, sharing one issuer registry."""

    authenticate: Authenticator
    fhir_guard: FhirServerPolicy


def _unauthenticated(authorization_header: str | None, audience: str) -> CallerIdentityLike | None:
    # Development mode without a registry: nobody is authenticated (the serve banner says so loudly).
    return None


def _replay_cache(settings: Settings) -> ReplayCache:
    # With PostgreSQL configured, workers and instances share one replay cache, so a jti replayed to another
    # worker is still caught; otherwise an in-process cache (one worker process sees its own callers only).
    if settings.audit_url.startswith(("postgresql", "postgres")):
        url = settings.audit_url
        if url.startswith("postgres://"):
            url = "postgresql://" + url.removeprefix("postgres://")
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
        return SqlReplayCache(sa.create_engine(url, pool_pre_ping=True))
    return InMemoryReplayCache()


def build_security(settings: Settings) -> Security:
    """Load the issuer registry once and build the authenticator and the fhirServer guard from it."""
    registry = IssuerRegistry.load(settings.trusted_issuers) if settings.trusted_issuers else None
    if registry is None:
        if not settings.dev:
            raise ConfigurationError(
                "MGCDS_TRUSTED_ISSUERS is not set: callers cannot be authenticated. Set it to the issuer registry "
                "JSON, or run `mgcds serve --dev` for local development only."
            )
        return Security(_unauthenticated, FhirServerPolicy(None, dev=True))
    verifier = JwtVerifier(
        registry,
        algorithms=settings.jwt_algorithms,
        jwks=JwksSource(timeout_seconds=settings.fhir_timeout_seconds, ttl_seconds=settings.jwks_cache_ttl_seconds),
        replay_cache=_replay_cache(settings),
        clock_skew_seconds=settings.jwt_clock_skew_seconds,
    )
    return Security(verifier.verify, FhirServerPolicy(registry, dev=settings.dev))

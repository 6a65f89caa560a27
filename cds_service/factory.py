"""The factory helpers: every collaborator is built here from Settings, for the app and for each CLI command.

``create_app`` (``cds_service/__init__.py``) and the ``mgcds`` commands call these, so a command runs with exactly
the collaborators the service would have. Each helper chooses the real or the null/in-memory implementation of one
seam (``cds_service.interfaces``); :func:`build_runtime` puts them together and accepts any of them ready-made
(tests inject in-memory ones). Nothing here imports Flask.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from cds_service.audit.recorder import AuditRecorder
from cds_service.config import Settings
from cds_service.errors import ConfigurationError
from cds_service.fhir.client import FhirClient
from cds_service.interfaces import (
    AuditReader,
    AuditWriter,
    Authenticator,
    Clock,
    FhirReader,
    FhirServerGuard,
    HookDeps,
    IdFactory,
    KeySource,
    OrderSession,
    ReplayCache,
    SuppressionSource,
    TerminologyService,
)
from cds_service.runtime import Runtime, new_uuid, utc_now
from cds_service.security.identity import CallerIdentity

log = logging.getLogger("mgcds")

RULES_PATH = "/docs/clinical-rules"  # the service's rules page: every card's source.url points there


# --- FHIR and terminology -------------------------------------------------------------------------------------


def build_fhir_client(settings: Settings, guard: FhirServerGuard | None) -> FhirClient:
    """The process's one FHIR client, with the settings' timeouts, caps, call budget and cache.

    With the service's ``FhirServerPolicy`` as ``guard`` every outbound URL obeys the allowlist's egress rules; any
    other guard (an operator's command naming its own server) gets the operator rules: every URL under the named
    base, any address.
    """
    from cds_service.fhir.egress import EgressPolicy, OperatorEgress
    from cds_service.security.fhir_allowlist import FhirServerPolicy

    egress: EgressPolicy = guard if isinstance(guard, FhirServerPolicy) else OperatorEgress()
    return FhirClient(
        timeout_seconds=settings.fhir_timeout_seconds,
        page_cap=settings.fhir_page_cap,
        max_entries=settings.fhir_max_entries,
        cache_ttl_seconds=settings.fhir_cache_ttl_seconds,
        cache_size=settings.fhir_cache_size,
        cache_max_bytes=settings.fhir_cache_max_bytes,
        max_concurrency=settings.fhir_max_concurrency,
        egress=egress,
        call_budget_seconds=settings.fhir_call_budget_seconds,
        call_max_bytes=settings.fhir_call_max_bytes,
    )


def build_terminology(settings: Settings) -> TerminologyService:
    """The local value sets, plus the configured remote terminology service for codes they do not know."""
    import requests

    from terminology import FhirTerminologyLookup, RxNavLookup, default_terminology, load_terminology

    if not settings.terminology_url:
        return default_terminology()
    lookup_class = RxNavLookup if settings.terminology_kind == "rxnav" else FhirTerminologyLookup
    remote = lookup_class(
        settings.terminology_url,
        requests.Session(),
        timeout=settings.terminology_timeout_seconds,
        cache_ttl=settings.terminology_cache_ttl_seconds,
    )
    return load_terminology(remote=remote)


# --- security -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Security:
    """The caller check and the SSRF guard, sharing one issuer registry."""

    authenticate: Authenticator
    fhir_guard: FhirServerGuard


def unauthenticated(authorization_header: str | None, audience: str) -> CallerIdentity | None:
    """The null Authenticator: development mode without a registry authenticates nobody (the banner says so)."""
    return None


def build_key_source(settings: Settings) -> KeySource:
    """The issuers' JWK Sets, fetched over HTTP (or read from files) and cached."""
    from cds_service.security.jwks import JwksSource

    return JwksSource(timeout_seconds=settings.fhir_timeout_seconds, ttl_seconds=settings.jwks_cache_ttl_seconds)


def build_replay_cache(settings: Settings) -> ReplayCache:
    """Where seen jtis are kept: a table in the audit database, shared by every worker and instance using it.

    The default SQLite file serves every worker of one host and survives restarts; PostgreSQL serves every instance.
    Only an in-memory audit store (tests, tools) gets an in-process cache.
    """
    from cds_service.audit.schema import is_in_memory
    from cds_service.security.replay import InMemoryReplayCache, SqlReplayCache, replay_engine

    if is_in_memory(settings.resolved_audit_url):
        return InMemoryReplayCache()
    return SqlReplayCache(replay_engine(settings.resolved_audit_url))


def build_security(settings: Settings) -> Security:
    """Load the issuer registry once and build the authenticator and the fhirServer guard from it."""
    from cds_service.security.fhir_allowlist import FhirServerPolicy
    from cds_service.security.issuers import IssuerRegistry
    from cds_service.security.jwt_auth import JwtVerifier

    registry = IssuerRegistry.load(settings.trusted_issuers) if settings.trusted_issuers else None
    if registry is None:
        if not settings.dev:
            raise ConfigurationError(
                "MGCDS_TRUSTED_ISSUERS is not set: callers cannot be authenticated. Set it to the issuer registry "
                "JSON, or run `mgcds serve --dev` for local development only."
            )
        return Security(unauthenticated, FhirServerPolicy(None, dev=True))
    verifier = JwtVerifier(
        registry,
        algorithms=settings.jwt_algorithms,
        jwks=build_key_source(settings),
        replay_cache=build_replay_cache(settings),
        clock_skew_seconds=settings.jwt_clock_skew_seconds,
        max_lifetime_seconds=settings.jwt_max_lifetime_seconds,
    )
    return Security(verifier.verify, FhirServerPolicy(registry, dev=settings.dev))


# --- audit ----------------------------------------------------------------------------------------------------


def init_audit_schema(settings: Settings) -> None:
    """Create (or check) the audit store's schema: ``mgcds audit init``, and ``--dev`` on SQLite at start."""
    from cds_service.audit.store import init_audit_store

    init_audit_store(settings.resolved_audit_url)


def build_audit_writer(settings: Settings, *, asynchronous: bool = True) -> AuditWriter:
    """The spooling writer of the configured store (a background drain unless ``asynchronous`` is False).

    An in-memory store URL (``sqlite://``) gives an in-memory log that is its own reader: use
    :func:`build_runtime`, which shares it, or pass the same object as reader.
    """
    from cds_service.audit.schema import is_in_memory

    if is_in_memory(settings.resolved_audit_url):
        from cds_service.audit.memory import InMemoryAuditLog

        return InMemoryAuditLog()
    from cds_service.audit.writer import open_audit_writer

    return open_audit_writer(
        settings.resolved_audit_url,
        settings.resolved_spool_path,
        asynchronous=asynchronous,
        fsync=settings.audit_fsync == "always",
        time_limit_seconds=settings.audit_store_timeout_seconds,
        min_free_bytes=settings.audit_spool_min_free_bytes,
        backlog_max_age_seconds=settings.audit_backlog_max_age_seconds,
    )


def build_audit_reader(settings: Settings) -> AuditReader:
    """A reader of the configured store on a read-only connection, holding no spool: it cannot write or drain."""
    from cds_service.audit.sqlread import SqlAuditReader

    return SqlAuditReader.open_read_only(settings.resolved_audit_url)


def build_suppression_source(settings: Settings, *, audit_reader: AuditReader | None = None) -> SuppressionSource:
    """Suppression after feedback (clinical-rules.md 7.5), read from the audit database every worker shares.

    One indexed query per call, time-limited, failing open (no suppression). An in-memory audit log answers from
    its own store when it is given as ``audit_reader``; an in-memory URL without it has nothing to share.
    """
    from cds_service.audit.memory import InMemoryAuditLog
    from cds_service.audit.schema import is_in_memory
    from cds_service.audit.suppression import InMemorySuppressionSource, SqlSuppressionSource

    if isinstance(audit_reader, InMemoryAuditLog):
        return SqlSuppressionSource(audit_reader.store.engine, settings.clinical)
    if is_in_memory(settings.resolved_audit_url):
        return InMemorySuppressionSource()
    return SqlSuppressionSource.open(settings.resolved_audit_url, settings.clinical)


# --- hooks and the whole runtime ------------------------------------------------------------------------------


HOOK_SUPPRESSION_TIME_LIMIT_SECONDS = 0.25


def _suppression_source(settings: Settings, audit_reader: AuditReader) -> SuppressionSource:
    # The service's SQL reader already holds a read-only engine on the audit store: the suppressions share it (one
    # pool, closed with the reader), each query under the source's own time limit.
    from cds_service.audit.sqlread import SqlAuditReader
    from cds_service.audit.suppression import SqlSuppressionSource

    if isinstance(audit_reader, SqlAuditReader):
        # On the hook path the read may cost at most this: a store that does not answer fails open (nothing
        # suppressed, the card shown) and is then skipped for a while, so an outage slows no call noticeably.
        return SqlSuppressionSource(
            audit_reader.engine, settings.clinical, time_limit_seconds=HOOK_SUPPRESSION_TIME_LIMIT_SECONDS
        )
    return build_suppression_source(settings, audit_reader=audit_reader)


def build_order_session(settings: Settings) -> OrderSession:
    """What order-select showed, remembered for order-sign for ``order_session_ttl_seconds`` (this process)."""
    from hooks.orders import TtlOrderSession

    return TtlOrderSession(settings.order_session_ttl_seconds)


def build_hook_deps(
    settings: Settings,
    *,
    fhir: FhirReader,
    terminology: TerminologyService,
    clock: Clock = utc_now,
    id_factory: IdFactory = new_uuid,
    order_session: OrderSession | None = None,
    suppression_source: SuppressionSource | None = None,
) -> HookDeps:
    """Exactly what the hooks receive: these collaborators, the clinical settings and the rules page URL."""
    return HookDeps(
        fhir=fhir,
        terminology=terminology,
        clinical=settings.clinical,
        clock=clock,
        id_factory=id_factory,
        order_session=order_session or build_order_session(settings),
        rules_url=settings.public_base_url.rstrip("/") + RULES_PATH,
        suppression_source=suppression_source,
    )


def build_runtime(
    settings: Settings,
    *,
    fhir: FhirReader | None = None,
    terminology: TerminologyService | None = None,
    authenticate: Authenticator | None = None,
    fhir_guard: FhirServerGuard | None = None,
    audit_writer: AuditWriter | None = None,
    audit_reader: AuditReader | None = None,
    clock: Clock | None = None,
    id_factory: IdFactory | None = None,
) -> Runtime:
    """Every collaborator of the service: the given ones, and the configured real ones for the rest."""
    clock = clock or utc_now
    terminology = terminology or build_terminology(settings)
    if authenticate is None or fhir_guard is None:
        security = build_security(settings)
        authenticate = authenticate or security.authenticate
        fhir_guard = fhir_guard or security.fhir_guard
    if audit_writer is None:
        if settings.dev and settings.resolved_audit_url.startswith("sqlite"):
            # Development convenience: `mgcds serve --dev` just works. In production the schema is created by an
            # explicit `mgcds audit init`, and /readyz reports a store that was not.
            init_audit_schema(settings)
        audit_writer = build_audit_writer(settings)
    if audit_reader is None:
        from cds_service.audit.memory import InMemoryAuditLog

        # An in-memory log lives in this process only: its reader is itself.
        audit_reader = audit_writer if isinstance(audit_writer, InMemoryAuditLog) else build_audit_reader(settings)
    fhir = fhir or build_fhir_client(settings, fhir_guard)
    return Runtime(
        settings=settings,
        fhir=fhir,
        terminology=terminology,
        authenticate=authenticate,
        fhir_guard=fhir_guard,
        audit_writer=audit_writer,
        audit_reader=audit_reader,
        recorder=AuditRecorder(audit_writer, clock=clock),
        hook_deps=build_hook_deps(
            settings,
            fhir=fhir,
            terminology=terminology,
            clock=clock,
            id_factory=id_factory or new_uuid,
            suppression_source=_suppression_source(settings, audit_reader),
        ),
        clock=clock,
    )

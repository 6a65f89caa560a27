"""MgCDS: a CDS Hooks 2.0 service for magnesium depletion risk.

``create_app(settings)`` is the app factory (no module-level app): it chooses the real or in-memory implementation
of each collaborator and wires them; tests pass their own settings and collaborators.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from flask import Flask

from cds_service.config import Settings, load_settings
from cds_service.fhir.client import FhirClient
from cds_service.runtime import Authenticator, FhirServerGuard, Runtime, new_uuid, utc_now

log = logging.getLogger("mgcds")


def build_fhir_client(settings: Settings, guard: FhirServerGuard | None) -> FhirClient:
    """The process's one FHIR client, with the settings' timeouts, caps and cache."""
    return FhirClient(
        timeout_seconds=settings.fhir_timeout_seconds,
        page_cap=settings.fhir_page_cap,
        max_entries=settings.fhir_max_entries,
        cache_ttl_seconds=settings.fhir_cache_ttl_seconds,
        cache_size=settings.fhir_cache_size,
        max_concurrency=settings.fhir_max_concurrency,
        redirect_check=guard.check_redirect if guard is not None else None,
    )


def build_terminology(settings: Settings) -> Any:
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


def create_app(
    settings: Settings | None = None,
    *,
    audit_log: Any = None,
    fhir_client: FhirClient | None = None,
    terminology: Any = None,
    authenticate: Authenticator | None = None,
    fhir_guard: FhirServerGuard | None = None,
    clock: Callable[[], datetime] | None = None,
    id_factory: Callable[[], str] | None = None,
) -> Flask:
    """Build the Flask app from explicit settings (read from the environment when None)."""
    from cds_service.api import register_api
    from cds_service.logging import configure_logging, logging_configured
    from cds_service.recording import AuditRecorder
    from cds_service.security.wiring import build_security
    from hooks import build_registry

    settings = settings or load_settings()
    if not logging_configured():
        # Under any WSGI server (not only `mgcds serve`, which configures it first) log lines are the redacted JSON
        # of cds_service.logging, with only SAFE_FIELDS kept.
        configure_logging(settings.log_level)
    settings.instance_path.mkdir(parents=True, exist_ok=True)

    terminology = terminology or build_terminology(settings)
    if authenticate is None or fhir_guard is None:
        security = build_security(settings)
        authenticate = authenticate or security.authenticate
        fhir_guard = fhir_guard or security.fhir_guard
    guard = fhir_guard
    if audit_log is None:
        from cds_service.audit.log import init_audit_store, open_audit_log

        if settings.dev and settings.resolved_audit_url.startswith("sqlite"):
            # Development convenience: `mgcds serve --dev` just works. In production the schema is created by an
            # explicit `mgcds audit init`, and /readyz reports a store that was not.
            init_audit_store(settings.resolved_audit_url)
        audit_log = open_audit_log(settings.resolved_audit_url, settings.resolved_spool_path)

    runtime = Runtime(
        settings=settings,
        fhir_client=fhir_client or build_fhir_client(settings, guard),
        terminology=terminology,
        authenticate=authenticate,
        fhir_guard=guard,
        audit_log=audit_log,
        clock=clock or utc_now,
        id_factory=id_factory or new_uuid,
    )

    app = Flask(__name__, instance_path=str(settings.instance_path.resolve()))
    app.config.update(MAX_CONTENT_LENGTH=settings.max_body_bytes, JSON_SORT_KEYS=False)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["mgcds.settings"] = settings
    app.extensions["mgcds.runtime"] = runtime
    app.extensions["mgcds.services"] = build_registry(terminology.observation_search_codes())
    app.extensions["mgcds.audit_recorder"] = AuditRecorder(audit_log, clock=runtime.clock)
    register_api(app, settings)
    from cds_service.api.review import create_review_blueprint

    # The review page has its own credential, outside the EHR-facing JWT domain: EHR tokens never open it.
    app.register_blueprint(
        create_review_blueprint(
            audit_log,
            reviewer_token=settings.reviewer_token,
            reviewer_user=settings.reviewer_user,
            reviewer_password_hash=settings.reviewer_password_hash,
        )
    )
    if settings.dev and settings.trusted_issuers is None:
        log.warning("MgCDS is running in DEVELOPMENT MODE: callers are not authenticated. Never use it with PHI.")
    elif settings.dev:
        log.warning("MgCDS is running in DEVELOPMENT MODE: JWTs are checked, but http FHIR servers are allowed.")
    return app

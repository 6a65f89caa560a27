"""MgCDS: a CDS Hooks 2.0 service for magnesium depletion risk.

``create_app(settings)`` is the app factory (no module-level app): ``cds_service.factory`` chooses the real or
in-memory implementation of each collaborator; tests pass their own settings and collaborators.

Importing this package imports nothing else: Flask, the FHIR client and the audit store load inside
``create_app``, so ``import cds_service.engine`` (the pure engine) and ``import terminology`` stay cheap and pure.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only for the signature: importing Flask here would load it for every subpackage
    from flask import Flask

    from cds_service.config import Settings
    from cds_service.interfaces import (
        AuditReader,
        AuditWriter,
        Authenticator,
        Clock,
        FhirReader,
        FhirServerGuard,
        IdFactory,
        TerminologyService,
    )


def create_app(
    settings: Settings | None = None,
    *,
    audit_writer: AuditWriter | None = None,
    audit_reader: AuditReader | None = None,
    fhir_client: FhirReader | None = None,
    terminology: TerminologyService | None = None,
    authenticate: Authenticator | None = None,
    fhir_guard: FhirServerGuard | None = None,
    clock: Clock | None = None,
    id_factory: IdFactory | None = None,
) -> Flask:
    """Build the Flask app from explicit settings (read from the environment when None)."""
    import logging

    from flask import Flask

    from cds_service.api import register_api
    from cds_service.api.review import create_review_blueprint
    from cds_service.api.review_auth import AuthThrottle, DevReviewLink
    from cds_service.config import load_settings
    from cds_service.factory import build_runtime
    from cds_service.logging import configure_logging, logging_configured
    from hooks import build_registry

    settings = settings or load_settings()
    if not logging_configured():
        # Under any WSGI server (not only `mgcds serve`, which configures it first) log lines are the redacted JSON
        # of cds_service.logging, with only SAFE_FIELDS kept.
        configure_logging(settings.log_level)
    settings.instance_path.mkdir(parents=True, exist_ok=True)
    runtime = build_runtime(
        settings,
        fhir=fhir_client,
        terminology=terminology,
        authenticate=authenticate,
        fhir_guard=fhir_guard,
        audit_writer=audit_writer,
        audit_reader=audit_reader,
        clock=clock,
        id_factory=id_factory,
    )

    app = Flask(__name__, instance_path=str(settings.instance_path.resolve()))
    app.config.update(MAX_CONTENT_LENGTH=settings.max_body_bytes, JSON_SORT_KEYS=False)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["mgcds.settings"] = settings
    app.extensions["mgcds.runtime"] = runtime
    app.extensions["mgcds.services"] = build_registry(runtime.terminology.observation_search_codes())
    register_api(app, settings)
    # The review page has its own credential, outside the EHR-facing JWT domain: EHR tokens never open it. The
    # --dev link opens it too, in development mode only, whatever else is set.
    dev_link = (
        DevReviewLink(settings.dev_review_token, settings.instance_path)
        if settings.dev and settings.dev_review_token
        else None
    )
    app.register_blueprint(
        create_review_blueprint(
            runtime.audit_reader,
            reviewer_token=settings.reviewer_token,
            reviewer_user=settings.reviewer_user,
            reviewer_password_hash=settings.reviewer_password_hash,
            throttle=AuthThrottle(settings.reviewer_auth_client_limit, settings.reviewer_auth_global_limit),
            dev_link=dev_link,
        )
    )
    log = logging.getLogger("mgcds")
    if settings.dev and settings.trusted_issuers is None:
        log.warning("MgCDS is running in DEVELOPMENT MODE: callers are not authenticated. Never use it with PHI.")
    elif settings.dev:
        log.warning("MgCDS is running in DEVELOPMENT MODE: JWTs are checked, but http FHIR servers are allowed.")
    return app

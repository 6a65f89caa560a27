"""Health endpoints for load balancers and orchestrators."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, current_app, jsonify

from cds_service.errors import AuditStoreError
from cds_service.runtime import Runtime

log = logging.getLogger("mgcds.api")
bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """The process is up and serving."""
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    """Ready to take calls: the audit store is reachable (every call must be recorded)."""
    runtime: Runtime = current_app.extensions["mgcds.runtime"]
    try:
        # The writer's view: can records reach the store now (not whether a reader could read it).
        runtime.audit_writer.check_ready()
    except AuditStoreError as exc:
        log.warning("not ready: audit store: %s", exc)
        return jsonify({"status": "unavailable", "audit_store": "unreachable"}), 503
    return jsonify({"status": "ok", "audit_store": "ok"}), 200

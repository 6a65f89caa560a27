"""Health endpoints for load balancers and orchestrators."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, current_app, jsonify

from cds_service.audit.model import NOT_READY
from cds_service.runtime import Runtime

log = logging.getLogger("mgcds.api")
bp = Blueprint("health", __name__)
_LAST_STATUS = "mgcds.readyz.last_status"


@bp.get("/healthz")
def healthz() -> Response:
    """The process is up and serving."""
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    """Ready to take calls: each one can be recorded (spool, store), within about a second; degraded is still 200."""
    runtime: Runtime = current_app.extensions["mgcds.runtime"]
    # Every part is checked with its own time limit (cds_service.audit.readiness): this never holds the worker
    # thread for more than about a second, whatever the disk or the database does.
    readiness = runtime.audit_writer.readiness()
    if current_app.extensions.get(_LAST_STATUS) != readiness.status:
        current_app.extensions[_LAST_STATUS] = readiness.status
        parts = "; ".join(f"{c.name}: {c.detail}" for c in readiness.checks if c.status != "ok")
        if readiness.status != "ok":
            log.warning("readiness %s: %s", readiness.status, parts)
        else:
            log.info("readiness ok")
    status = 503 if any(c.status == NOT_READY for c in readiness.checks) else 200
    return jsonify(readiness.as_json()), status

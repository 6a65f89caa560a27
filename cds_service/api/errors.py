"""The one place where exceptions become CDS Hooks answers (DESIGN.md principle 5).

400 bad request, 401 bad JWT, 404 unknown service, 413 too large, 415 not JSON, 412 needed FHIR data unobtainable,
503 the call's audit record could not be made durable (with Retry-After; nothing of the call was recorded).
Anything unexpected is our bug: 500 with a generic body, logged with the request id, never the payload.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, g, jsonify
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from cds_service.errors import AuditNotDurable, ClientError, PrerequisiteFailed, Unauthorized

log = logging.getLogger("mgcds.api")

AUDIT_RETRY_AFTER_SECONDS = 30  # what a 503 for an unwritable audit spool suggests; /readyz says when it is back


def error_body(status: int, error: str, message: str, field: str | None = None) -> dict[str, Any]:
    """The JSON body of every error answer."""
    body: dict[str, Any] = {"error": error, "message": message, "status": status}
    if field:
        body["field"] = field
    return body


@dataclass(frozen=True)
class ErrorAnswer:
    """The error this request was answered with, as the handlers below made it (read by the audit recorder)."""

    status: int
    error: str
    message: str

    def describe(self) -> str:
        """``error: message``, as the audit record keeps it."""
        return f"{self.error}: {self.message}"


def error_answer() -> ErrorAnswer | None:
    """The error answer of the current request, if a handler below made one."""
    answer: ErrorAnswer | None = g.get("mgcds_answer")
    return answer


def _answer(status: int, error: str, message: str, field: str | None = None) -> tuple[Response, int]:
    g.mgcds_answer = ErrorAnswer(status, error, message)
    return jsonify(error_body(status, error, message, field)), status


def register_error_handlers(app: Flask) -> None:
    """Install the handlers on ``app``."""

    @app.errorhandler(Unauthorized)
    def _unauthorized(exc: Unauthorized) -> tuple[Response, int]:
        # The reason stays in the server log; the caller learns only that it is not trusted.
        log.warning("unauthorized call: %s", getattr(exc, "reason", exc.message))
        response, status = _answer(401, exc.error, "invalid or missing CDS Hooks JWT")
        response.headers["WWW-Authenticate"] = 'Bearer realm="mgcds"'
        return response, status

    @app.errorhandler(ClientError)
    def _client_error(exc: ClientError) -> tuple[Response, int]:
        return _answer(exc.status, exc.error, exc.message, exc.field)

    @app.errorhandler(AuditNotDurable)
    def _not_durable(exc: AuditNotDurable) -> tuple[Response, int]:
        # Fail closed: the answer would not be audited, so there is none; the EHR shows no card (the safe side
        # for advice) and may retry. The reason (a disk error) stays in the log; /readyz is not ready meanwhile.
        log.critical("call refused because its audit record could not be made durable: %s", exc)
        response, status = _answer(
            exc.status,
            exc.error,
            "the service cannot record this call in its audit log right now; nothing was recorded, retry later",
        )
        response.headers["Retry-After"] = str(AUDIT_RETRY_AFTER_SECONDS)
        return response, status

    @app.errorhandler(PrerequisiteFailed)
    def _prerequisite(exc: PrerequisiteFailed) -> tuple[Response, int]:
        return _answer(412, exc.error, exc.message, exc.cause)

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(exc: RequestEntityTooLarge) -> tuple[Response, int]:
        return _answer(413, "payload_too_large", "request body is larger than the configured limit")

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> tuple[Response, int]:
        status = exc.code or 500
        name = (exc.name or "error").lower().replace(" ", "_")
        response, code = _answer(status, name, exc.description or exc.name or "error")
        if status == 405 and exc.response is None:
            allowed = exc.get_headers()
            for key, value in allowed:
                if key.lower() == "allow":
                    response.headers["Allow"] = value
        return response, code

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> tuple[Response, int]:
        log.exception("unexpected error handling request %s", g.get("request_id", "-"))
        return _answer(500, "internal_error", "the service failed to handle this request; it has been logged")

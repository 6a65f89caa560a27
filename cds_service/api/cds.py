"""CDS Hooks endpoints: discovery, service invocation, feedback."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar

from flask import Blueprint, Response, current_app, jsonify, request
from flask.typing import ResponseReturnValue
from pydantic import BaseModel, ValidationError

from cds_service.api.body import read_json_body
from cds_service.api.errors import error_answer
from cds_service.audit.recorder import FeedbackCall, HookCall
from cds_service.cdshooks import (
    CardsResponse,
    FeedbackRequest,
    HookMismatch,
    parse_hook_request,
    validation_message,
)
from cds_service.engine.vocabulary import Hook
from cds_service.errors import BadRequest, FhirError, NotFound, PrerequisiteFailed
from cds_service.interfaces import HookDeps
from cds_service.runtime import Runtime
from cds_service.security.identity import CallerIdentity
from hooks import ServiceRegistry
from hooks.suppression import CallerSuppressions

log = logging.getLogger("mgcds.api")

bp = Blueprint("cds", __name__)
ModelT = TypeVar("ModelT", bound=BaseModel)


def _runtime() -> Runtime:
    runtime: Runtime = current_app.extensions["mgcds.runtime"]
    return runtime


def _registry() -> ServiceRegistry:
    registry: ServiceRegistry = current_app.extensions["mgcds.services"]
    return registry


def parse_body(model: type[ModelT], body: dict[str, Any]) -> ModelT:
    """Validate a JSON body against a wire model; 400 naming the first invalid field."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        field, message = validation_message(exc)
        raise BadRequest(message, field=field) from exc


def _audience(service_id: str, suffix: str = "") -> str:
    base = _runtime().settings.public_base_url.rstrip("/")
    return f"{base}/cds-services/{service_id}{suffix}"


def _authenticate(service_id: str, suffix: str = "") -> CallerIdentity | None:
    return _runtime().authenticate(request.headers.get("Authorization"), _audience(service_id, suffix))


@bp.get("/cds-services")
def discovery() -> Response:
    """CDS Hooks discovery: the services this endpoint offers."""
    return jsonify({"services": _registry().discovery()})


def _answer_recorded(
    call: HookCall | FeedbackCall, view: Callable[[], ResponseReturnValue]
) -> tuple[Response, str | None]:
    """Run ``view``; an exception becomes its answer through the app's one error handler. Returns the response and
    the error it answered (None for a success), having told ``call`` the status actually sent."""
    error: str | None = None
    try:
        response = current_app.make_response(view())
    except Exception as exc:
        # The registered handlers (api/errors.py) make the answer, exactly as Flask would; handling it here means
        # the audit record gets the status and error the client is about to receive.
        response = current_app.make_response(current_app.handle_user_exception(exc))
        answer = error_answer()
        error = answer.describe() if answer is not None else f"{response.status_code}: {type(exc).__name__}"
        if response.status_code >= 500:
            error += f" ({type(exc).__name__})"  # our bug: the type says what to look for in the log
        call.refused(response.status_code, error)
    call.answered(response.status_code)
    return response, error


@bp.post("/cds-services/<service_id>")
def invoke(service_id: str) -> Response:
    """Call a CDS service with a hook request; answer with cards."""
    with _runtime().recorder.hook_call(service_id) as call:
        response, error = _answer_recorded(call, lambda: _invoke(service_id, call))
        if error is not None:
            _log_refused(call, error)
        return response


def _invoke(service_id: str, call: HookCall) -> tuple[Response, int]:
    runtime = _runtime()
    service = _registry().get(service_id)
    if service is None:
        raise NotFound(f"no CDS service with id {service_id!r}", field="id")
    call.caller = _authenticate(service_id)
    body = read_json_body()
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object (a CDS Hooks request)", field="body")
    try:
        hook_request = parse_hook_request(body, Hook(service.definition.hook))
    except ValidationError as exc:
        field, message = validation_message(exc)
        raise BadRequest(message, field=field) from exc
    except HookMismatch as exc:
        raise BadRequest(f"{exc} (service {service_id!r})", field="hook") from exc
    call.request = hook_request
    if hook_request.fhirServer:
        # Refuse before any outbound request is made (SSRF): the guard raises FhirServerNotAllowed.
        try:
            runtime.fhir_guard.check(hook_request.fhirServer, call.caller)
        except FhirError as exc:
            # The guard resolves the host to vet its addresses; a name that does not resolve is a server we
            # cannot reach: the spec's answer for unobtainable data is 412.
            raise PrerequisiteFailed(f"fhirServer cannot be used: {exc.message}", cause="fhirServer") from exc
    outcome = service.handle(hook_request, _bound_deps(runtime.hook_deps, call.caller))
    response = CardsResponse.model_validate({"cards": outcome.cards})
    call.outcome = outcome
    call.suppressed = outcome.suppressed
    # Ids and timings only (DESIGN.md principle 9): never the patient, the values, the drugs or the tokens.
    log.info(
        "hook answered",
        extra={
            "event": "hook_answered",
            "service_id": service_id,
            "hookInstance": hook_request.hookInstance,
            "card_uuids": [card["uuid"] for card in outcome.cards],
            "card_count": len(outcome.cards),
            "status": 200,
            "duration_ms": round((time.perf_counter() - call.started) * 1000, 1),
        },
    )
    return jsonify(response.model_dump(mode="json", exclude_none=True)), 200


def _bound_deps(deps: HookDeps, caller: CallerIdentity | None) -> HookDeps:
    """This call's HookDeps: the suppressions of this caller's issuer and tenant (rules 7.5), so the hook never
    sees the caller itself."""
    if deps.suppression_source is None:
        return deps
    issuer, tenant = (caller.issuer, caller.tenant) if caller is not None else (None, None)
    return replace(deps, suppressions=CallerSuppressions(deps.suppression_source, issuer, tenant))


def _log_refused(call: HookCall, error: str) -> None:
    # The error code only: messages may name ids from the request; the audit log has the detail.
    refused: dict[str, Any] = {
        "event": "hook_refused",
        "service_id": call.service_id[:100],
        "status": call.status,
        "reason": error.split(":", 1)[0],
        "duration_ms": round((time.perf_counter() - call.started) * 1000, 1),
    }
    if call.request is not None:
        refused["hookInstance"] = call.request.hookInstance
    log.info("hook refused", extra=refused)


@bp.post("/cds-services/<service_id>/feedback")
def feedback(service_id: str) -> Response:
    """Receive the clinician's feedback on cards (accepted or overridden)."""
    with _runtime().recorder.feedback_call(service_id) as call:
        response, _ = _answer_recorded(call, lambda: _feedback(service_id, call))
        return response


def _feedback(service_id: str, call: FeedbackCall) -> tuple[Response, int]:
    if _registry().get(service_id) is None:
        raise NotFound(f"no CDS service with id {service_id!r}", field="id")
    call.caller = _authenticate(service_id, "/feedback")
    body = read_json_body()
    # Some EHRs send one feedback object instead of the spec's {"feedback": [...]}: accept both.
    if isinstance(body, dict) and "feedback" not in body and "card" in body:
        body = {"feedback": [body]}
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object with a feedback array", field="body")
    parsed = parse_body(FeedbackRequest, body)
    # All items in one durable write, or none (then 503): a retried feedback call is never recorded twice.
    _runtime().recorder.record_feedback_items(call, parsed.feedback)
    log.info(
        "feedback received",
        extra={
            "event": "feedback_received",
            "service_id": service_id,
            "count": len(parsed.feedback),
            "card_uuids": [item.card for item in parsed.feedback],
            "outcome": sorted({item.outcome for item in parsed.feedback}),
        },
    )
    return jsonify({"received": len(parsed.feedback)}), 200

"""The OpenAPI 3.1 document of the service (``GET /openapi.json``, served without authentication like discovery).

Request and response bodies come from the pydantic wire models in :mod:`cds_service.cdshooks`, so the document
cannot drift from what the service validates; each service's path narrows ``hook`` and ``context`` to what that
hook requires (CDS Hooks 2.0 hook library: patient-view, order-select, order-sign). Every error answer has the body
of :func:`cds_service.api.errors.error_body`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flask import Blueprint, Response, current_app, jsonify
from pydantic.json_schema import models_json_schema

from cds_service.cdshooks import CONTEXT_MODELS, CardsResponse, FeedbackRequest, HookRequest
from cds_service.engine.vocabulary import Hook

bp = Blueprint("openapi", __name__)

OPENAPI_VERSION = "3.1.0"
_REF = "#/components/schemas/{model}"
_JSON = "application/json"

_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Every error answer: a machine-readable code, a message safe to show, the HTTP status and, where "
    "one field is at fault, its dotted path.",
    "properties": {
        "error": {"type": "string", "minLength": 1},
        "message": {"type": "string", "minLength": 1},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "field": {"type": "string", "minLength": 1},
    },
    "required": ["error", "message", "status"],
    "additionalProperties": False,
}

_DISCOVERY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "services": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "hook": {"type": "string"},
                    "id": {"type": "string"},
                    "title": {"type": "string"},
                    "description": {"type": "string"},
                    "prefetch": {"type": "object", "additionalProperties": {"type": "string"}},
                    "usageRequirements": {"type": "string"},
                },
                "required": ["hook", "id", "description"],
            },
        }
    },
    "required": ["services"],
}

_HEALTH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"status": {"type": "string", "enum": ["ok"]}},
    "required": ["status"],
}

_READY_CHECK_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "status": {"type": "string", "enum": ["ok", "degraded", "not-ready"]},
        "detail": {"type": "string"},
    },
    "required": ["status", "detail"],
}

_READY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "status": {"type": "string", "enum": ["ok", "degraded", "unavailable"]},
        "audit_store": {"type": "string", "enum": ["ok", "unreachable"]},
        "not_ready": {"type": "array", "items": {"type": "string"}},
        "degraded": {"type": "array", "items": {"type": "string"}},
        "checks": {"type": "object", "additionalProperties": _READY_CHECK_SCHEMA},
    },
    "required": ["status", "audit_store", "not_ready", "degraded", "checks"],
}

_FEEDBACK_ANSWER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"received": {"type": "integer", "minimum": 1}},
    "required": ["received"],
    "additionalProperties": False,
}

_ERROR_DESCRIPTIONS = {
    "400": "Invalid request: malformed JSON, a field of the wrong type or missing, or a fhirServer this caller may "
    "not make us contact (error fhir_server_not_allowed)",
    "401": "Missing or invalid CDS Hooks JWT (generic body; the reason is only in the server log)",
    "404": "No CDS service with this id",
    "412": "Data the service needs could not be obtained (no prefetch and no usable fhirServer)",
    "413": "Request body larger than the configured limit",
    "415": "Request body is not JSON",
    "503": "The call could not be recorded in the audit log (its local spool refused the record): nothing was "
    "recorded and no card is given; retry after Retry-After seconds (GET /readyz says which part is not ready)",
}


def _error(status: str) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": _ERROR_DESCRIPTIONS[status],
        "content": {_JSON: {"schema": {"$ref": _REF.format(model="Error")}}},
    }
    if status == "401":
        answer["headers"] = {
            "WWW-Authenticate": {"schema": {"type": "string"}, "description": "Bearer challenge (RFC 6750)"}
        }
    if status == "503":
        answer["headers"] = {"Retry-After": {"schema": {"type": "string"}, "description": "seconds"}}
    return answer


def _ok(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {_JSON: {"schema": schema}}}


def _context_schema(hook: str) -> dict[str, Any]:
    """``context`` as ``hook`` requires it: the JSON schema of that hook's context model."""
    schema = CONTEXT_MODELS[Hook(hook)].model_json_schema()
    schema.pop("title", None)
    return schema


def _service_paths(service_id: str, hook: str, title: str) -> dict[str, Any]:
    secured: list[dict[str, list[str]]] = [{"cdsHooksJwt": []}]
    request_schema = {
        "allOf": [
            {"$ref": _REF.format(model="HookRequest")},
            {"type": "object", "properties": {"hook": {"const": hook}, "context": _context_schema(hook)}},
        ]
    }
    invoke = {
        "operationId": f"invoke-{service_id}",
        "summary": f"Call {title} ({hook})",
        "security": secured,
        "requestBody": {"required": True, "content": {_JSON: {"schema": request_schema}}},
        "responses": {
            "200": _ok("The cards (an empty list when nothing is actionable)", {"$ref": _REF.format(model="Cards")}),
            **{status: _error(status) for status in ("400", "401", "412", "413", "415", "503")},
        },
    }
    feedback = {
        "operationId": f"feedback-{service_id}",
        "summary": f"Feedback on the cards of {service_id}",
        "security": secured,
        "requestBody": {"required": True, "content": {_JSON: {"schema": {"$ref": _REF.format(model="Feedback")}}}},
        "responses": {
            "200": _ok("How many feedback items were recorded", _FEEDBACK_ANSWER_SCHEMA),
            **{status: _error(status) for status in ("400", "401", "413", "415", "503")},
        },
    }
    return {
        f"/cds-services/{service_id}": {"post": invoke},
        f"/cds-services/{service_id}/feedback": {"post": feedback},
    }


def _component_schemas() -> dict[str, Any]:
    refs, definitions = models_json_schema(
        [(HookRequest, "validation"), (CardsResponse, "serialization"), (FeedbackRequest, "validation")],
        ref_template=_REF,
    )
    schemas: dict[str, Any] = dict(definitions.get("$defs", {}))
    schemas["Cards"] = refs[(CardsResponse, "serialization")]
    schemas["Feedback"] = refs[(FeedbackRequest, "validation")]
    schemas["Error"] = _ERROR_SCHEMA
    return schemas


def build_openapi(services: Iterable[tuple[str, str, str]], *, version: str) -> dict[str, Any]:
    """The OpenAPI document for the services given as (id, hook, title)."""
    service_list = list(services)
    known_ids = [service_id for service_id, _, _ in service_list]
    paths: dict[str, Any] = {
        "/cds-services": {
            "get": {
                "operationId": "discovery",
                "summary": "CDS Hooks discovery",
                "security": [],
                "responses": {"200": _ok("The services this endpoint offers", _DISCOVERY_SCHEMA)},
            }
        }
    }
    for service_id, hook, title in service_list:
        paths.update(_service_paths(service_id, hook, title))
    # Any other id: answered 404 before authentication (an unknown id reveals nothing and needs no token).
    paths["/cds-services/{service_id}"] = {
        "post": {
            "operationId": "invoke-unknown-service",
            "summary": "A service id this endpoint does not offer",
            "security": [],
            "parameters": [
                {
                    "name": "service_id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$", "not": {"enum": known_ids}},
                }
            ],
            "requestBody": {"required": True, "content": {_JSON: {"schema": {"type": "object"}}}},
            "responses": {"404": _error("404")},
        }
    }
    paths["/healthz"] = {
        "get": {
            "operationId": "healthz",
            "summary": "Liveness",
            "security": [],
            "responses": {"200": _ok("The process is serving", _HEALTH_SCHEMA)},
        }
    }
    paths["/readyz"] = {
        "get": {
            "operationId": "readyz",
            "summary": "Readiness: calls can be recorded (spool, store), with the backlog and the quarantine",
            "security": [],
            "responses": {
                "200": _ok("Ready", _READY_SCHEMA),
                "503": _ok("Not ready: calls could not be audited (`not_ready` names the parts)", _READY_SCHEMA),
            },
        }
    }
    paths["/openapi.json"] = {
        "get": {
            "operationId": "openapi",
            "summary": "This document",
            "security": [],
            "responses": {"200": _ok("The OpenAPI document", {"type": "object"})},
        }
    }
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "MgCDS",
            "version": version,
            "description": "CDS Hooks 2.0 service: Magnesium Depletion Score and magnesium result interpretation.",
        },
        "paths": paths,
        "components": {
            "schemas": _component_schemas(),
            "securitySchemes": {
                "cdsHooksJwt": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "CDS Hooks 2.0 'Trusting CDS Clients': a JWT signed by the EHR (ES384 or RS384), "
                    "aud = this endpoint's public URL",
                }
            },
        },
    }


@bp.get("/openapi.json")
def openapi_document() -> Response:
    """The OpenAPI document (built once per app, then reused)."""
    document = current_app.extensions.get("mgcds.openapi")
    if document is None:
        from importlib.metadata import PackageNotFoundError
        from importlib.metadata import version as package_version

        try:
            version = package_version("mgcds")
        except PackageNotFoundError:  # running from a source tree that was not installed
            version = "0.0.0"
        registry = current_app.extensions["mgcds.services"]
        services = [(s.definition.id, s.definition.hook, s.definition.title) for s in registry]
        document = build_openapi(services, version=version)
        current_app.extensions["mgcds.openapi"] = document
    return jsonify(document)

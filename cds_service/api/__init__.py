"""The HTTP layer: the only code that imports flask (blueprints, models, error handlers, CORS)."""

from __future__ import annotations

import uuid

from flask import Flask, Response, g, request

from cds_service.api.errors import register_error_handlers
from cds_service.config import Settings

# Headers a browser-based EHR sends with a CDS Hooks call (CDS Hooks 2.0 "Cross-Origin Resource Sharing").
CORS_ALLOW_HEADERS = "Authorization, Content-Type, Accept, Origin, X-Requested-With"
CORS_ALLOW_METHODS = "GET, POST, OPTIONS"
CORS_MAX_AGE_SECONDS = "86400"


def _apply_cors(response: Response, settings: Settings) -> Response:
    origin = request.headers.get("Origin")
    if not origin:
        return response
    allowed = settings.cors_origins
    if "*" in allowed:
        response.headers["Access-Control-Allow-Origin"] = "*"
    elif origin in allowed:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers.add("Vary", "Origin")
    else:
        return response  # not an allowed origin: no CORS headers, the browser blocks the response
    response.headers["Access-Control-Expose-Headers"] = "Content-Type"
    if request.method == "OPTIONS":
        response.headers["Access-Control-Allow-Methods"] = CORS_ALLOW_METHODS
        response.headers["Access-Control-Allow-Headers"] = CORS_ALLOW_HEADERS
        response.headers["Access-Control-Max-Age"] = CORS_MAX_AGE_SECONDS
    return response


def register_api(app: Flask, settings: Settings) -> None:
    """Mount the blueprints, the error handlers and the cross-cutting request hooks."""
    from cds_service.api.cds import bp as cds_bp
    from cds_service.api.health import bp as health_bp
    from cds_service.api.openapi import bp as openapi_bp
    from cds_service.api.rules_page import install as install_rules_page

    app.register_blueprint(cds_bp)
    app.register_blueprint(health_bp)
    app.register_blueprint(openapi_bp)
    install_rules_page(app)  # every card's source.url; public, it holds no patient data
    if settings.bench_floor:
        from cds_service.api.bench_floor import bp as bench_floor_bp

        app.register_blueprint(bench_floor_bp)
    register_error_handlers(app)

    @app.before_request
    def _preflight() -> Response | None:
        g.request_id = request.headers.get("X-Request-Id") or str(uuid.uuid4())
        if request.method == "OPTIONS":
            # Answer CORS preflights before authentication: browsers send them without credentials.
            return Response(status=204)
        return None

    @app.after_request
    def _headers(response: Response) -> Response:
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Request-Id"] = g.get("request_id", "-")
        return _apply_cors(response, settings)

"""The benchmark's floor: an endpoint that does only what every hook call must do before our own work.

Mounted only when ``Settings.bench_floor`` is true (``MGCDS_BENCH_FLOOR=1``, never by default): it reads and
parses the request body exactly as the CDS endpoints do and answers a fixed card, so the benchmark can tell the
cost of Flask, gunicorn and JSON from the cost of MgCDS's own work (bench/run.py, docs/performance.md).
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from cds_service.api.body import read_json_body
from cds_service.errors import BadRequest

FLOOR_PATH = "/bench/floor"

_FIXED_CARD = {
    "uuid": "00000000-0000-4000-8000-000000000000",
    "summary": "Benchmark floor: a fixed card",
    "indicator": "info",
    "source": {"label": "MgCDS benchmark floor"},
}

bp = Blueprint("bench_floor", __name__)


@bp.post(FLOOR_PATH)
def floor() -> tuple[Response, int]:
    """Parse the JSON body like a hook call, then answer one fixed card."""
    body = read_json_body()
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object", field="body")
    return jsonify({"cards": [_FIXED_CARD]}), 200

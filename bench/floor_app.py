"""The framework floor of the benchmark: a bare Flask app under the same gunicorn configuration as `mgcds serve`.

    .venv/bin/python -m bench.floor_app --port 8090          # what bench/run.py starts for scenario F

It answers ``POST /cds-services/<id>`` by parsing the JSON body with Flask's own ``request.get_json()`` and sending
one fixed card: what any Flask CDS service pays before its own work. The server is configured by the same function
as the service (`cds_service.cli.serve.gunicorn_options`: worker class, workers, threads, connection cap,
SO_REUSEPORT, timeouts), from the same MGCDS_ variables, so service and floor differ only in the app.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from flask import Flask, Response, abort, jsonify, request

PROJECT_ROOT = Path(__file__).resolve().parents[1]
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

FIXED_CARD = {
    "uuid": "00000000-0000-4000-8000-000000000000",
    "summary": "Benchmark floor: a fixed card",
    "indicator": "info",
    "source": {"label": "MgCDS benchmark floor"},
}


def create_floor_app() -> Flask:
    """The bare Flask app: parse the body, answer a fixed card."""
    app = Flask("mgcds_floor")

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify({"status": "ok"})

    @app.post("/cds-services/<service_id>")
    def hook(service_id: str) -> Response:
        body = request.get_json()
        if not isinstance(body, dict):
            abort(400)
        return jsonify({"cards": [FIXED_CARD]})

    return app


def main(argv: list[str] | None = None) -> int:
    """Serve the floor app under gunicorn with the service's own server configuration."""
    from gunicorn.app.base import BaseApplication

    from cds_service.cli.serve import gunicorn_options
    from cds_service.config import load_settings

    parser = argparse.ArgumentParser(prog="bench/floor_app.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    overrides: dict[str, object] = {"host": args.host, "port": args.port}
    if args.workers is not None:
        overrides["workers"] = args.workers
    if args.threads is not None:
        overrides["threads"] = args.threads
    settings = load_settings().with_overrides(**overrides)
    options = gunicorn_options(settings)
    options.pop("control_socket", None)
    options["control_socket_disable"] = True  # the floor needs none, and must not take the service's path

    class FloorApplication(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for name, value in options.items():
                self.cfg.set(name, value)

        def load(self) -> Any:
            return create_floor_app()

    FloorApplication().run()
    return 0


if __name__ == "__main__":
    sys.exit(main())

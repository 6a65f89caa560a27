"""How tests run a small HTTP server on 127.0.0.1: a quiet JSON handler base, connection counting, clean stop."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class JsonHandler(BaseHTTPRequestHandler):
    """A request handler that answers JSON and keeps the test output quiet."""

    def send_json(self, status: int, body: Any, content_type: str = "application/json") -> None:
        """Answer ``body`` (JSON-encoded unless already bytes) with ``status``."""
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the http.server API
        return


@contextmanager
def serve_on_loopback(
    handler: type[BaseHTTPRequestHandler], on_connection: Callable[[], None] | None = None
) -> Iterator[int]:
    """Serve ``handler`` on a free 127.0.0.1 port (yielded); ``on_connection`` runs for every accepted connection."""

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def get_request(self) -> Any:
            accepted = super().get_request()
            if on_connection is not None:
                on_connection()
            return accepted

    server = Server(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

"""A loopback HTTP proxy that forwards to a FHIR server, or misbehaves on command, for the fault tests.

Rules are (regex on "path?query", fault) pairs; the first matching rule decides; no match forwards.
Every request is counted. Faults the real server cannot produce (a looping ``next`` link, 10,000 entries,
malformed JSON) are made up here; the others mimic what real FHIR servers answer::

    with FaultProxy(upstream=fhir_server.base_url) as proxy:
        proxy.add_rule(r"^/Patient/", Fault.NOT_FOUND)
        proxy.add_rule(r"^/Observation\\?", Fault.DELAY, delay_seconds=10)
        ... point the service at proxy.base_url ...
        assert proxy.count(r"^/Observation") == 1
"""

from __future__ import annotations

import json
import re
import socket
import threading
from dataclasses import dataclass
from enum import StrEnum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests

FHIR_JSON = "application/fhir+json"
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "content-encoding"}


class Fault(StrEnum):
    """What the proxy does with a matching request."""

    FORWARD = "forward"
    DELAY = "delay"  # wait delay_seconds, then forward (or answer with then_fault)
    DROP = "drop"  # close the connection without an answer (what a crashed server looks like)
    UNAUTHORIZED = "401"
    FORBIDDEN = "403"
    NOT_FOUND = "404"
    SERVER_ERROR = "500"
    MALFORMED_JSON = "malformed-json"
    OPERATION_OUTCOME = "operation-outcome"  # 200 with an OperationOutcome where a Bundle was expected
    LOOPING_NEXT = "looping-next"  # the upstream Bundle with a `next` link pointing at this very request
    HUGE_BUNDLE = "huge-bundle"  # a searchset of `entries` resources (10,000 by default)


@dataclass(frozen=True)
class Rule:
    """One rule: requests whose "path?query" matches ``pattern`` get ``fault``."""

    pattern: re.Pattern[str]
    fault: Fault
    delay_seconds: float = 0.0
    entries: int = 10_000
    then_fault: Fault = Fault.FORWARD


def refused_url() -> str:
    """A loopback URL on which nothing listens: connecting to it is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # The socket was never listening and is now closed; the OS does not hand the port out again at once.
    return f"http://127.0.0.1:{port}"


def operation_outcome(code: str, text: str) -> dict[str, Any]:
    """A one-issue error OperationOutcome."""
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "diagnostics": text}],
    }


class FaultProxy:
    """The proxy: ``base_url`` for clients, ``add_rule``/``clear_rules``, ``count`` and ``requests``."""

    def __init__(self, upstream: str | None = None, timeout_seconds: float = 30.0) -> None:
        self.upstream = upstream.rstrip("/") if upstream else None
        self.timeout_seconds = timeout_seconds
        self._rules: list[Rule] = []
        self._requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._session = requests.Session()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        # Handler threads may be sleeping in a DELAY: do not make shutdown wait for them.
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fault-proxy", daemon=True
        )

    def start(self) -> FaultProxy:
        """Start serving in a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port; wakes any request sleeping in a DELAY."""
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._session.close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def add_rule(
        self,
        pattern: str,
        fault: Fault,
        *,
        delay_seconds: float = 0.0,
        entries: int = 10_000,
        then_fault: Fault = Fault.FORWARD,
    ) -> None:
        """Apply ``fault`` to requests whose "path?query" matches the regex ``pattern`` (first rule wins)."""
        with self._lock:
            self._rules.append(Rule(re.compile(pattern), fault, delay_seconds, entries, then_fault))

    def clear_rules(self) -> None:
        """Forward everything again."""
        with self._lock:
            self._rules.clear()

    @property
    def requests(self) -> list[tuple[str, str]]:
        """(method, "path?query") of every request received, in order."""
        with self._lock:
            return list(self._requests)

    def count(self, pattern: str | None = None) -> int:
        """How many requests were received (only those matching the regex ``pattern`` if given)."""
        regex = re.compile(pattern) if pattern else None
        return sum(1 for _, target in self.requests if regex is None or regex.search(target))

    def reset_counts(self) -> None:
        """Forget the requests received so far."""
        with self._lock:
            self._requests.clear()

    def _match(self, method: str, target: str) -> Rule | None:
        with self._lock:
            self._requests.append((method, target))
            return next((rule for rule in self._rules if rule.pattern.search(target)), None)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                proxy._handle(self, "GET")

            def do_POST(self) -> None:
                proxy._handle(self, "POST")

            def do_PUT(self) -> None:
                proxy._handle(self, "PUT")

            def do_DELETE(self) -> None:
                proxy._handle(self, "DELETE")

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
                """Silence the per-request stderr log."""

        return Handler

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        rule = self._match(method, handler.path)
        fault = rule.fault if rule else Fault.FORWARD
        if rule and fault is Fault.DELAY:
            if self._stopping.wait(rule.delay_seconds):
                return
            fault = rule.then_fault
        if fault is Fault.DROP:
            handler.close_connection = True
            handler.connection.shutdown(socket.SHUT_RDWR)
            return
        status, content_type, payload = self._answer(handler, method, body, fault, rule)
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", content_type)
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (its timeout fired during a DELAY): nothing left to answer.
            handler.close_connection = True

    def _answer(
        self, handler: BaseHTTPRequestHandler, method: str, body: bytes, fault: Fault, rule: Rule | None
    ) -> tuple[int, str, bytes]:
        canned: dict[Fault, tuple[int, dict[str, Any]]] = {
            Fault.UNAUTHORIZED: (401, operation_outcome("login", "token expired")),
            Fault.FORBIDDEN: (403, operation_outcome("forbidden", "insufficient scope")),
            Fault.NOT_FOUND: (404, operation_outcome("not-found", "resource not found")),
            Fault.SERVER_ERROR: (500, operation_outcome("exception", "internal server error")),
            Fault.OPERATION_OUTCOME: (200, operation_outcome("too-costly", "search refused")),
        }
        if fault in canned:
            status, resource = canned[fault]
            return status, FHIR_JSON, json.dumps(resource).encode()
        if fault is Fault.MALFORMED_JSON:
            return 200, FHIR_JSON, b'{"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": '
        if fault is Fault.HUGE_BUNDLE:
            entries = rule.entries if rule else 10_000
            return 200, FHIR_JSON, json.dumps(self._huge_bundle(handler.path, entries)).encode()
        status, content_type, payload = self._forward(handler, method, body)
        if fault is Fault.LOOPING_NEXT:
            payload = json.dumps(self._with_self_next_link(handler.path, payload)).encode()
        return status, content_type, payload

    def _forward(self, handler: BaseHTTPRequestHandler, method: str, body: bytes) -> tuple[int, str, bytes]:
        if self.upstream is None:
            return (
                502,
                FHIR_JSON,
                json.dumps(operation_outcome("transient", "no upstream configured")).encode(),
            )
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in HOP_BY_HOP}
        try:
            response = self._session.request(
                method,
                self.upstream + handler.path,
                headers=headers,
                data=body or None,
                timeout=self.timeout_seconds,
            )
        except requests.RequestException as exc:
            return (
                502,
                FHIR_JSON,
                json.dumps(operation_outcome("transient", f"upstream failed: {exc}")).encode(),
            )
        # Absolute URLs the upstream puts in its answers must point back through the proxy.
        payload = response.content.replace(self.upstream.encode(), self.base_url.encode())
        return response.status_code, response.headers.get("Content-Type", FHIR_JSON), payload

    def _with_self_next_link(self, target: str, payload: bytes) -> dict[str, Any]:
        try:
            bundle: dict[str, Any] = json.loads(payload)
        except ValueError:
            bundle = {}
        if bundle.get("resourceType") != "Bundle":
            bundle = {"resourceType": "Bundle", "type": "searchset", "entry": []}
        links = [link for link in bundle.get("link", []) if link.get("relation") != "next"]
        bundle["link"] = [*links, {"relation": "next", "url": self.base_url + target}]
        return bundle

    def _huge_bundle(self, target: str, entries: int) -> dict[str, Any]:
        parts = urlsplit(target)
        resource_type = parts.path.strip("/").split("/")[0] or "Observation"
        patient = (parse_qs(parts.query).get("patient") or parse_qs(parts.query).get("subject") or ["unknown"])[0]
        reference = patient if "/" in patient else f"Patient/{patient}"
        resources = [
            {
                "resourceType": resource_type,
                "id": f"bulk-{index}",
                "subject": {"reference": reference},
                "code": {"text": "bulk filler"},
                # Valid for Observation only; other types get no status so no filler claims to be current.
                **({"status": "final"} if resource_type == "Observation" else {}),
            }
            for index in range(entries)
        ]
        return {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": entries,
            "entry": [
                {
                    "fullUrl": f"{self.base_url}/{resource_type}/{r['id']}",
                    "resource": r,
                    "search": {"mode": "match"},
                }
                for r in resources
            ],
        }

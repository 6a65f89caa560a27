"""A small real HTTP server on 127.0.0.1 that plays a FHIR server for edge cases (statuses, tokens, paging).

Routes are matched by resource type and answered from resources given by the test; every request is logged with
its path and Authorization header so tests can assert what the service fetched and with which token.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.support.loopback import JsonHandler, serve_on_loopback

Responder = Callable[[str, dict[str, list[str]]], tuple[int, Any]]


@dataclass
class FhirPeer:
    """State of the fake server: resources by type, overrides by path prefix, and the request log."""

    base_url: str = ""
    resources: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    overrides: dict[str, Responder] = field(default_factory=dict)
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    token: str | None = None

    def add(self, *resources: dict[str, Any]) -> None:
        """Store resources (by resourceType)."""
        for resource in resources:
            self.resources.setdefault(resource["resourceType"], []).append(resource)

    def paths(self) -> list[str]:
        """The paths requested so far."""
        return [path for path, _ in self.requests]

    def answer(self, path: str, authorization: str | None) -> tuple[int, Any]:
        self.requests.append((path, authorization))
        split = urlsplit(path)
        query = parse_qs(split.query)
        route = split.path.removeprefix("/fhir")
        for prefix, responder in self.overrides.items():
            if route.startswith(prefix):
                return responder(route, query)
        if self.token is not None and authorization != f"Bearer {self.token}":
            return 401, {
                "resourceType": "OperationOutcome",
                "issue": [{"severity": "error", "code": "login"}],
            }
        parts = [p for p in route.split("/") if p]
        if len(parts) == 2:
            for resource in self.resources.get(parts[0], []):
                if resource.get("id") == parts[1]:
                    return 200, resource
            return 404, {
                "resourceType": "OperationOutcome",
                "issue": [{"severity": "error", "code": "not-found"}],
            }
        if len(parts) == 1:
            matches = self.resources.get(parts[0], [])
            return 200, {
                "resourceType": "Bundle",
                "type": "searchset",
                "total": len(matches),
                "entry": [{"resource": r, "search": {"mode": "match"}} for r in matches],
            }
        return 404, {"resourceType": "OperationOutcome"}


@contextmanager
def running_peer() -> Iterator[FhirPeer]:
    """Start a FhirPeer on a free loopback port; stop it afterwards."""
    peer = FhirPeer()

    class Handler(JsonHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            status, body = peer.answer(self.path, self.headers.get("Authorization"))
            self.send_json(status, body, "application/fhir+json")

    with serve_on_loopback(Handler) as port:
        peer.base_url = f"http://127.0.0.1:{port}/fhir"
        yield peer

"""The fault proxy itself, against a tiny local upstream (fast, no Node), and once through the real server."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from tests.integration.conftest import FhirTestServer
from tests.integration.fault_proxy import Fault, FaultProxy, refused_url


class _Upstream(BaseHTTPRequestHandler):
    """Answers every GET with a one-entry searchset naming the path, and records the Authorization header."""

    protocol_version = "HTTP/1.1"
    seen_auth: list[str | None] = []

    def do_GET(self) -> None:
        type(self).seen_auth.append(self.headers.get("Authorization"))
        body = json.dumps(
            {
                "resourceType": "Bundle",
                "type": "searchset",
                "entry": [{"resource": {"resourceType": "Basic", "id": "1"}}],
                "link": [
                    {
                        "relation": "self",
                        "url": f"http://127.0.0.1:{self.server.server_address[1]}{self.path}",
                    }
                ],
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/fhir+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Quiet."""


@pytest.fixture
def upstream() -> Iterator[str]:
    """A tiny upstream HTTP server on 127.0.0.1."""
    _Upstream.seen_auth = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def proxy(upstream: str) -> Iterator[FaultProxy]:
    """A fault proxy in front of the tiny upstream."""
    with FaultProxy(upstream=upstream) as running:
        yield running


def test_forwards_with_headers_and_rewrites_upstream_urls(proxy: FaultProxy) -> None:
    response = requests.get(f"{proxy.base_url}/Observation?patient=1", headers={"Authorization": "Bearer t"}, timeout=5)
    assert response.status_code == 200
    assert _Upstream.seen_auth == ["Bearer t"]
    assert response.json()["link"][0]["url"] == f"{proxy.base_url}/Observation?patient=1"


@pytest.mark.parametrize(
    ("fault", "status"),
    [(Fault.UNAUTHORIZED, 401), (Fault.FORBIDDEN, 403), (Fault.NOT_FOUND, 404), (Fault.SERVER_ERROR, 500)],
)
def test_error_statuses_carry_an_operation_outcome(proxy: FaultProxy, fault: Fault, status: int) -> None:
    proxy.add_rule(r"^/Patient/", fault)
    response = requests.get(f"{proxy.base_url}/Patient/1", timeout=5)
    assert response.status_code == status
    assert response.json()["resourceType"] == "OperationOutcome"
    # Only the matching path misbehaves.
    assert requests.get(f"{proxy.base_url}/Observation", timeout=5).status_code == 200


def test_rules_match_per_path_and_requests_are_counted(proxy: FaultProxy) -> None:
    proxy.add_rule(r"^/Observation\?", Fault.OPERATION_OUTCOME)
    assert requests.get(f"{proxy.base_url}/Observation?code=x", timeout=5).json()["resourceType"] == "OperationOutcome"
    assert requests.get(f"{proxy.base_url}/Condition?patient=1", timeout=5).json()["resourceType"] == "Bundle"
    assert proxy.count() == 2
    assert proxy.count(r"^/Observation") == 1
    assert proxy.requests == [("GET", "/Observation?code=x"), ("GET", "/Condition?patient=1")]
    proxy.clear_rules()
    assert requests.get(f"{proxy.base_url}/Observation?code=x", timeout=5).json()["resourceType"] == "Bundle"


def test_malformed_json_is_not_parseable(proxy: FaultProxy) -> None:
    proxy.add_rule(".", Fault.MALFORMED_JSON)
    response = requests.get(f"{proxy.base_url}/Observation", timeout=5)
    assert response.status_code == 200
    with pytest.raises(ValueError, match=r"."):
        response.json()


def test_looping_next_link_points_at_the_same_request(proxy: FaultProxy) -> None:
    proxy.add_rule(".", Fault.LOOPING_NEXT)
    url = f"{proxy.base_url}/Observation?patient=1&_count=5"
    bundle = requests.get(url, timeout=5).json()
    next_links = [link["url"] for link in bundle["link"] if link["relation"] == "next"]
    assert next_links == [url]


def test_huge_bundle_has_the_requested_number_of_entries(proxy: FaultProxy) -> None:
    proxy.add_rule(".", Fault.HUGE_BUNDLE)
    bundle = requests.get(f"{proxy.base_url}/MedicationRequest?patient=42", timeout=10).json()
    assert len(bundle["entry"]) == 10_000
    assert bundle["entry"][0]["resource"]["subject"]["reference"] == "Patient/42"
    assert bundle["entry"][0]["resource"]["resourceType"] == "MedicationRequest"


def test_delay_holds_the_answer_past_a_client_timeout(proxy: FaultProxy) -> None:
    proxy.add_rule(".", Fault.DELAY, delay_seconds=1.0)
    started = time.monotonic()
    with pytest.raises(requests.Timeout):
        requests.get(f"{proxy.base_url}/Observation", timeout=0.3)
    assert 0.25 < time.monotonic() - started < 1.0
    started = time.monotonic()
    assert requests.get(f"{proxy.base_url}/Observation", timeout=5).status_code == 200
    assert time.monotonic() - started >= 1.0


def test_drop_closes_the_connection_without_an_answer(proxy: FaultProxy) -> None:
    proxy.add_rule(".", Fault.DROP)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{proxy.base_url}/Patient/1", timeout=5)


def test_refused_url_refuses() -> None:
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{refused_url()}/metadata", timeout=5)


@pytest.mark.integration
def test_forwards_to_the_real_fhir_server_with_its_token(fhir_server: FhirTestServer) -> None:
    with FaultProxy(upstream=fhir_server.base_url) as proxy:
        created = fhir_server.post({"resourceType": "Patient", "gender": "other"})
        read = requests.get(
            f"{proxy.base_url}/Patient/{created['id']}",
            headers={"Authorization": f"Bearer {fhir_server.token}"},
            timeout=5,
        )
        assert read.status_code == 200
        assert read.json()["id"] == created["id"]
        assert requests.get(f"{proxy.base_url}/Patient/{created['id']}", timeout=5).status_code == 401

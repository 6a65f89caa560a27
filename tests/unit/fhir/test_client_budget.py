"""Issue 16 B6 and the cache bound: one deadline and one byte allowance per hook call, a cache bounded by bytes.

The servers are real (tests/support/hostile_fhir.py): one that dribbles a byte every 0.2 s defeats any per-read
socket timeout (5 s here), so only the call's deadline can end the read. Budgets are short (1-1.5 s) and each
assertion allows a second of slack for a loaded machine; the dribble itself would run for 30 s.
"""

from __future__ import annotations

import gc
import json
import time
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest

from cds_service.errors import FhirBudgetExhausted
from cds_service.fhir.client import FhirClient
from cds_service.fhir.egress import OperatorEgress
from tests.support.hostile_fhir import HostileHandler, HostileServer, hostile_server

pytestmark = pytest.mark.timeout(60)

SLACK_SECONDS = 1.0


@pytest.fixture
def server() -> Iterator[HostileServer]:
    with hostile_server() as s:
        yield s


def _client(**kwargs: Any) -> FhirClient:
    kwargs.setdefault("timeout_seconds", 5)
    kwargs.setdefault("cache_ttl_seconds", 0)
    return FhirClient(egress=OperatorEgress(), **kwargs)


def _elapsed(started: float) -> float:
    return time.monotonic() - started


@pytest.mark.parametrize("where", ["body", "headers"])
def test_b6_a_dribbling_answer_is_cut_at_the_calls_deadline(server: HostileServer, where: str) -> None:
    """B6: one byte every 2 s held a call for 120 s (the 5 s timeout is per read, and every read gets a byte)."""
    if where == "body":
        server.routes["/fhir/Patient"] = lambda handler: handler.dribble_body(0.2)
    else:
        server.routes["/fhir/Patient"] = lambda handler: handler.dribble_headers(0.2)
    client = _client(call_budget_seconds=1.0)
    try:
        started = time.monotonic()
        with pytest.raises(FhirBudgetExhausted, match="time budget"):
            client.read(server.base_url, "Patient/p1", "t")
        assert _elapsed(started) < 1.0 + SLACK_SECONDS
    finally:
        client.close()
    assert len(server.requests) == 1  # a budget that ran out is not retried


def test_all_reads_of_one_call_share_the_deadline(server: HostileServer) -> None:
    def slow(handler: HostileHandler) -> None:
        time.sleep(0.6)
        handler.send_json(200, {"resourceType": "Patient", "id": "p1"})

    server.routes["/fhir/Patient"] = slow
    client = _client(call_budget_seconds=1.0)
    try:
        call = client.for_call()
        assert call.read(server.base_url, "Patient/p1", "t")["id"] == "p1"  # 0.6 s of the 1 s
        with pytest.raises(FhirBudgetExhausted):
            call.read(server.base_url, "Patient/p2", "t")  # would end at 1.2 s: cut at 1 s
        assert client.for_call().read(server.base_url, "Patient/p3", "t")["id"] == "p1"  # a new call, a new budget
    finally:
        client.close()


def test_a_search_cut_by_the_deadline_keeps_the_pages_it_has(server: HostileServer) -> None:
    first = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": {"resourceType": "Observation", "id": "o1"}}],
        "link": [{"relation": "next", "url": server.base_url + "/Observation?page=2"}],
    }

    def pages(handler: HostileHandler) -> None:
        if "page=2" in handler.path:
            handler.dribble_body(0.2)
        else:
            handler.send_json(200, first)

    server.routes["/fhir/Observation"] = pages
    client = _client(call_budget_seconds=1.0, cache_ttl_seconds=60)
    try:
        result = client.search(server.base_url, "Observation?patient=p1", "t")
        assert [r["id"] for r in result.resources] == ["o1"]
        assert result.truncated == "stopped: the call's FHIR time budget ran out"
        # A result the budget cut short is this call's bad luck, not the cached answer for the next call.
        server.routes["/fhir/Observation"] = lambda handler: handler.send_json(200, {**first, "link": []})
        again = client.search(server.base_url, "Observation?patient=p1", "t")
        assert (again.truncated, [r["id"] for r in again.resources]) == (None, ["o1"])
    finally:
        client.close()
    assert server.paths().count("/fhir/Observation?patient=p1") == 2


def test_the_byte_allowance_is_shared_by_the_calls_reads(server: HostileServer) -> None:
    """Bytes, like time, are counted per call: two 600 kB answers do not fit a 1 MB allowance."""
    body = json.dumps({"resourceType": "Patient", "id": "p1", "text": {"div": "x" * 600_000}}).encode()
    server.routes["/fhir/Patient"] = lambda handler: handler.send_json(200, body)
    client = _client(call_max_bytes=1_000_000)
    try:
        call = client.for_call()
        call.read(server.base_url, "Patient/p1", "t")
        with pytest.raises(FhirBudgetExhausted, match="byte allowance"):
            call.read(server.base_url, "Patient/p2", "t")
    finally:
        client.close()


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "close-delimited"])
def test_an_answer_larger_than_the_allowance_is_refused_without_holding_it(
    server: HostileServer, declared: bool
) -> None:
    def huge(handler: HostileHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/fhir+json")
        if declared:
            handler.send_header("Content-Length", str(50 * 1024 * 1024))
        handler.send_header("Connection", "close")
        handler.end_headers()
        chunk = b" " * 65536
        for _ in range(800):  # 50 MB at most; the client hangs up long before
            if server.stop.is_set():
                return
            try:
                handler.wfile.write(chunk)
            except OSError:
                return
        handler.close_connection = True

    server.routes["/fhir/Patient"] = huge
    client = _client(call_max_bytes=1_000_000)
    try:
        with pytest.raises(FhirBudgetExhausted, match="byte allowance"):
            client.read(server.base_url, "Patient/p1", "t")
    finally:
        client.close()


def _resource_server(server: HostileServer, size: int) -> None:
    def resource(handler: HostileHandler) -> None:
        resource_id = handler.path.rsplit("/", 1)[1]
        # Many small elements, as a real Bundle: parsed, they take several times their bytes.
        items = [{"system": "http://loinc.org", "code": f"{i}-{resource_id}"} for i in range(size // 60)]
        handler.send_json(200, {"resourceType": "Observation", "id": resource_id, "code": {"coding": items}})

    server.routes["/fhir/Observation"] = resource


def test_the_cache_is_bounded_by_bytes_not_only_by_entries(server: HostileServer) -> None:
    """Also-item: a worker reached 3.5 GB caching 45 MB pages from a hostile server (2048 entries, no byte bound)."""
    _resource_server(server, 200_000)
    client = _client(cache_ttl_seconds=600, cache_size=2048, cache_max_bytes=2_000_000)
    try:
        gc.collect()
        tracemalloc.start()
        baseline = tracemalloc.get_traced_memory()[0]
        for i in range(60):  # 60 distinct 200 kB answers: 12 MB as received, about six times that parsed
            client.read(server.base_url, f"Observation/o{i}", "t")
        gc.collect()
        retained = tracemalloc.get_traced_memory()[0] - baseline
        tracemalloc.stop()
        assert client.cache_bytes() <= 2_000_000
        # What the cache keeps is about 2 MB of JSON, some 12 MB parsed. Without the byte bound all 60 answers stayed
        # (12 MB of JSON, over 60 MB parsed).
        assert retained < 25_000_000, retained
        client.read(server.base_url, "Observation/o59", "t")  # the newest is still cached
        client.read(server.base_url, "Observation/o0", "t")  # the oldest was evicted: read again
    finally:
        client.close()
    assert len(server.requests) == 61
    assert server.paths()[-1] == "/fhir/Observation/o0"


def test_an_answer_too_large_for_the_cache_is_not_cached(server: HostileServer) -> None:
    _resource_server(server, 400_000)
    client = _client(cache_ttl_seconds=600, cache_max_bytes=2_000_000)  # nothing over 250 kB (an eighth) is kept
    try:
        client.read(server.base_url, "Observation/big", "t")
        client.read(server.base_url, "Observation/big", "t")
        assert client.cache_bytes() == 0
    finally:
        client.close()
    assert server.paths() == ["/fhir/Observation/big", "/fhir/Observation/big"]

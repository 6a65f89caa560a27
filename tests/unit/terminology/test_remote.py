"""Remote lookup: the real RxNav and FHIR clients against a fake peer on 127.0.0.1.

The peer's codes 9990000xx are deliberately not real RxNorm codes: they exist only in this fake server, so
the local value sets cannot know them and the remote path is exercised.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import requests

from terminology import CodeRef, FhirTerminologyLookup, RxNavLookup, Terminology, load_terminology

from .conftest import RXNORM

Route = Callable[[dict[str, list[str]]], tuple[int, Any]]


class FakePeer:
    """A tiny HTTP server answering from a route table and counting requests per path."""

    def __init__(self, routes: dict[str, Route]) -> None:
        self.routes = routes
        self.hits: dict[str, int] = {}
        peer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                url = urlparse(self.path)
                peer.hits[url.path] = peer.hits.get(url.path, 0) + 1
                route = peer.routes.get(url.path)
                status, body = route(parse_qs(url.query)) if route else (404, {"error": "not found"})
                payload = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and left: expected in the timeout test

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        # Do not wait at close for a handler still sleeping in the timeout tests.
        self.server.block_on_close = False
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"


def slow(seconds: float, answer: tuple[int, Any]) -> Route:
    def route(_: dict[str, list[str]]) -> tuple[int, Any]:
        time.sleep(seconds)
        return answer

    return route


def fixed(status: int, body: Any) -> Route:
    return lambda _: (status, body)


FUROSEMIDE_RELATED = {
    "relatedGroup": {
        "rxcui": "999000001",
        "conceptGroup": [
            {"tty": "IN", "conceptProperties": [{"rxcui": "4603", "name": "furosemide", "tty": "IN"}]},
            {"tty": "PIN"},
        ],
    }
}
COMBO_RELATED = {
    "relatedGroup": {
        "conceptGroup": [
            {
                "tty": "IN",
                "conceptProperties": [
                    {"rxcui": "29046", "name": "lisinopril", "tty": "IN"},
                    {"rxcui": "5487", "name": "hydrochlorothiazide", "tty": "IN"},
                ],
            }
        ]
    }
}


@pytest.fixture
def peer() -> Iterator[FakePeer]:
    """A fake RxNav + FHIR terminology server."""
    fake = FakePeer(
        {
            "/REST/rxcui/999000001/related.json": fixed(200, FUROSEMIDE_RELATED),
            "/REST/rxcui/999000002/related.json": fixed(500, {"error": "boom"}),
            "/REST/rxcui/999000003/related.json": slow(1.5, (200, FUROSEMIDE_RELATED)),
            "/REST/rxcui/999000004/related.json": fixed(200, "<html>not json</html>"),
            "/REST/rxcui/999000005/related.json": fixed(200, {"relatedGroup": {"conceptGroup": [{"tty": "IN"}]}}),
            "/REST/rxcui/999000006/related.json": fixed(200, COMBO_RELATED),
        }
    )
    fake.thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()
    fake.thread.join(timeout=5)


@pytest.fixture
def session() -> Iterator[requests.Session]:
    """One requests.Session, closed afterwards."""
    with requests.Session() as s:
        yield s


@pytest.fixture
def rxnav(peer: FakePeer, session: requests.Session) -> RxNavLookup:
    return RxNavLookup(peer.url, session, timeout=0.3, cache_ttl=300)


@pytest.fixture
def term_rxnav(rxnav: RxNavLookup) -> Terminology:
    return load_terminology(remote=rxnav)


def test_unknown_product_resolved_by_rxnav(term_rxnav: Terminology, peer: FakePeer) -> None:
    result = term_rxnav.classify_medication([CodeRef(RXNORM, "999000001", "Furosemide 40 MG Oral Tablet")])
    assert [i.name for i in result.ingredients] == ["furosemide"]
    assert result.ingredients[0].matched_by == "remote RxNorm 999000001 -> furosemide -> furosemide"
    assert result.notes == ()
    assert peer.hits == {"/REST/rxcui/999000001/related.json": 1}


def test_answers_are_cached(term_rxnav: Terminology, peer: FakePeer, rxnav: RxNavLookup) -> None:
    for _ in range(3):
        term_rxnav.classify_medication([CodeRef(RXNORM, "999000001", None)])
    assert peer.hits["/REST/rxcui/999000001/related.json"] == 1
    assert rxnav.calls == 1


def test_multi_ingredient_remote_answer_counts_each_known_ingredient(term_rxnav: Terminology) -> None:
    result = term_rxnav.classify_medication([CodeRef(RXNORM, "999000006", None)])
    assert [i.name for i in result.ingredients] == ["hydrochlorothiazide"]


def test_local_codes_never_reach_the_peer(term_rxnav: Terminology, peer: FakePeer) -> None:
    term_rxnav.classify_medication([CodeRef(RXNORM, "315971", "Lasix 40mg")])
    assert peer.hits == {}


def test_server_error_falls_back_to_text_with_a_note(term_rxnav: Terminology) -> None:
    result = term_rxnav.classify_medication([CodeRef(RXNORM, "999000002", None)], "Lasix 20 mg")
    assert [i.name for i in result.ingredients] == ["furosemide"]
    assert result.ingredients[0].matched_by == "text 'Lasix' -> furosemide"
    assert result.notes == (
        "remote terminology could not resolve RxNorm 999000002 (unreachable or unknown)",
        "matched by text only",
    )


def test_timeout_is_time_boxed(term_rxnav: Terminology, rxnav: RxNavLookup) -> None:
    start = time.perf_counter()
    result = term_rxnav.classify_medication([CodeRef(RXNORM, "999000003", None)], "Prilosec")
    elapsed = time.perf_counter() - start
    assert elapsed < 1.2  # timeout 0.3 s; the peer would take 1.5 s
    assert [i.name for i in result.ingredients] == ["omeprazole"]
    assert "could not resolve RxNorm 999000003" in result.notes[0]
    # The failure is remembered briefly: the next request does not wait again.
    start = time.perf_counter()
    assert rxnav.ingredients_for(RXNORM, "999000003") is None
    assert time.perf_counter() - start < 0.1


def test_garbage_answer_is_a_failure(rxnav: RxNavLookup) -> None:
    assert rxnav.ingredients_for(RXNORM, "999000004") is None


def test_known_code_without_ingredients_is_an_empty_answer(rxnav: RxNavLookup) -> None:
    assert rxnav.ingredients_for(RXNORM, "999000005") == ()


def test_rxnav_is_only_asked_about_rxnorm(rxnav: RxNavLookup, peer: FakePeer) -> None:
    assert rxnav.ingredients_for("http://hl7.org/fhir/sid/ndc", "00000000000") is None
    assert peer.hits == {}


def test_unreachable_server_fails_open(session: requests.Session) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    lookup = RxNavLookup(f"http://127.0.0.1:{port}", session, timeout=0.5, cache_ttl=60)
    term = load_terminology(remote=lookup)
    result = term.classify_medication([CodeRef(RXNORM, "999000001", None)], "Nexium 40 mg")
    assert [i.name for i in result.ingredients] == ["esomeprazole"]
    assert result.notes[0].startswith("remote terminology could not resolve")


def test_nothing_found_anywhere_keeps_the_note(term_rxnav: Terminology) -> None:
    result = term_rxnav.classify_medication([CodeRef(RXNORM, "999000002", None)], "Unknown Product 5 mg")
    assert result.ingredients == ()
    assert len(result.notes) == 1


# ---- FHIR terminology server -------------------------------------------------------------------------

LOOKUP_OMEPRAZOLE = {
    "resourceType": "Parameters",
    "parameter": [
        {"name": "display", "valueString": "omeprazole 20 MG Oral Capsule (fake)"},
        {
            "name": "property",
            "part": [
                {"name": "code", "valueCode": "ingredient"},
                {"name": "value", "valueCoding": {"system": RXNORM, "code": "7646", "display": "omeprazole"}},
            ],
        },
    ],
}
LOOKUP_NO_INGREDIENTS = {"resourceType": "Parameters", "parameter": [{"name": "display", "valueString": "x"}]}
TRANSLATE_PANTOPRAZOLE = {
    "resourceType": "Parameters",
    "parameter": [
        {"name": "result", "valueBoolean": True},
        {
            "name": "match",
            "part": [
                {"name": "equivalence", "valueCode": "equivalent"},
                {
                    "name": "concept",
                    "valueCoding": {"system": RXNORM, "code": "40790", "display": "pantoprazole"},
                },
            ],
        },
    ],
}


def fhir_routes(lookup: Route, translate: Route) -> dict[str, Route]:
    return {"/fhir/CodeSystem/$lookup": lookup, "/fhir/ConceptMap/$translate": translate}


def test_fhir_lookup_reads_ingredient_properties(peer: FakePeer, session: requests.Session) -> None:
    seen: dict[str, list[str]] = {}

    def lookup(query: dict[str, list[str]]) -> tuple[int, Any]:
        seen.update(query)
        return 200, LOOKUP_OMEPRAZOLE

    peer.routes.update(fhir_routes(lookup, fixed(404, {})))
    client = FhirTerminologyLookup(peer.url + "/fhir", session, timeout=0.5, cache_ttl=60)
    term = load_terminology(remote=client)
    result = term.classify_medication([CodeRef(RXNORM, "999000010", None)])
    assert [i.name for i in result.ingredients] == ["omeprazole"]
    assert seen["system"] == [RXNORM]
    assert seen["code"] == ["999000010"]


def test_fhir_translate_when_lookup_has_no_ingredients(peer: FakePeer, session: requests.Session) -> None:
    peer.routes.update(fhir_routes(fixed(200, LOOKUP_NO_INGREDIENTS), fixed(200, TRANSLATE_PANTOPRAZOLE)))
    client = FhirTerminologyLookup(peer.url + "/fhir", session, timeout=0.5, cache_ttl=60)
    assert client.ingredients_for("http://example.org/local-formulary", "PANTO40") == (("40790", "pantoprazole"),)


def test_fhir_errors_and_outcomes_fail_open(peer: FakePeer, session: requests.Session) -> None:
    outcome = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "not-found"}]}
    peer.routes.update(fhir_routes(fixed(404, outcome), fixed(500, outcome)))
    client = FhirTerminologyLookup(peer.url + "/fhir", session, timeout=0.5, cache_ttl=60)
    assert client.ingredients_for(RXNORM, "999000011") is None
    peer.routes.update(fhir_routes(fixed(200, outcome), fixed(200, outcome)))
    assert client.ingredients_for(RXNORM, "999000012") is None


def test_fhir_timeout(peer: FakePeer, session: requests.Session) -> None:
    peer.routes.update(fhir_routes(slow(1.5, (200, LOOKUP_OMEPRAZOLE)), fixed(404, {})))
    client = FhirTerminologyLookup(peer.url + "/fhir", session, timeout=0.3, cache_ttl=60)
    start = time.perf_counter()
    assert client.ingredients_for(RXNORM, "999000013") is None
    assert time.perf_counter() - start < 1.2

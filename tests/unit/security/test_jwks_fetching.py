"""Issue 16 B5: JWKS fetching cannot be turned against us, with real JWKS servers on 127.0.0.1.

- A slow issuer delays only its own callers (one lock per URL, not one for all): 12.6 s instead of 4 ms before.
- A failing JWKS URL is fetched at most once per interval, the failure cached with a backoff like a success
  (tokens naming an issuer whose JWKS answers 500 made one fetch each).
- A JWKS server that dribbles cannot hold a fetch past its timeout.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import requests

from cds_service.errors import KeysUnavailable
from cds_service.security.jwks import FIRST_FAILURE_BACKOFF_SECONDS, JwksSource
from tests.support.hostile_fhir import HostileHandler, HostileServer, hostile_server
from tests.unit.security.conftest import SigningKey, jwks_of

pytestmark = pytest.mark.timeout(60)


class Clock:
    """A settable monotonic clock."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def slow() -> Iterator[HostileServer]:
    with hostile_server() as s:
        yield s


@pytest.fixture
def fast() -> Iterator[HostileServer]:
    with hostile_server() as s:
        yield s


def test_b5_a_slow_issuer_delays_only_its_own_callers(
    slow: HostileServer, fast: HostileServer, es384_key: SigningKey
) -> None:
    def stall(handler: HostileHandler) -> None:
        time.sleep(2.0)
        handler.send_json(200, jwks_of(es384_key))

    slow.routes["/jwks"] = stall
    fast.routes["/jwks"] = lambda handler: handler.send_json(200, jwks_of(es384_key))
    source = JwksSource(requests.Session(), timeout_seconds=5)
    stalled = threading.Thread(target=source.find_key, args=(slow.origin + "/jwks", es384_key.kid))
    stalled.start()
    deadline = time.monotonic() + 5
    while not slow.requests and time.monotonic() < deadline:  # until the slow fetch is in flight
        time.sleep(0.01)
    started = time.monotonic()
    assert source.find_key(fast.origin + "/jwks", es384_key.kid) is not None
    elapsed = time.monotonic() - started
    stalled.join(timeout=10)
    assert slow.requests, "the slow fetch was in flight"
    assert elapsed < 1.0, f"the other issuer's caller waited {elapsed:.2f} s behind the slow one"


def test_callers_of_one_url_share_one_fetch(slow: HostileServer, es384_key: SigningKey) -> None:
    def stall(handler: HostileHandler) -> None:
        time.sleep(0.5)
        handler.send_json(200, jwks_of(es384_key))

    slow.routes["/jwks"] = stall
    source = JwksSource(requests.Session(), timeout_seconds=5)
    found: list[object] = []
    threads = [
        threading.Thread(target=lambda: found.append(source.find_key(slow.origin + "/jwks", es384_key.kid)))
        for _ in range(10)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len(found) == 10
    assert all(key is not None for key in found)
    assert len(slow.requests) == 1


def test_b5_a_failing_jwks_url_is_fetched_once_per_interval_with_backoff(slow: HostileServer) -> None:
    slow.routes["/jwks"] = lambda handler: handler.send_json(500, {"error": "down"})
    clock = Clock()
    source = JwksSource(requests.Session(), timeout_seconds=5, min_refresh_interval_seconds=60, clock=clock)
    url = slow.origin + "/jwks"
    for _ in range(20):  # twenty forged tokens naming this issuer, at the same moment
        with pytest.raises(KeysUnavailable, match="HTTP 500"):
            source.find_key(url, "any-kid")
    assert len(slow.requests) == 1  # the failure is cached: one fetch, nineteen immediate refusals

    # The backoff doubles from FIRST_FAILURE_BACKOFF_SECONDS: 2 s, 4 s, 8 s, ... up to the refresh interval.
    fetches_at: list[float] = []
    for _ in range(200):  # 200 s of one attempt per second
        clock.now += 1
        before = len(slow.requests)
        with pytest.raises(KeysUnavailable):
            source.find_key(url, "any-kid")
        if len(slow.requests) > before:
            fetches_at.append(clock.now - 1000)
    gaps = [later - earlier for earlier, later in zip([0.0, *fetches_at], fetches_at, strict=False)]
    assert gaps[:5] == [FIRST_FAILURE_BACKOFF_SECONDS * 2**i for i in range(5)]
    assert max(gaps) == 60  # at most one fetch a minute once it keeps failing
    assert gaps[-1] == 60


def test_a_recovered_jwks_url_is_used_after_its_backoff(slow: HostileServer, es384_key: SigningKey) -> None:
    answers = {"status": 500}
    slow.routes["/jwks"] = lambda handler: handler.send_json(
        answers["status"], jwks_of(es384_key) if answers["status"] == 200 else {}
    )
    clock = Clock()
    source = JwksSource(requests.Session(), timeout_seconds=5, clock=clock)
    url = slow.origin + "/jwks"
    with pytest.raises(KeysUnavailable):
        source.find_key(url, es384_key.kid)
    answers["status"] = 200
    with pytest.raises(KeysUnavailable):
        source.find_key(url, es384_key.kid)  # still within the backoff: not fetched
    clock.now += FIRST_FAILURE_BACKOFF_SECONDS
    assert source.find_key(url, es384_key.kid) is not None
    assert len(slow.requests) == 2


def test_a_failed_refresh_keeps_the_keys_still_within_their_ttl(slow: HostileServer, es384_key: SigningKey) -> None:
    """A refresh for an unknown kid that fails does not throw away the set that verifies today's tokens."""
    answers = {"status": 200}
    slow.routes["/jwks"] = lambda handler: handler.send_json(answers["status"], jwks_of(es384_key))
    clock = Clock()
    source = JwksSource(requests.Session(), timeout_seconds=5, min_refresh_interval_seconds=60, clock=clock)
    url = slow.origin + "/jwks"
    assert source.find_key(url, es384_key.kid) is not None
    answers["status"] = 500
    clock.now += 61
    assert source.find_key(url, "rotated-kid") is None  # refreshed (and failed)
    assert source.find_key(url, es384_key.kid) is not None  # the cached set still serves
    assert len(slow.requests) == 2


def test_a_dribbling_jwks_server_cannot_hold_the_fetch_past_its_timeout(slow: HostileServer) -> None:
    slow.routes["/jwks"] = lambda handler: handler.dribble_body(0.1, length=10_000)
    source = JwksSource(requests.Session(), timeout_seconds=1)
    started = time.monotonic()
    with pytest.raises(KeysUnavailable, match="too slow"):
        source.find_key(slow.origin + "/jwks", "kid")
    assert time.monotonic() - started < 2.5  # the timeout in total, plus at most one read's timeout


@pytest.mark.parametrize("failure", ["stall", "hang-up"])
def test_a_key_server_failing_mid_body_is_keys_unavailable_not_a_crash(slow: HostileServer, failure: str) -> None:
    """A read timeout or a short body in the middle of the JWK Set is a refusal (401), never an exception (500)."""

    def broken(handler: HostileHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", "1000")
        handler.end_headers()
        handler.wfile.write(b'{"keys": [')
        handler.wfile.flush()
        if failure == "stall":
            slow.stop.wait(3)
        handler.close_connection = True

    slow.routes["/jwks"] = broken
    source = JwksSource(requests.Session(), timeout_seconds=1)
    with pytest.raises(KeysUnavailable, match="unreachable"):
        source.find_key(slow.origin + "/jwks", "kid")

"""Issue 19 R3/R4 and issue 16 B8 against a real PostgreSQL behind a TCP proxy that refuses or blackholes.

PostgreSQL runs on 127.0.0.1:5432 (trust auth, database ``test``); each test gets its own schema. Every wait is
bounded; the proxy listens on 127.0.0.1 only.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from cds_service import create_app
from cds_service.audit.store import SqlAuditStore, init_audit_store
from cds_service.audit.suppression import SqlSuppressionSource
from cds_service.audit.writer import open_audit_writer
from cds_service.config import Settings
from cds_service.engine.settings import ClinicalSettings
from tests.functional.conftest import EXAMPLE_NOW, load_example
from tests.integration.tcp_proxy import Mode, TcpProxy
from tests.support.audit import runtime_of
from tests.unit.audit.helpers import make_call, postgres_schema

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

PV = "/cds-services/mg-patient-view"
TIME_LIMIT = 2.0  # the store's time limit in these tests (MGCDS_AUDIT_STORE_TIMEOUT_SECONDS; 10 s by default)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """An initialised audit store in a fresh PostgreSQL schema."""
    with postgres_schema() as url:
        init_audit_store(url)
        yield url


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    """A TCP proxy in front of the local PostgreSQL."""
    with TcpProxy(5432) as running:
        yield running


def _through(url: str, proxy: TcpProxy) -> str:
    return url.replace("127.0.0.1:5432/", f"127.0.0.1:{proxy.port}/")


def _stored(url: str) -> list[str]:
    store = SqlAuditStore(url)
    try:
        return [row["record_id"] for row in store.iter_rows()]
    finally:
        store.dispose()


def _verify(url: str) -> bool:
    store = SqlAuditStore(url)
    try:
        return store.verify().ok
    finally:
        store.dispose()


def _wait_for(condition: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"not within {seconds} s")


def test_a_blackholed_store_hangs_neither_the_calls_nor_readyz_and_loses_nothing(
    pg_url: str, proxy: TcpProxy, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(
        dev=True,
        instance_path=tmp_path / "instance",
        audit_url=_through(pg_url, proxy),
        audit_store_timeout_seconds=TIME_LIMIT,
        public_base_url="http://localhost",
    )
    app = create_app(settings, clock=lambda: EXAMPLE_NOW)
    client = app.test_client()
    request = load_example("patient-view-request.json")
    answered: list[str] = []
    try:
        for _ in range(5):
            assert client.post(PV, json=request).status_code == 200
        assert runtime_of(app).audit_writer.flush(10)
        assert client.get("/readyz").status_code == 200

        proxy.set_mode(Mode.BLACKHOLE)
        blackholed = time.time()  # log records carry wall-clock times
        call_times = []
        with caplog.at_level(logging.ERROR, logger="mgcds.audit"):
            for _ in range(20):
                started = time.monotonic()
                assert client.post(PV, json=request).status_code == 200  # durable in the spool: care goes on
                call_times.append(time.monotonic() - started)
            ready_times, bodies = [], []
            for _ in range(5):
                started = time.monotonic()
                ready = client.get("/readyz")
                ready_times.append(time.monotonic() - started)
                bodies.append(ready.get_json())
                assert ready.status_code == 503
            # An error line within seconds of the stall, not after the kernel's 15 minutes.
            _wait_for(lambda: "took longer than 2.0 s" in caplog.text, TIME_LIMIT + 3)
            logged = next(r for r in caplog.records if "took longer than 2.0 s" in r.getMessage())
            stalled = logged.created - blackholed
        assert stalled < TIME_LIMIT + 3
        assert max(ready_times) < 1.0, ready_times
        assert all(body["not_ready"] == ["store"] for body in bodies)
        assert len([t for t in threading.enumerate() if t.name == "mgcds-readyz-store"]) <= 1
        assert max(call_times) < 0.5, call_times

        # The suppression query on the hook path gives up too (fail open: nothing suppressed).
        source = SqlSuppressionSource.open(settings.resolved_audit_url, ClinicalSettings())
        later = EXAMPLE_NOW + timedelta(days=1)
        started = time.monotonic()
        assert source.active(None, None, "example-mg-1", later) == []
        suppression_wait = time.monotonic() - started
        started = time.monotonic()
        assert source.active(None, None, "example-mg-1", later) == []  # the next calls do not wait again
        suppression_next = time.monotonic() - started
        source.close()
        assert suppression_wait < 3.0  # a new connection's 2 s connect timeout (or the 1 s query limit)
        assert suppression_next < 0.05

        proxy.set_mode(Mode.FORWARD)
        assert runtime_of(app).audit_writer.flush(30), "the backlog did not drain once the store was back"
        answered = _stored(pg_url)
        assert len(answered) == 25  # every call answered 200 ...
        assert len(set(answered)) == 25  # ... exactly once
        assert _verify(pg_url)
        assert client.get("/readyz").status_code == 200
        print(
            f"blackholed store: hook call max {max(call_times) * 1000:.1f} ms, /readyz max "
            f"{max(ready_times) * 1000:.0f} ms, stall logged after {stalled:.1f} s, suppression query gave up "
            f"after {suppression_wait:.2f} s, then {suppression_next * 1000:.2f} ms"
        )
    finally:
        proxy.set_mode(Mode.FORWARD)
        runtime_of(app).close()


def test_a_refusing_store_is_reported_at_once_and_the_spool_replays(
    pg_url: str, proxy: TcpProxy, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    writer = open_audit_writer(
        _through(pg_url, proxy), tmp_path / "spool.jsonl", asynchronous=True, time_limit_seconds=TIME_LIMIT
    )
    try:
        first = [writer.record_call(make_call(minutes=i)) for i in range(3)]
        assert writer.flush(10)
        proxy.set_mode(Mode.REFUSE)
        with caplog.at_level(logging.ERROR, logger="mgcds.audit"):
            started = time.monotonic()
            during = [writer.record_call(make_call(minutes=10 + i)) for i in range(10)]
            assert time.monotonic() - started < 1.0
            _wait_for(lambda: "audit store unavailable" in caplog.text, 3.0)
        started = time.monotonic()
        readiness = writer.readiness()
        assert time.monotonic() - started < 1.0
        assert readiness.as_json()["not_ready"] == ["store"]
        proxy.set_mode(Mode.FORWARD)
        assert writer.flush(30)
    finally:
        proxy.set_mode(Mode.FORWARD)
        writer.close()
    assert _stored(pg_url) == [*first, *during]
    assert _verify(pg_url)


def test_what_the_api_refuses_and_what_postgresql_cannot_hold(pg_url: str, tmp_path: Path) -> None:
    # Issue 16, B8, through HTTP on PostgreSQL: each of these once answered 200 and stopped the store for good.
    settings = Settings(
        dev=True, instance_path=tmp_path / "instance", audit_url=pg_url, public_base_url="http://localhost"
    )
    app = create_app(settings, clock=lambda: EXAMPLE_NOW)
    client = app.test_client()
    try:
        item = {"card": "c" * 100, "outcome": "overridden", "outcomeTimestamp": "2026-11-21T12:05:00Z"}
        long_card = client.post(PV + "/feedback", json={"feedback": [item]})
        assert (long_card.status_code, long_card.get_json()["field"]) == (400, "feedback.0.card")
        request = load_example("patient-view-request.json")
        raw = json.dumps(request).replace('"example-mg-1"', '"example\\u0000mg-1"', 1).encode()
        nul = client.post(PV, data=raw, content_type="application/json")
        assert (nul.status_code, nul.get_json()["field"]) == (400, "context.patientId")
        unknown = client.post("/cds-services/" + "x" * 300, json=request)
        assert unknown.status_code == 404
        good = client.post(PV, json=request)
        assert good.status_code == 200
        assert runtime_of(app).audit_writer.flush(10), "a refused request's record held the store up"
        stored = list(runtime_of(app).audit_reader.iter_records())
        assert [r.payload["http_status"] for r in stored] == [400, 400, 404, 200]
        assert len(stored[2].payload["service_id"]) == 128  # the unknown id, cut to its column
        body = client.get("/readyz").get_json()
        assert (body["status"], body["checks"]["quarantine"]["records"]) == ("ok", 0)
    finally:
        runtime_of(app).close()
    assert _verify(pg_url)

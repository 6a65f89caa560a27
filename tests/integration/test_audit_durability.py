"""Issue 19 on real systems: a tiny file system, a 60 MB spool drained under a memory bound, two instances with the
feedback first on one PostgreSQL, and gunicorn workers that close the log and do not share a control socket.

Bounded in count and time; network on 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from cds_service import create_app
from cds_service.audit.entries import make_entry
from cds_service.audit.records import AuditEventType, call_to_payload
from cds_service.audit.store import SqlAuditStore, init_audit_store
from cds_service.audit.suppression import SqlSuppressionSource
from cds_service.audit.writer import open_audit_writer
from cds_service.config import Settings
from cds_service.factory import build_suppression_source
from tests.conftest import PROJECT_ROOT
from tests.functional.conftest import EXAMPLE_NOW, load_example
from tests.integration.tcp_proxy import Mode, TcpProxy
from tests.support.audit import runtime_of
from tests.unit.audit.helpers import make_call, postgres_schema

pytestmark = [pytest.mark.integration]

PV = "/cds-services/mg-patient-view"
MB = 1024 * 1024


# --- R1/R2 on a real, tiny file system ------------------------------------------------------------------------------


@contextlib.contextmanager
def tiny_filesystem(path: Path, size_kib: int) -> Iterator[Path]:
    """A size-limited tmpfs mounted at ``path`` (root only); skips when mounting is not possible here."""
    path.mkdir(parents=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a size-limited tmpfs needs root; the injected short writes cover this elsewhere")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_kib}k,mode=0700", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()}); the injected short writes cover this")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False, timeout=30)


def test_a_full_spool_file_system_answers_503_and_loses_no_answered_call(tmp_path: Path) -> None:
    with tiny_filesystem(tmp_path / "spool-fs", 256) as spool_dir:
        settings = Settings(
            dev=True,
            instance_path=tmp_path / "instance",
            audit_spool_path=spool_dir / "audit-spool.jsonl",
            audit_spool_min_free_bytes=0,  # let the disk itself refuse, not the readiness margin
            public_base_url="http://localhost",
        )
        # The store is not initialised yet (the writer is given, so --dev does not create it): every record stays
        # in the spool until the disk is full.
        writer = open_audit_writer(
            settings.resolved_audit_url, settings.resolved_spool_path, min_free_bytes=0, asynchronous=True
        )
        app = create_app(settings, audit_writer=writer, clock=lambda: EXAMPLE_NOW)
        client = app.test_client()
        request = load_example("patient-view-request.json")
        statuses = []
        try:
            for _ in range(200):  # about 8 KiB per record: 256 KiB is full well before that
                response = client.post(PV, json=request)
                statuses.append(response.status_code)
                if response.status_code == 503:
                    assert response.get_json()["error"] == "audit_unavailable"
                    break
            assert statuses[-1] == 503, "the disk never filled"
            answered = statuses.count(200)
            assert answered > 5
            ready = client.get("/readyz")
            assert ready.status_code == 503
            assert "spool" in ready.get_json()["not_ready"]
            init_audit_store(settings.resolved_audit_url)  # the store comes: the spool drains, space is free again
            assert runtime_of(app).audit_writer.flush(30)
            assert client.get("/readyz").status_code == 200
            assert client.post(PV, json=request).status_code == 200
            assert runtime_of(app).audit_writer.flush(30)
            stored = list(runtime_of(app).audit_reader.iter_records())
            # Every call answered 200 is stored, the refused one is not, and nothing was set aside as torn.
            assert [r.payload["http_status"] for r in stored] == [200] * (answered + 1)
            assert runtime_of(app).audit_writer.readiness().as_json()["checks"]["quarantine"]["records"] == 0
            assert runtime_of(app).audit_reader.verify().ok
        finally:
            runtime_of(app).close()


# --- R5: a 60 MB spool drains in bounded memory -------------------------------------------------------------------

# The peak RSS of this process image: VmHWM (ru_maxrss would carry the forking pytest's peak across exec).
DRAIN = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, sys.argv[1])
    from pathlib import Path
    from cds_service.audit.writer import open_audit_writer

    def peak_rss():
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise SystemExit("no VmHWM")

    log = open_audit_writer(sys.argv[2], Path(sys.argv[3]), asynchronous=False)
    before = peak_rss()
    stored = log.replay()
    log.close()
    print(stored, before, peak_rss())
    """
)


def _write_spool(path: Path, target_bytes: int) -> int:
    template = make_entry(AuditEventType.SERVICE_CALL, call_to_payload(make_call()))
    count = 0
    with path.open("w", encoding="utf-8") as handle:
        while handle.tell() < target_bytes:
            handle.write(template.payload_text.replace(template.record_id, f"{count:032x}") + "\n")
            count += 1
    return count


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_a_60_mb_spool_drains_in_less_than_3x_its_size(backend: str, tmp_path: Path) -> None:
    spool = tmp_path / "spool.jsonl"
    count = _write_spool(spool, 60 * MB)
    size = spool.stat().st_size
    script = tmp_path / "drain.py"
    script.write_text(DRAIN, encoding="utf-8")
    with contextlib.ExitStack() as stack:
        if backend == "sqlite":
            url = f"sqlite:///{tmp_path / 'audit.sqlite3'}"
        else:
            url = stack.enter_context(postgres_schema())
        init_audit_store(url)
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, str(script), str(PROJECT_ROOT), url, str(spool)],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        elapsed = time.monotonic() - started
        assert done.returncode == 0, done.stderr[-2000:]
        stored, before, peak = (int(x) for x in done.stdout.split())
        store = SqlAuditStore(url)
        try:
            assert store.count() == count
        finally:
            store.dispose()
    assert stored == count
    print(
        f"{backend}: drained {size / MB:.0f} MB ({count} records) in {elapsed:.1f} s; peak RSS {peak / MB:.0f} MB "
        f"({before / MB:.0f} MB before the drain)"
    )
    assert peak < 3 * size, f"peak RSS {peak / MB:.0f} MB for a {size / MB:.0f} MB spool"
    assert peak - before < 0.5 * size, "the drain's memory grew with the spool"


# --- R3: two instances on one PostgreSQL, the feedback first -------------------------------------------------------


@pytest.mark.postgres
def test_two_instances_on_postgresql_feedback_first_is_linked_and_suppresses(tmp_path: Path) -> None:
    with postgres_schema() as url, TcpProxy(5432) as proxy:
        init_audit_store(url)
        base = Settings(dev=True, public_base_url="http://localhost")
        # Instance A reaches the database through a proxy that refuses for now; instance B directly.
        settings_a = base.with_overrides(
            instance_path=tmp_path / "a", audit_url=url.replace(":5432/", f":{proxy.port}/")
        )
        settings_b = base.with_overrides(instance_path=tmp_path / "b", audit_url=url)
        proxy.set_mode(Mode.REFUSE)
        app_a = create_app(settings_a, clock=lambda: EXAMPLE_NOW)
        app_b = create_app(settings_b, clock=lambda: EXAMPLE_NOW)
        try:
            card = app_a.test_client().post(PV, json=load_example("patient-view-request.json")).get_json()["cards"][0]
            item = {
                "card": card["uuid"],
                "outcome": "overridden",
                "overrideReason": {"reason": {"code": "not-clinically-relevant"}},
                "outcomeTimestamp": "2026-11-21T12:05:00Z",
            }
            assert app_b.test_client().post(PV + "/feedback", json=item).status_code == 200
            assert runtime_of(app_b).audit_writer.flush(10)
            reader = runtime_of(app_b).audit_reader
            [feedback] = list(reader.iter_records())
            assert feedback.linked_record_id is None  # its call is still in A's spool
            proxy.set_mode(Mode.FORWARD)
            assert runtime_of(app_a).audit_writer.flush(30)
            call = next(r for r in reader.iter_records() if r.event_type == "service-call")
            assert call.seq > feedback.seq  # the chain holds them in commit order, the feedback first
            linked = reader.get(feedback.record_id)
            assert linked is not None
            assert linked.linked_record_id == call.record_id
            source = build_suppression_source(settings_b)
            assert isinstance(source, SqlSuppressionSource)
            [active] = source.active(None, None, "example-mg-1", EXAMPLE_NOW.replace(day=22))
            source.close()
            assert (active.code, active.reason, active.feedback_record_id) == (
                card["extension"]["org.mgcds.recommendation"],
                "not-clinically-relevant",
                feedback.record_id,
            )
            assert reader.verify().ok
        finally:
            proxy.set_mode(Mode.FORWARD)
            runtime_of(app_a).close()
            runtime_of(app_b).close()


# --- gunicorn: workers close the log on exit; one control socket per service -------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def served(instance: Path, port: int, log_file: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``mgcds serve --dev`` with two workers on 127.0.0.1:port until stopped by the caller (or at the end)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MGCDS_")}
    env.update({"MGCDS_INSTANCE_PATH": str(instance), "PYTHONPATH": str(PROJECT_ROOT)})
    command = [sys.executable, "-m", "cds_service.cli", "serve", "--dev", "--port", str(port), "--workers", "2"]
    with log_file.open("wb") as log:
        process = subprocess.Popen(command, env=env, cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while True:
                assert process.poll() is None, log_file.read_text(errors="replace")[-3000:]
                with contextlib.suppress(requests.RequestException):
                    if requests.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                        break
                assert time.monotonic() < deadline, "mgcds serve did not become ready"
                time.sleep(0.2)
            yield process
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)


@pytest.mark.slow
def test_two_services_on_one_host_have_their_own_control_socket_and_workers_close_the_log(tmp_path: Path) -> None:
    port_a, port_b = _free_port(), _free_port()
    socket_a = (tmp_path / "a" / f"gunicorn-{port_a}.ctl").resolve()
    socket_b = (tmp_path / "b" / f"gunicorn-{port_b}.ctl").resolve()
    log_a, log_b = tmp_path / "a.log", tmp_path / "b.log"
    request = load_example("patient-view-request.json")
    with served(tmp_path / "a", port_a, log_a) as service_a, served(tmp_path / "b", port_b, log_b):
        for _ in range(10):
            assert requests.post(f"http://127.0.0.1:{port_a}{PV}", json=request, timeout=10).status_code == 200
        _wait_until(lambda: socket_a.exists() and socket_b.exists(), 10)
        stopped_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        service_a.send_signal(signal.SIGTERM)
        service_a.wait(timeout=30)
        assert not socket_a.exists()
        assert socket_b.exists(), "stopping one service removed the other's control socket"
        assert requests.get(f"http://127.0.0.1:{port_b}/readyz", timeout=5).status_code == 200
    lines = [json.loads(line) for line in log_a.read_text().splitlines() if line.startswith("{")]
    closed = [
        line
        for line in lines
        if str(line.get("message", "")).startswith("audit writer closed") and str(line["ts"]) >= stopped_at
    ]
    assert len(closed) == 2, "each of the two workers closes its audit writer on SIGTERM and says what it left"
    store = SqlAuditStore(Settings(instance_path=tmp_path / "a").resolved_audit_url)
    try:
        assert store.count() == 10
        assert store.verify().ok
    finally:
        store.dispose()


def _wait_until(condition: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"not within {seconds} s")


def test_a_writer_killed_between_spooling_and_storing_loses_nothing(tmp_path: Path) -> None:
    # R2: what an answered call relies on is the spool, not the process: a writer whose store is away, then gone.
    url = f"sqlite:///{tmp_path / 'audit.sqlite3'}"
    writer = open_audit_writer(url, tmp_path / "spool.jsonl", asynchronous=False)  # no schema: nothing drains
    ids = [writer.record_call(make_call(minutes=i)) for i in range(5)]
    del writer  # never closed: as if SIGKILLed
    init_audit_store(url)
    later = open_audit_writer(url, tmp_path / "spool.jsonl", asynchronous=False)
    assert later.replay() == 5
    later.close()
    store = SqlAuditStore(url)
    try:
        assert [r.record_id for r in store.iter_records()] == ids
    finally:
        store.dispose()

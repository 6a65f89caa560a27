"""The audit log against real databases: concurrent writers on one PostgreSQL, writers killed mid-stream.

PostgreSQL runs on 127.0.0.1:5432 (trust auth, database ``test``); each test gets its own schema, dropped
after.
"""

from __future__ import annotations

import json
import os
import random
import select
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cds_service.audit.spool import parse_line
from cds_service.audit.store import SqlAuditStore, init_audit_store
from cds_service.audit.writer import open_audit_writer
from tests.conftest import PROJECT_ROOT
from tests.unit.audit.helpers import make_call, open_pair, postgres_schema

pytestmark = [pytest.mark.integration]

WRITER = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    sys.path.insert(0, sys.argv[1])
    from cds_service.audit.writer import open_audit_writer
    from tests.unit.audit.helpers import make_call

    url, spool, count, acks = sys.argv[2], Path(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    log = open_audit_writer(url, spool, asynchronous=True)
    with open(acks, "a", encoding="utf-8") as ack:
        for i in range(count):
            record_id = log.record_call(make_call(patient_id=f"w{os.getpid()}-{i}", cards=()))
            ack.write(record_id + "\\n")  # written only once record_call has returned
            ack.flush()
            if i == 0:
                print("streaming", flush=True)  # the readiness signal: started up and writing
    ok = log.flush(timeout=120)
    log.close()
    sys.exit(0 if ok else 3)
    """
)


@pytest.fixture
def writer_script(tmp_path: Path) -> Path:
    """The writer process's source."""
    path = tmp_path / "writer.py"
    path.write_text(WRITER, encoding="utf-8")
    return path


@pytest.fixture
def pg_url() -> Iterator[str]:
    """An initialised audit store in a fresh PostgreSQL schema."""
    with postgres_schema() as url:
        init_audit_store(url)
        yield url


def _start(script: Path, url: str, spool: Path, count: int, acks: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(script), str(PROJECT_ROOT), url, str(spool), str(count), str(acks)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _wait_until_streaming(writer: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    """Block until the writer says it has acknowledged its first record (start-up takes long under load)."""
    assert writer.stdout is not None
    ready, _, _ = select.select([writer.stdout], [], [], timeout)
    assert ready, f"the writer did not start within {timeout:.0f} s"
    assert writer.stdout.readline() == b"streaming\n", "the writer exited before it started streaming"


def _stored_ids(url: str) -> list[str]:
    store = SqlAuditStore(url)
    try:
        return [row["record_id"] for row in store.iter_rows()]
    finally:
        store.dispose()


@pytest.mark.postgres
@pytest.mark.slow
def test_concurrent_processes_keep_one_valid_chain(pg_url: str, writer_script: Path, tmp_path: Path) -> None:
    # Four processes, 1000 records each; two pairs share a spool (gunicorn workers of one instance), the pairs
    # stand for two instances. All append to one PostgreSQL chain at once.
    processes, per_process = 4, 1000
    acks = [tmp_path / f"acks-{i}.txt" for i in range(processes)]
    spools = [tmp_path / f"instance-{i // 2}" / "spool.jsonl" for i in range(processes)]
    started = time.monotonic()
    writers = [_start(writer_script, pg_url, spools[i], per_process, acks[i]) for i in range(processes)]
    for writer in writers:
        _, err = writer.communicate(timeout=120)
        assert writer.returncode == 0, err.decode()
    elapsed = time.monotonic() - started
    acked = [line for path in acks for line in path.read_text().split()]
    stored = _stored_ids(pg_url)
    assert len(acked) == processes * per_process
    assert len(stored) == processes * per_process  # exact: nothing lost, nothing twice
    assert set(stored) == set(acked)
    store = SqlAuditStore(pg_url)
    report = store.verify()
    store.dispose()
    assert report.ok, report.describe()
    assert report.head_seq == processes * per_process
    print(f"{processes * per_process} records from {processes} processes in {elapsed:.1f}s")


def _spooled_ids(spool: Path) -> set[str]:
    ids: set[str] = set()
    for path in spool.parent.glob(spool.name + "*"):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                ids.add(parse_line(line).record_id)
            except ValueError:
                continue  # the torn last line of a killed writer
    return ids


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def crash_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An initialised store of each backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'audit.sqlite3'}"
        init_audit_store(url)
        yield url
    else:
        with postgres_schema() as url:
            init_audit_store(url)
            yield url


@pytest.mark.slow
def test_writer_killed_mid_stream_loses_nothing(crash_store_url: str, writer_script: Path, tmp_path: Path) -> None:
    spool = tmp_path / "spool" / "spool.jsonl"
    acks = tmp_path / "acks.txt"
    rng = random.Random(7)  # noqa: S311 - kill timing, not security
    unacked_before: set[str] = set()
    replayed_total = 0
    for _iteration in range(3):
        writer = _start(writer_script, crash_store_url, spool, 1_000_000, acks)
        # Kill it somewhere mid-stream: after it says it is writing (start-up time varies with the load on the
        # machine, so a fixed delay sometimes killed it before its first record), then a random moment later.
        _wait_until_streaming(writer)
        time.sleep(rng.uniform(0.1, 0.5))
        os.kill(writer.pid, signal.SIGKILL)
        _, err = writer.communicate(timeout=10)
        assert writer.returncode == -signal.SIGKILL, err.decode()
        before = set(_stored_ids(crash_store_url))
        waiting = _spooled_ids(spool)
        replayed_total += len(waiting - before)
        store = SqlAuditStore(crash_store_url)
        assert store.verify().ok  # a kill at any moment leaves a valid chain
        store.dispose()
        log = open_audit_writer(crash_store_url, spool, asynchronous=False)
        log.replay()
        log.close()
        stored = _stored_ids(crash_store_url)
        acked = set(acks.read_text().split())
        assert len(stored) == len(set(stored))
        assert set(stored) == before | waiting  # exactly what was spooled, once
        assert acked <= set(stored)  # every call that returned is in the store
        unacked = set(stored) - acked
        # Per kill at most one record was spooled without its ack line being written yet.
        assert len(unacked - unacked_before) <= 1
        unacked_before = unacked
        store = SqlAuditStore(crash_store_url)
        report = store.verify()
        store.dispose()
        assert report.ok, report.describe()
        assert not list(spool.parent.glob("*.draining"))
    assert len(acks.read_text().split()) > 30  # the writer really wrote mid-stream before each kill
    assert replayed_total > 0  # and the kills left records that only the replay stored
    print(f"crash loop: {len(acks.read_text().split())} acknowledged, {replayed_total} stored by replay")


@pytest.mark.postgres
def test_postgres_outage_spools_and_replays(pg_url: str, tmp_path: Path) -> None:
    spool = tmp_path / "spool.jsonl"
    down = open_audit_writer("postgresql://postgres@127.0.0.1:1/test", spool, asynchronous=False)
    ids = [down.record_call(make_call(minutes=i)) for i in range(5)]
    down.close()
    log = open_pair(pg_url, spool)
    assert log.writer.replay() == 5
    assert [r.record_id for r in log.reader.iter_records()] == ids
    assert log.reader.verify().ok
    log.close()


@pytest.mark.postgres
def test_postgres_records_round_trip_as_json(pg_url: str, tmp_path: Path) -> None:
    log = open_pair(pg_url, tmp_path / "spool.jsonl")
    record_id = log.writer.record_call(make_call())
    stored = log.reader.get(record_id)
    log.close()
    assert stored is not None
    assert json.loads(json.dumps(stored.payload))["latency_ms"] == 41.25


@pytest.mark.postgres
def test_the_postgres_reader_cannot_write(pg_url: str, tmp_path: Path) -> None:
    # The review page and `mgcds audit verify | list | show | export` read through this: a session that refuses writes.
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    log = open_pair(pg_url, tmp_path / "spool.jsonl")
    log.writer.record_call(make_call())
    try:
        assert log.reader.count() == 1  # it reads the URL's own schema (its search_path option is kept)
        with pytest.raises(DBAPIError, match="read-only transaction"), log.reader.engine.begin() as conn:
            conn.execute(text("DELETE FROM mgcds_audit_records"))
        assert log.reader.count() == 1
    finally:
        log.close()

"""Issue 19 R2/R4 and issue 16 B8: readiness names the part that is not ready, and never takes more than about a
second, whatever the disk or the store does."""

from __future__ import annotations

import errno
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cds_service.audit import readiness as readiness_module
from cds_service.audit.model import AppendOutcome, PendingEntry
from cds_service.audit.quarantine import Quarantine, quarantine_path
from cds_service.audit.spool import Spool
from cds_service.audit.writer import SpoolingAuditWriter
from cds_service.errors import AuditStoreError
from tests.unit.audit.helpers import make_call, sqlite_pair


def _by_name(writer: SpoolingAuditWriter) -> dict[str, tuple[str, str]]:
    return {c.name: (c.status, c.detail) for c in writer.readiness().checks}


def test_everything_ready(tmp_path: Path) -> None:
    pair = sqlite_pair(tmp_path)
    try:
        report = pair.writer.readiness()
        assert report.status == "ok"
        assert [c.name for c in report.checks] == ["spool", "store", "backlog", "quarantine"]
        body = report.as_json()
        assert (body["status"], body["audit_store"], body["not_ready"], body["degraded"]) == ("ok", "ok", [], [])
        assert body["checks"]["spool"]["free_bytes"] > 0
    finally:
        pair.close()


def test_a_store_without_its_schema_is_not_ready(tmp_path: Path) -> None:
    pair = sqlite_pair(tmp_path, init=False)
    try:
        status, detail = _by_name(pair.writer)["store"]
        assert status == "not-ready"
        assert "mgcds audit init" in detail
        assert pair.writer.readiness().as_json()["not_ready"] == ["store"]
    finally:
        pair.close()


@pytest.mark.parametrize("old", [False, True], ids=["fresh", "old"])
def test_an_old_backlog_is_degraded_a_fresh_one_is_not(tmp_path: Path, old: bool) -> None:
    pair = sqlite_pair(tmp_path, init=False)  # no schema: records wait in the spool
    try:
        # make_call's records occurred in March 2026, longer ago than the 60 s allowed.
        pair.writer.record_call(make_call() if old else replace(make_call(), occurred_at=datetime.now(UTC)))
        pair.writer.record_call(replace(make_call(), occurred_at=datetime.now(UTC)))
        status, detail = _by_name(pair.writer)["backlog"]
        assert status == ("degraded" if old else "ok")
        assert detail.startswith("2 records wait; the oldest for" if old else "2 records wait")
        assert pair.writer.readiness().status == ("unavailable")  # the store itself is not initialised
    finally:
        pair.close()


def test_quarantined_records_make_it_degraded(tmp_path: Path) -> None:
    pair = sqlite_pair(tmp_path)
    try:
        Quarantine(quarantine_path(pair.spool_path)).add('{"not": "a record"}', "a test")
        report = pair.writer.readiness()
        assert report.status == "degraded"
        assert report.as_json()["degraded"] == ["quarantine"]
    finally:
        pair.close()


def test_a_spool_directory_that_refuses_writes_is_not_ready(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pair = sqlite_pair(tmp_path)
    try:

        def refuse(fd: int, data: bytes, start: int) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(readiness_module, "write_all", refuse)
        status, detail = _by_name(pair.writer)["spool"]
        assert status == "not-ready"
        assert "No space left on device" in detail
    finally:
        pair.close()


def test_too_little_free_space_is_not_ready(tmp_path: Path) -> None:
    writer = SpoolingAuditWriter(
        _SlowStore(0.0), Spool(tmp_path / "spool.jsonl"), asynchronous=False, min_free_bytes=2**62
    )
    try:
        status, detail = _by_name(writer)["spool"]
        assert status == "not-ready"
        assert "below the minimum" in detail
    finally:
        writer.close()


class _SlowStore:
    """A store whose readiness probe hangs until released or ``seconds`` pass (a blackholed database)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.probes = 0
        self.release = threading.Event()

    def append(self, entries: Sequence[PendingEntry]) -> AppendOutcome:
        raise AuditStoreError("unavailable")

    def check_ready(self, time_limit_seconds: float | None = None) -> None:
        self.probes += 1
        self.release.wait(self.seconds)

    def dispose(self) -> None:
        """Nothing to release."""


def test_a_stalled_store_probe_answers_within_a_second_and_is_not_piled_up(tmp_path: Path) -> None:
    store = _SlowStore(30.0)
    writer = SpoolingAuditWriter(store, Spool(tmp_path / "spool.jsonl"), asynchronous=False)
    try:
        timings = []
        for _ in range(4):
            started = time.monotonic()
            report = writer.readiness()
            timings.append(time.monotonic() - started)
            status, detail = {c.name: (c.status, c.detail) for c in report.checks}["store"]
            assert status == "not-ready"
            assert detail.startswith("no answer within 0.8 s")
            assert report.as_json()["not_ready"] == ["store"]
        assert max(timings) < 1.0, timings
        assert store.probes == 1, "every readiness request started another stalled probe"
        probes = [t for t in threading.enumerate() if t.name == "mgcds-readyz-store"]
        assert len(probes) == 1
    finally:
        store.release.set()
        writer.close()

"""Readiness of the audit log, fast and truthful (issue 19, R2/R4; issue 16, B8).

Four parts, each checked in a thread of its own and waited for at most ``time_limit_seconds`` together, so that
``/readyz`` never holds a worker thread for more than about a second whatever the disk or the database does:

- ``spool``: a record can be made durable now: the spool's directory takes a probe write, has at least
  ``min_free_bytes`` free, and the last record was not refused (a refusal stands until a probe succeeds).
  Not ready otherwise: calls are being answered 503.
- ``store``: the store answers with the schema this code writes. Not ready otherwise (as before this issue).
- ``backlog``: records waiting in the spool, and the age of the oldest; degraded when older than
  ``backlog_max_age_seconds``.
- ``quarantine``: records the store refused; degraded while there is any (``mgcds audit redrive``).

A part whose check has not answered in time is not ready ("no answer within ..."); its check goes on in the
background, one at a time per part: a stalled probe is never piled up, and requests meanwhile wait on that one.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cds_service.audit.model import DEGRADED, NOT_READY, READY, Readiness, ReadinessCheck
from cds_service.audit.quarantine import Quarantine
from cds_service.audit.records import parse_timestamp
from cds_service.audit.spool import Spool, fsync_directory, write_all
from cds_service.errors import AuditStoreError

TIME_LIMIT_SECONDS = 0.8
STORE_PROBE_SECONDS = 2.0  # the store probe's own limit: a stalled probe is abandoned, not left for the kernel
PROBE_BYTES = 64 * 1024  # more than a typical record: a spool that takes this takes the next record


@dataclass
class _Flight:
    """One run of a check: its answer once done."""

    started: float
    done: threading.Event = field(default_factory=threading.Event)
    result: ReadinessCheck | None = None


class _SingleFlight:
    """Runs a check in a daemon thread, at most one at a time; callers wait for it within their own limit."""

    def __init__(self, name: str, check: Callable[[], ReadinessCheck], *, late: str = NOT_READY) -> None:
        self.name = name
        self.late = late  # the state when the check does not answer in time
        self._check = check
        self._lock = threading.Lock()
        self._flight: _Flight | None = None

    def start(self) -> _Flight:
        """The run in progress, or a new one."""
        with self._lock:
            flight = self._flight
            # Requests arriving while a check runs share it; a finished one is never reused (a refusal since counts).
            if flight is None or flight.done.is_set():
                flight = _Flight(started=time.monotonic())
                self._flight = flight
                threading.Thread(
                    target=self._run, args=(flight,), name=f"mgcds-readyz-{self.name}", daemon=True
                ).start()
            return flight

    def _run(self, flight: _Flight) -> None:
        try:
            flight.result = self._check()
        except Exception as exc:  # noqa: BLE001 - a check that fails in a way we did not foresee is not ready
            flight.result = ReadinessCheck(self.name, NOT_READY, f"check failed: {type(exc).__name__}: {exc}")
        finally:
            flight.done.set()


def probe_write(directory: os.PathLike[str] | str, name: str, *, fsync: bool) -> None:
    """Write, optionally fsync, and remove a probe file of PROBE_BYTES (raises OSError when the disk refuses)."""
    path = os.path.join(directory, f".{name}.readyz-probe.{os.getpid()}.{threading.get_ident()}")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
    try:
        write_all(fd, b"\0" * PROBE_BYTES, 0)
        if fsync:
            os.fdatasync(fd)
    finally:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    if fsync:
        fsync_directory(Path(directory))


class ReadinessProbe:
    """The four checks of one audit writer (see the module docstring)."""

    def __init__(
        self,
        *,
        spool: Spool | None,
        quarantine: Quarantine | None,
        store_check: Callable[[float], None],
        spool_failure: Callable[[], str | None],
        clear_spool_failure: Callable[[], None],
        min_free_bytes: int,
        backlog_max_age_seconds: float,
        time_limit_seconds: float = TIME_LIMIT_SECONDS,
    ) -> None:
        self._store_check = store_check
        self._spool_failure = spool_failure
        self._clear_spool_failure = clear_spool_failure
        self.min_free_bytes = min_free_bytes
        self.backlog_max_age_seconds = backlog_max_age_seconds
        self.time_limit_seconds = time_limit_seconds
        flights = [_SingleFlight("store", self._check_store)]
        if spool is not None:
            flights.append(_SingleFlight("spool", lambda: self._check_spool(spool)))
            # A backlog or a quarantine slow to count does not stop records being recorded: late is degraded.
            flights.append(_SingleFlight("backlog", lambda: self._check_backlog(spool), late=DEGRADED))
        if quarantine is not None:
            flights.append(_SingleFlight("quarantine", lambda: self._check_quarantine(quarantine), late=DEGRADED))
        self._flights = flights

    def check(self) -> Readiness:
        """Every part's state, within the time limit."""
        deadline = time.monotonic() + self.time_limit_seconds
        running = [(flight, flight.start()) for flight in self._flights]
        checks: list[ReadinessCheck] = []
        for single, flight in running:
            flight.done.wait(max(0.0, deadline - time.monotonic()))
            if flight.result is not None:
                checks.append(flight.result)
            else:
                waited = time.monotonic() - flight.started
                checks.append(
                    ReadinessCheck(
                        single.name,
                        NOT_READY,
                        f"no answer within {self.time_limit_seconds:.1f} s (checking for {waited:.1f} s)",
                    )
                )
        order = {"spool": 0, "store": 1, "backlog": 2, "quarantine": 3}
        return Readiness(tuple(sorted(checks, key=lambda c: order.get(c.name, 9))))

    def _check_store(self) -> ReadinessCheck:
        try:
            self._store_check(STORE_PROBE_SECONDS)
        except AuditStoreError as exc:
            return ReadinessCheck("store", NOT_READY, str(exc))
        return ReadinessCheck("store", READY, "the store answers with the expected schema")

    def _check_spool(self, spool: Spool) -> ReadinessCheck:
        directory = spool.path.parent
        try:
            stats = os.statvfs(directory)
        except OSError as exc:
            return ReadinessCheck("spool", NOT_READY, f"spool directory unusable: {exc.strerror}")
        free = stats.f_bavail * stats.f_frsize
        data = {"free_bytes": free, "min_free_bytes": self.min_free_bytes, "fsync": spool.fsync}
        try:
            probe_write(directory, spool.path.name, fsync=spool.fsync)
        except OSError as exc:
            reason = exc.strerror or errno.errorcode.get(exc.errno or 0, str(exc))
            return ReadinessCheck("spool", NOT_READY, f"the spool directory refuses a write: {reason}", data)
        if free < self.min_free_bytes:
            return ReadinessCheck(
                "spool",
                NOT_READY,
                f"{free} bytes free on the spool's file system, below the minimum of {self.min_free_bytes}",
                data,
            )
        failure = self._spool_failure()
        if failure is not None:
            # The probe wrote and there is room again: the next record will be taken, so stop refusing calls.
            self._clear_spool_failure()
        return ReadinessCheck("spool", READY, "records can be made durable", data)

    def _check_backlog(self, spool: Spool) -> ReadinessCheck:
        backlog = spool.backlog()
        age: float | None = None
        if backlog.oldest_occurred_at is not None:
            try:
                age = max(0.0, (datetime.now(UTC) - parse_timestamp(backlog.oldest_occurred_at)).total_seconds())
            except ValueError:
                age = None
        data = {
            "records": backlog.records,
            "records_estimated": backlog.estimated,
            "bytes": backlog.bytes,
            "files": backlog.files,
            "oldest_age_seconds": round(age, 1) if age is not None else None,
            "max_age_seconds": self.backlog_max_age_seconds,
        }
        waiting = f"{'about ' if backlog.estimated else ''}{backlog.records} records wait"
        if age is not None and age > self.backlog_max_age_seconds:
            return ReadinessCheck("backlog", DEGRADED, f"{waiting}; the oldest for {age:.0f} s", data)
        return ReadinessCheck("backlog", READY, waiting, data)

    def _check_quarantine(self, quarantine: Quarantine) -> ReadinessCheck:
        held = quarantine.count()
        data = {"records": held, "path": str(quarantine.path)}
        if held:
            return ReadinessCheck(
                "quarantine", DEGRADED, f"{held} records the store refused; see `mgcds audit redrive`", data
            )
        return ReadinessCheck("quarantine", READY, "nothing quarantined", data)

"""SpoolingAuditWriter: the real AuditWriter, the local spool and the background writer behind it.

``record_call``, ``record_feedback`` and ``record_feedback_call`` append the canonical record to the local spool
and return; a background thread drains the spool into the store. The EHR's answer never waits for the database.
Only this class moves records from the spool into the store: readers hold no spool, so they cannot.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Protocol

from cds_service.audit.entries import aware, make_entry
from cds_service.audit.model import PendingEntry
from cds_service.audit.records import (
    AuditEventType,
    CallRecord,
    FeedbackCallRecord,
    FeedbackRecord,
    call_to_payload,
    feedback_call_to_payload,
    feedback_to_payload,
)
from cds_service.audit.spool import Spool
from cds_service.audit.sqlwrite import SqlAuditAppender
from cds_service.errors import AuditStoreError

log = logging.getLogger("mgcds.audit")

_RETRY_MIN_SECONDS = 0.2
_RETRY_MAX_SECONDS = 30.0
_IDLE_POLL_SECONDS = 5.0  # also picks up spool files left by killed processes sharing the spool path
# After a wake-up the writer waits this long so that the records of concurrent calls are drained together: one
# transaction and one spool rotation for many records instead of one each (performance; the spool holds them).
_COALESCE_SECONDS = 0.05
# Entries this process spooled and still holds parsed, so its drain need not parse its own lines again. Bounded,
# oldest dropped first: another worker sharing the spool may drain a line, and then nobody asks for it here.
_KNOWN_ENTRIES_MAX = 256


class EntrySink(Protocol):
    """Where drained entries go: the store's append path (SqlAuditAppender)."""

    def append(self, entries: Sequence[PendingEntry]) -> int:
        """Store the entries not stored yet, in order; returns how many (raises AuditStoreError)."""
        ...

    def check_ready(self) -> None:
        """Raise AuditStoreError unless entries can be stored now."""
        ...

    def dispose(self) -> None:
        """Release connections."""
        ...


class _KnownEntries:
    """A small FIFO map from spooled line text to its entry (thread-safe)."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._entries: dict[str, PendingEntry] = {}
        self._lock = threading.Lock()

    def put(self, entry: PendingEntry) -> None:
        """Remember an entry about to be spooled."""
        with self._lock:
            if len(self._entries) >= self._capacity:
                del self._entries[next(iter(self._entries))]
            self._entries[entry.payload_text] = entry

    def pop(self, text: str, default: PendingEntry | None = None) -> PendingEntry | None:
        """The entry spooled as ``text``, forgotten now; ``default`` when unknown."""
        with self._lock:
            found: PendingEntry | None = self._entries.pop(text, default)
            return found


class SpoolingAuditWriter:
    """Writes records without blocking the caller: spool first, then a background drain into the store."""

    def __init__(self, store: EntrySink, spool: Spool | None, *, asynchronous: bool = True) -> None:
        self.store = store
        self.spool = spool
        self.asynchronous = asynchronous
        self._memory: list[PendingEntry] = []  # only when the spool itself cannot be written
        self._memory_lock = threading.Lock()
        self._known = _KnownEntries(_KNOWN_ENTRIES_MAX)
        self._drain_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._failures = 0
        self._next_attempt = 0.0
        self._thread: threading.Thread | None = None
        if asynchronous:
            self._thread = threading.Thread(target=self._run, name="mgcds-audit-writer", daemon=True)
            self._thread.start()

    def record_call(self, record: CallRecord) -> str:
        """Record one service call; returns its record id. Never blocks on, or raises for, the database."""
        record = replace(record, occurred_at=aware(record.occurred_at))
        return self._submit(make_entry(AuditEventType.SERVICE_CALL, call_to_payload(record)))

    def record_feedback(self, record: FeedbackRecord) -> str:
        """Record one feedback item; returns its record id. Never blocks on, or raises for, the database."""
        record = replace(record, occurred_at=aware(record.occurred_at))
        return self._submit(make_entry(AuditEventType.FEEDBACK, feedback_to_payload(record)))

    def record_feedback_call(self, record: FeedbackCallRecord) -> str:
        """Record one feedback call that was not answered 200; returns its record id. Never blocks or raises."""
        record = replace(record, occurred_at=aware(record.occurred_at))
        return self._submit(make_entry(AuditEventType.FEEDBACK_CALL, feedback_call_to_payload(record)))

    def _submit(self, entry: PendingEntry) -> str:
        # Fail open: a database outage must not block care, so the record waits in the spool (or, if even the
        # local disk refuses, in memory) and the EHR gets its answer.
        spooled = False
        if self.spool is not None:
            try:
                self._known.put(entry)
                self.spool.append(entry.payload_text)
                spooled = True
            except OSError as exc:
                log.critical(
                    "audit spool %s not writable (%s); record %s kept in memory",
                    self.spool.path,
                    exc,
                    entry.record_id,
                )
        if not spooled:
            with self._memory_lock:
                self._memory.append(entry)
        if self.asynchronous:
            self._wake.set()
        else:
            self._drain_quietly(force=True)
        return entry.record_id

    def _drain(self) -> int:
        stored = 0
        with self._memory_lock:
            waiting = list(self._memory)
        if waiting:
            stored += self.store.append(waiting)
            with self._memory_lock:
                del self._memory[: len(waiting)]
        if self.spool is not None:
            stored += self.spool.drain(self.store.append, known=self._known.pop)
        return stored

    def _drain_quietly(self, *, force: bool = False) -> bool:
        """One drain attempt under the lock; on failure back off exponentially. True when it succeeded."""
        if not force and time.monotonic() < self._next_attempt:
            return False
        with self._drain_lock:
            try:
                self._drain()
            except AuditStoreError as exc:
                self._failures += 1
                delay = min(_RETRY_MAX_SECONDS, _RETRY_MIN_SECONDS * 2 ** min(self._failures, 8))
                self._next_attempt = time.monotonic() + delay
                if self._failures == 1 or self._failures % 20 == 0:
                    log.error("audit store unavailable (%s); records wait in the spool, retry in %.1fs", exc, delay)
                return False
            except OSError as exc:
                log.error("audit spool could not be drained: %s", exc)
                return False
            if self._failures:
                log.warning("audit store back after %d failed attempts; spool replayed", self._failures)
            self._failures = 0
            self._next_attempt = 0.0
            return True

    def _run(self) -> None:
        while not self._stop.is_set():
            woken = self._wake.wait(_IDLE_POLL_SECONDS)
            self._wake.clear()
            if self._stop.is_set():
                return
            if woken and self._stop.wait(_COALESCE_SECONDS):
                return
            # A new write is the signal to retry early ("replayed at the next write"), but not in a hot loop.
            if woken and self._failures:
                self._next_attempt = min(self._next_attempt, time.monotonic() + _RETRY_MIN_SECONDS)
                time.sleep(max(0.0, self._next_attempt - time.monotonic()))
            try:
                self._drain_quietly(force=woken)
            except Exception:  # the writer thread must outlive any surprise; records stay in the spool
                log.exception("audit writer: unexpected error while draining; will retry")
                self._next_attempt = time.monotonic() + _RETRY_MAX_SECONDS

    def has_pending(self) -> bool:
        """True while records wait for the store."""
        with self._memory_lock:
            if self._memory:
                return True
        return self.spool.has_pending() if self.spool is not None else False

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every waiting record is stored; False if that did not happen within ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            if self._drain_quietly(force=True) and not self.has_pending():
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    def replay(self) -> int:
        """Drain the spool now (``mgcds audit replay``); returns how many were stored. Raises on outage."""
        with self._drain_lock:
            return self._drain()

    def check_ready(self) -> None:
        """Raise AuditStoreError unless records can reach the store now (for /readyz)."""
        # Readiness fails closed (take this instance out of rotation) while calls themselves fail open.
        self.store.check_ready()

    def close(self) -> None:
        """Stop the writer after a last drain attempt; records that could not be stored stay in the spool."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._drain_quietly(force=True)
        with self._memory_lock:
            if self._memory:
                log.critical("audit log closed with %d records only in memory (spool unwritable)", len(self._memory))
        self.store.dispose()


def open_audit_writer(
    url: str, spool_path: Path, *, asynchronous: bool = True, fsync: bool = False
) -> SpoolingAuditWriter:
    """The writer for a store URL with its spool; the schema must exist (``mgcds audit init``)."""
    return SpoolingAuditWriter(SqlAuditAppender.open(url), Spool(spool_path, fsync=fsync), asynchronous=asynchronous)

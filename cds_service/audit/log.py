"""AuditLog: the interface the service writes through, and the background writer behind it.

``record_call`` and ``record_feedback`` append the canonical record to the local spool and return; a
background thread drains the spool into the store. The EHR's answer never waits for the database.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime
from enum import Enum
from pathlib import Path
from typing import Any

from cds_service.audit.chain import ChainReport, canonical_json
from cds_service.audit.records import (
    AuditEventType,
    CallRecord,
    FeedbackRecord,
    call_to_payload,
    feedback_to_payload,
)
from cds_service.audit.spool import Spool
from cds_service.audit.store import CallFilter, PendingEntry, SqlAuditStore, StoredRecord, Summary
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

    def pop(self, text: str, default: Any = None) -> PendingEntry | None:
        """The entry spooled as ``text``, forgotten now; ``default`` when unknown."""
        with self._lock:
            found: PendingEntry | None = self._entries.pop(text, default)
            return found


def _jsonable(value: Any) -> Any:
    """Plain JSON values only, so building a record can never fail on what the engine put in it."""
    # Performance: a call record holds hundreds of plain values; exact built-in types take the short way and
    # give what the general rules below would (subclasses such as enums still take the general rules).
    kind = type(value)
    if kind is str or kind is int or kind is bool:
        return value
    if kind is dict:
        return {k if type(k) is str else str(k): _jsonable(v) for k, v in value.items()}
    if kind is list or kind is tuple:
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        # JSON has no NaN/Infinity; keep them visible as text rather than dropping the evidence.
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Enum):
        return _jsonable(value.value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [_jsonable(v) for v in value]
        return sorted(items, key=repr) if isinstance(value, set | frozenset) else items
    return str(value)


def make_entry(event_type: AuditEventType, payload: Mapping[str, Any]) -> PendingEntry:
    """Give a payload its record id and canonical text."""
    record_id = uuid.uuid4().hex
    envelope = _jsonable({"record_id": record_id, "event_type": event_type.value, **payload})
    return PendingEntry(record_id, event_type.value, canonical_json(envelope), envelope)


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        # A naive time from a caller is a bug, but losing the record would be worse: read it as UTC.
        log.warning("audit record with a naive occurred_at; taken as UTC")
        return moment.replace(tzinfo=UTC)
    return moment


class AuditLog:
    """Writes records without blocking the caller and reads them back for review, CLI and export."""

    def __init__(self, store: SqlAuditStore, spool: Spool | None, *, asynchronous: bool = True) -> None:
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

    # -- writing ----------------------------------------------------------------------------------------
    def record_call(self, record: CallRecord) -> str:
        """Record one service call; returns its record id. Never blocks on, or raises for, the database."""
        record = replace(record, occurred_at=_aware(record.occurred_at))
        return self._submit(make_entry(AuditEventType.SERVICE_CALL, call_to_payload(record)))

    def record_feedback(self, record: FeedbackRecord) -> str:
        """Record one feedback item; returns its record id. Never blocks on, or raises for, the database."""
        record = replace(record, occurred_at=_aware(record.occurred_at))
        return self._submit(make_entry(AuditEventType.FEEDBACK, feedback_to_payload(record)))

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
        """Raise AuditStoreError unless the store is reachable and initialised (for /readyz)."""
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

    # -- reading ----------------------------------------------------------------------------------------
    def verify(self) -> ChainReport:
        """Walk the chain (raises AuditStoreError when the store cannot be read)."""
        return self.store.verify()

    def count(self) -> int:
        """How many records are stored."""
        return self.store.count()

    def get(self, record_id: str) -> StoredRecord | None:
        """One stored record."""
        return self.store.get(record_id)

    def list_calls(self, filters: CallFilter, *, limit: int = 50, offset: int = 0) -> tuple[list[StoredRecord], int]:
        """A page of calls (newest first) and the total matching."""
        return self.store.list_calls(filters, limit=limit, offset=offset)

    def feedback_for(self, record_ids: Sequence[str]) -> dict[str, list[StoredRecord]]:
        """Feedback linked to each call."""
        return self.store.feedback_for(record_ids)

    def summary(self, filters: CallFilter) -> Summary:
        """Counts for reviewers."""
        return self.store.summary(filters)

    def iter_records(self) -> Iterator[StoredRecord]:
        """Every record in chain order (export)."""
        return self.store.iter_records()


class NullAuditLog(AuditLog):
    """In-memory audit log (DESIGN.md principle 4): same interface, in-memory store, writes applied at once.

    ``calls`` and ``feedback`` keep the records as given, for other packages' tests to assert on.
    """

    def __init__(self) -> None:
        store = SqlAuditStore("sqlite://")
        store.init_schema()
        super().__init__(store, None, asynchronous=False)
        self.calls: list[CallRecord] = []
        self.feedback: list[FeedbackRecord] = []

    def record_call(self, record: CallRecord) -> str:
        """Keep the record and store it."""
        self.calls.append(record)
        return super().record_call(record)

    def record_feedback(self, record: FeedbackRecord) -> str:
        """Keep the record and store it."""
        self.feedback.append(record)
        return super().record_feedback(record)


def init_audit_store(url: str) -> None:
    """Create or check the schema (``mgcds audit init``)."""
    store = SqlAuditStore(url)
    try:
        store.init_schema()
        store.check_ready()
    finally:
        store.dispose()


def open_audit_log(url: str, spool_path: Path, *, asynchronous: bool = True, fsync: bool = False) -> AuditLog:
    """The audit log for a store URL with its spool; the schema must exist (``mgcds audit init``)."""
    return AuditLog(SqlAuditStore(url), Spool(spool_path, fsync=fsync), asynchronous=asynchronous)

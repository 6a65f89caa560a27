"""SpoolingAuditWriter: the real AuditWriter, the local spool and the background writer behind it.

``record_call``, ``record_feedback_items`` and ``record_feedback_call`` append the canonical record to the local
spool with a checked write and return once it is complete there; a background thread drains the spool into the
store. The EHR's answer never waits for the database, but it does wait for the record: when the spool refuses it
(disk full, read-only, an I/O error) the method raises :class:`AuditNotDurable` and the call is answered 503
(issue 19: no call is answered 200 that is not recorded). There is no in-memory fallback: memory dies with the
process. Only this class moves records from the spool into the store: readers hold no spool, so they cannot.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from cds_service.audit.entries import aware, make_entry
from cds_service.audit.model import AppendOutcome, PendingEntry, Readiness
from cds_service.audit.quarantine import Quarantine, quarantine_path
from cds_service.audit.readiness import ReadinessProbe
from cds_service.audit.records import (
    CALL_PAYLOAD_PLAIN_FIELDS,
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
from cds_service.errors import AuditNotDurable, AuditStoreError

log = logging.getLogger("mgcds.audit")

RETRY_MIN_SECONDS = 0.2
RETRY_MAX_SECONDS = 10.0
_STILL_FAILING_LOG_SECONDS = 60.0  # while the store stays away, one error line this often (not one per attempt)
_IDLE_POLL_SECONDS = 5.0  # also picks up spool files left by killed processes sharing the spool path
# After a wake-up the writer waits this long so that the records of concurrent calls are drained together: one
# transaction and one spool rotation for many records instead of one each (performance; the spool holds them).
_COALESCE_SECONDS = 0.05
# Entries this process spooled and still holds parsed, so its drain need not parse its own lines again. Bounded,
# oldest dropped first: another worker sharing the spool may drain a line, and then nobody asks for it here.
_KNOWN_ENTRIES_MAX = 256
MIN_FREE_BYTES = 32 * 1024 * 1024  # below this much free space on the spool's file system, /readyz is not ready
BACKLOG_MAX_AGE_SECONDS = 60.0  # a record waiting longer than this makes /readyz degraded


class EntrySink(Protocol):
    """Where drained entries go: the store's append path (SqlAuditAppender)."""

    def append(self, entries: Sequence[PendingEntry]) -> AppendOutcome:
        """Store the entries not stored yet, in order; refused ones come back (raises AuditStoreError)."""
        ...

    def check_ready(self, time_limit_seconds: float | None = None) -> None:
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

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


@dataclass(frozen=True)
class SpoolFailure:
    """The last time the spool refused a record, and why (cleared by the next record it takes)."""

    at: float
    reason: str


class SpoolingAuditWriter:
    """The audit log's write side: spool first, then a background drain into the store."""

    def __init__(
        self,
        store: EntrySink,
        spool: Spool | None,
        *,
        asynchronous: bool = True,
        quarantine: Quarantine | None = None,
        min_free_bytes: int = MIN_FREE_BYTES,
        backlog_max_age_seconds: float = BACKLOG_MAX_AGE_SECONDS,
    ) -> None:
        self.store = store
        self.spool = spool
        self.quarantine = quarantine
        self.asynchronous = asynchronous
        self._known = _KnownEntries(_KNOWN_ENTRIES_MAX)
        self._drain_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._failures = 0
        self._failing_since = 0.0
        self._last_failure_log = 0.0
        self._next_attempt = 0.0
        self.spool_failure: SpoolFailure | None = None
        self._probe = ReadinessProbe(
            spool=spool,
            quarantine=quarantine,
            store_check=lambda seconds: self.store.check_ready(seconds),
            spool_failure=lambda: self.spool_failure.reason if self.spool_failure is not None else None,
            clear_spool_failure=self._clear_spool_failure,
            min_free_bytes=min_free_bytes,
            backlog_max_age_seconds=backlog_max_age_seconds,
        )
        self._thread: threading.Thread | None = None
        if asynchronous:
            self._thread = threading.Thread(target=self._run, name="mgcds-audit-writer", daemon=True)
            self._thread.start()

    # -- the AuditWriter side -----------------------------------------------------------------------------------

    def record_call(self, record: CallRecord) -> str:
        """Record one service call once it is complete in the spool; returns its id (raises AuditNotDurable)."""
        occurred_at = aware(record.occurred_at)
        if occurred_at is not record.occurred_at:  # replace() only when needed: it costs on every call otherwise
            record = replace(record, occurred_at=occurred_at)
        entry = make_entry(AuditEventType.SERVICE_CALL, call_to_payload(record), plain=CALL_PAYLOAD_PLAIN_FIELDS)
        return self._submit([entry])[0]

    def record_feedback(self, record: FeedbackRecord) -> str:
        """Record one feedback item (raises AuditNotDurable)."""
        return self.record_feedback_items([record])[0]

    def record_feedback_items(self, records: Sequence[FeedbackRecord]) -> list[str]:
        """Record the items of one feedback call in one checked write: all are durable, or none (AuditNotDurable)."""
        entries = [
            make_entry(
                AuditEventType.FEEDBACK, feedback_to_payload(replace(record, occurred_at=aware(record.occurred_at)))
            )
            for record in records
        ]
        return self._submit(entries)

    def record_feedback_call(self, record: FeedbackCallRecord) -> str:
        """Record one feedback call that was not answered 200 (raises AuditNotDurable)."""
        record = replace(record, occurred_at=aware(record.occurred_at))
        return self._submit([make_entry(AuditEventType.FEEDBACK_CALL, feedback_call_to_payload(record))])[0]

    def _submit(self, entries: list[PendingEntry]) -> list[str]:
        if not entries:
            return []
        if self.spool is None:
            self._store_now(entries)
            return [entry.record_id for entry in entries]
        for entry in entries:
            self._known.put(entry)
        try:
            self.spool.append_lines([entry.payload_text for entry in entries])
        except (OSError, UnicodeError) as exc:
            # Fail closed: a record that is not complete on disk would be lost with this process, so the call it
            # belongs to must not be answered as if it were recorded. The EHR gets 503 and shows no card.
            for entry in entries:
                self._known.pop(entry.payload_text)
            reason = getattr(exc, "strerror", None) or str(exc)
            with self._state_lock:
                self.spool_failure = SpoolFailure(time.time(), reason)
            log.critical(
                "audit spool %s refused %d record(s) (%s): the call is answered 503",
                self.spool.path,
                len(entries),
                reason,
            )
            raise AuditNotDurable(f"the audit record could not be written to the local spool ({reason})") from exc
        if self.spool_failure is not None:
            with self._state_lock:
                if self.spool_failure is not None:
                    log.warning("audit spool %s takes records again", self.spool.path)
                self.spool_failure = None
        if self.asynchronous:
            if not self.failing:  # while the store is away the back-off decides, not each new record
                self._wake.set()
        else:
            self._drain_quietly(force=True)
        return [entry.record_id for entry in entries]

    def _store_now(self, entries: list[PendingEntry]) -> None:
        """No spool (the in-memory log): the record is durable only once the store has it."""
        try:
            outcome = self.store.append(entries)
        except AuditStoreError as exc:
            raise AuditNotDurable(f"the audit record could not be stored ({exc})") from exc
        if outcome.refused:
            entry, reason = outcome.refused[0]
            raise AuditNotDurable(f"the audit store refused record {entry.record_id}: {reason}")

    # -- draining -----------------------------------------------------------------------------------------------

    @property
    def failing(self) -> bool:
        """True while the store has refused or failed the last attempts (the writer is backing off)."""
        return self._failures > 0

    def _set_aside(self, line: str, reason: str) -> None:
        if self.quarantine is None:
            log.error("audit record refused by the store and no quarantine to keep it: %s", reason)
            return
        self.quarantine.add(line, reason)

    def _drain(self) -> int:
        if self.spool is None:
            return 0
        return self.spool.drain(self.store.append, refuse=self._set_aside, known=self._known.pop)

    def _drain_quietly(self, *, force: bool = False) -> bool:
        """One drain attempt under the lock; on failure back off exponentially. True when it succeeded."""
        if not force and time.monotonic() < self._next_attempt:
            return False
        with self._drain_lock:
            try:
                self._drain()
            except AuditStoreError as exc:
                self._note_failure(str(exc))
                return False
            except OSError as exc:
                self._note_failure(f"spool: {exc}")
                return False
            if self._failures:
                log.warning(
                    "audit store back after %d failed attempts over %.1f s; the spool was replayed",
                    self._failures,
                    time.monotonic() - self._failing_since,
                )
            self._failures = 0
            self._next_attempt = 0.0
            return True

    def retry_delay(self) -> float:
        """The wait before the next attempt after ``failures`` failed ones: 0.2 s doubling, at most 10 s."""
        return float(min(RETRY_MAX_SECONDS, RETRY_MIN_SECONDS * 2 ** max(0, min(self._failures - 1, 16))))

    def _note_failure(self, reason: str) -> None:
        now = time.monotonic()
        if self._failures == 0:
            self._failing_since = now
        self._failures += 1
        delay = self.retry_delay()
        self._next_attempt = now + delay
        first = self._failures == 1
        if not first and now - self._last_failure_log < _STILL_FAILING_LOG_SECONDS:
            return
        self._last_failure_log = now
        waiting = self.spool.backlog().records if self.spool is not None else 0
        if first:
            log.error(
                "audit store unavailable (%s); %d records wait in the spool; next attempt in %.1f s (backing off to "
                "%.0f s)",
                reason,
                waiting,
                delay,
                RETRY_MAX_SECONDS,
            )
        else:
            log.error(
                "audit store still unavailable after %d attempts over %.0f s (%s); %d records wait in the spool; "
                "next attempt in %.1f s",
                self._failures,
                now - self._failing_since,
                reason,
                waiting,
                delay,
            )

    def _run(self) -> None:
        while not self._stop.is_set():
            # While failing, sleep until the back-off ends (new records do not shorten it); otherwise until woken.
            timeout = max(0.0, self._next_attempt - time.monotonic()) if self.failing else _IDLE_POLL_SECONDS
            woken = self._wake.wait(timeout)
            self._wake.clear()
            if self._stop.is_set():
                return
            if woken and self._stop.wait(_COALESCE_SECONDS):
                return
            try:
                self._drain_quietly()
            except Exception:  # the writer thread must outlive any surprise; records stay in the spool
                log.exception("audit writer: unexpected error while draining; will retry")
                self._next_attempt = time.monotonic() + RETRY_MAX_SECONDS

    def has_pending(self) -> bool:
        """True while records wait for the store."""
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

    def redrive(self) -> tuple[int, int]:
        """Hand the quarantined records to the store again (``mgcds audit redrive``): (stored, still refused)."""
        if self.quarantine is None:
            return 0, 0
        with self._drain_lock:
            return self.quarantine.redrive(self.store.append)

    def _clear_spool_failure(self) -> None:
        with self._state_lock:
            if self.spool_failure is not None:
                log.warning("audit spool takes writes again (readiness probe); calls are recorded again")
            self.spool_failure = None

    def readiness(self) -> Readiness:
        """Spool, store, backlog and quarantine, each checked within a time limit (``/readyz``)."""
        return self._probe.check()

    def check_ready(self) -> None:
        """Raise AuditStoreError unless records can reach the store now."""
        # Readiness fails closed (take this instance out of rotation); see cds_service.audit.readiness.
        self.store.check_ready()

    def close(self) -> None:
        """Stop the writer after a last drain attempt; say what is left (it stays in the spool, durable)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=15)
        self._drain_quietly(force=True)
        if self.spool is not None:
            left = self.spool.backlog()
            if left.records:
                log.warning(
                    "audit writer closed: %s%d records (%d bytes, oldest from %s) wait in the spool %s; the next "
                    "process sharing it, or `mgcds audit replay`, stores them",
                    "about " if left.estimated else "",
                    left.records,
                    left.bytes,
                    left.oldest_occurred_at,
                    self.spool.path,
                )
            else:
                log.info("audit writer closed: every record is stored")
        if self.quarantine is not None and (held := self.quarantine.count()):
            log.error("audit writer closed: %d records are quarantined in %s", held, self.quarantine.path)
        self.store.dispose()


def open_audit_writer(
    url: str,
    spool_path: Path,
    *,
    asynchronous: bool = True,
    fsync: bool = False,
    time_limit_seconds: float | None = None,
    rotate_bytes: int | None = None,
    min_free_bytes: int = MIN_FREE_BYTES,
    backlog_max_age_seconds: float = BACKLOG_MAX_AGE_SECONDS,
) -> SpoolingAuditWriter:
    """The writer for a store URL with its spool and quarantine; the schema must exist (``mgcds audit init``)."""
    store = (
        SqlAuditAppender.open(url, time_limit_seconds=time_limit_seconds)
        if time_limit_seconds is not None
        else SqlAuditAppender.open(url)
    )
    spool = Spool(spool_path, fsync=fsync)
    if rotate_bytes is not None:
        spool.rotate_bytes = rotate_bytes
    return SpoolingAuditWriter(
        store,
        spool,
        asynchronous=asynchronous,
        quarantine=Quarantine(quarantine_path(spool_path)),
        min_free_bytes=min_free_bytes,
        backlog_max_age_seconds=backlog_max_age_seconds,
    )

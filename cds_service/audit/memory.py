"""InMemoryAuditLog: the in-memory AuditWriter and AuditReader (DESIGN.md principle 4), one object for both.

The same chain, schema and queries as the real store, in an in-memory SQLite database, with writes applied at once
(no spool, no thread). ``calls``, ``feedback`` and ``feedback_calls`` keep the records as given, for tests to
assert on. The CLI's evaluate and the tests use it; a service never does (its records would die with it).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from cds_service.audit.chain import ChainReport
from cds_service.audit.model import CallFilter, Readiness, StoredRecord, Summary
from cds_service.audit.records import CallRecord, FeedbackCallRecord, FeedbackRecord
from cds_service.audit.store import SqlAuditStore
from cds_service.audit.trends import TrendFilter, Trends
from cds_service.audit.writer import SpoolingAuditWriter


class InMemoryAuditLog:
    """Writes straight into an in-memory store and reads it back."""

    def __init__(self) -> None:
        self.store = SqlAuditStore("sqlite://")
        self.store.init_schema()
        self._writer = SpoolingAuditWriter(self.store, None, asynchronous=False)
        self.calls: list[CallRecord] = []
        self.feedback: list[FeedbackRecord] = []
        self.feedback_calls: list[FeedbackCallRecord] = []

    # -- AuditWriter ----------------------------------------------------------------------------------
    def record_call(self, record: CallRecord) -> str:
        """Keep the record and store it."""
        self.calls.append(record)
        return self._writer.record_call(record)

    def record_feedback(self, record: FeedbackRecord) -> str:
        """Keep the record and store it."""
        return self.record_feedback_items([record])[0]

    def record_feedback_items(self, records: Sequence[FeedbackRecord]) -> list[str]:
        """Keep the records and store them together."""
        ids = self._writer.record_feedback_items(records)
        self.feedback.extend(records)
        return ids

    def record_feedback_call(self, record: FeedbackCallRecord) -> str:
        """Keep the record and store it."""
        self.feedback_calls.append(record)
        return self._writer.record_feedback_call(record)

    def check_ready(self) -> None:
        """Always ready (the store is in this process)."""
        self.store.check_ready()

    def readiness(self) -> Readiness:
        """The store's check only: there is no spool and no quarantine."""
        return self._writer.readiness()

    def has_pending(self) -> bool:
        """Nothing ever waits: writes are applied at once."""
        return self._writer.has_pending()

    def flush(self, timeout: float = 5.0) -> bool:
        """Nothing to wait for."""
        return self._writer.flush(timeout)

    def replay(self) -> int:
        """Nothing is spooled."""
        return self._writer.replay()

    def redrive(self) -> tuple[int, int]:
        """Nothing is quarantined."""
        return self._writer.redrive()

    def close(self) -> None:
        """Drop the in-memory store."""
        self.store.dispose()

    # -- AuditReader ----------------------------------------------------------------------------------
    def verify(self) -> ChainReport:
        """Walk the chain."""
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
        """Every record in chain order."""
        return self.store.iter_records()

    # -- review insights ------------------------------------------------------------------------------
    def trends(self, filters: TrendFilter) -> Trends:
        """Weekly figures for reviewers."""
        return self.store.trends(filters)

    def get_many(self, record_ids: Sequence[str]) -> dict[str, StoredRecord]:
        """Stored records by id."""
        return self.store.get_many(record_ids)

    def feedback_on_cards(self, card_uuids: Sequence[str]) -> list[StoredRecord]:
        """Feedback naming these cards, linked or not."""
        return self.store.feedback_on_cards(card_uuids)

"""The one write path into the audit store: append entries to the hash chain, exactly once each, in order.

A batch either commits whole or not at all. When the store *refuses* a record (a value that does not fit its
column, a NUL character PostgreSQL text cannot hold, a constraint), the batch is split in halves until the refused
records are found; they come back in :class:`AppendOutcome.refused` with the reason (the writer quarantines them)
and every other record is stored, in order. When the store is *unavailable* (no connection, a timeout, a missing
schema) nothing is refused: AuditStoreError is raised and the whole batch waits in the spool for the next attempt.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, String, insert, select, update
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, SQLAlchemyError, StatementError

from cds_service.audit.chain import INDEX_FIELDS, entry_hash, indexed_value, sha256_hex
from cds_service.audit.deadline import StoreTimeout, time_limit
from cds_service.audit.index_keys import card_rows, feedback_row
from cds_service.audit.limits import has_control_character
from cds_service.audit.model import AppendOutcome, PendingEntry
from cds_service.audit.records import AuditEventType
from cds_service.audit.schema import (
    HEAD_ID,
    STATEMENT_TIMEOUT_SECONDS,
    cards_table,
    check_schema,
    create_store_engine,
    feedback_table,
    head_table,
    records_table,
)
from cds_service.errors import AuditStoreError

_REASON_MAX = 300


class _Refused(Exception):
    """The store refused the batch because of what is in it (not because it is unavailable)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class _Prepared:
    """An entry's rows, as far as they do not depend on its place in the chain."""

    entry: PendingEntry
    columns: Mapping[str, Any]
    payload_sha256: str
    cards: Sequence[Mapping[str, Any]]
    feedback: Mapping[str, Any] | None


def _describe(exc: BaseException) -> str:
    original = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    first_line = str(original).strip().splitlines()[0] if str(original).strip() else ""
    return f"the store refused it: {type(original).__name__}: {first_line}"[:_REASON_MAX]


def _misfit(table_columns: Any, values: Mapping[str, Any]) -> str | None:
    """Why a value would not fit its column, checked here so that SQLite refuses what PostgreSQL would."""
    for name, value in values.items():
        if not isinstance(value, str):
            continue
        kind = table_columns[name].type
        if isinstance(kind, String) and kind.length is not None and len(value) > kind.length:
            return f"{name} is {len(value)} characters, the column holds {kind.length}"
        if name != "payload" and has_control_character(value):
            return f"{name} contains a control character"
        if "\x00" in value:
            return f"{name} contains a NUL character"
    return None


def _prepare(entry: PendingEntry) -> _Prepared:
    """The rows of one entry (raises _Refused when the record is malformed or would not fit)."""
    payload = entry.payload
    try:
        columns: dict[str, Any] = {
            "record_id": entry.record_id,
            "event_type": entry.event_type,
            **{name: indexed_value(payload, name) for name in INDEX_FIELDS},
            "payload": entry.payload_text,
        }
        cards = card_rows(entry.record_id, payload) if entry.event_type == AuditEventType.SERVICE_CALL else []
        feedback = feedback_row(entry.record_id, payload) if entry.event_type == AuditEventType.FEEDBACK else None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise _Refused(f"malformed audit record: {type(exc).__name__} {exc}"[:_REASON_MAX]) from exc
    problem = _misfit(records_table.c, columns)
    for row in cards:
        problem = problem or _misfit(cards_table.c, row)
    if feedback is not None:
        problem = problem or _misfit(feedback_table.c, feedback)
    if len({row["card_uuid"] for row in cards}) != len(cards):
        problem = problem or "two cards of one call share a uuid"
    if problem is not None:
        raise _Refused(f"it does not fit the store: {problem}")
    return _Prepared(entry, columns, sha256_hex(entry.payload_text), cards, feedback)


class SqlAuditAppender:
    """Appends to the store (SQLite or PostgreSQL); database failures surface as AuditStoreError."""

    def __init__(self, engine: Engine, *, time_limit_seconds: float = STATEMENT_TIMEOUT_SECONDS) -> None:
        self.engine = engine
        self.time_limit_seconds = time_limit_seconds

    @classmethod
    def open(cls, url: str, *, time_limit_seconds: float = STATEMENT_TIMEOUT_SECONDS) -> SqlAuditAppender:
        """An appender to the store at ``url`` on a read-write engine of its own."""
        engine = create_store_engine(url, statement_timeout_seconds=time_limit_seconds)
        return cls(engine, time_limit_seconds=time_limit_seconds)

    def check_ready(self, time_limit_seconds: float | None = None) -> None:
        """Raise AuditStoreError unless the store answers, within the limit, with the schema this code writes."""
        check_schema(self.engine, time_limit_seconds or self.time_limit_seconds)

    def dispose(self) -> None:
        """Close pooled connections."""
        self.engine.dispose()

    def append(self, entries: Sequence[PendingEntry]) -> AppendOutcome:
        """Insert the entries not yet stored (by record id), in order; the refused ones come back with the reason."""
        refused: list[tuple[PendingEntry, str]] = []
        prepared: list[_Prepared] = []
        for entry in entries:
            try:
                prepared.append(_prepare(entry))
            except _Refused as exc:
                refused.append((entry, exc.reason))
        stored = self._append_splitting(prepared, refused) if prepared else 0
        return AppendOutcome(stored, tuple(refused))

    def _append_splitting(self, batch: Sequence[_Prepared], refused: list[tuple[PendingEntry, str]]) -> int:
        try:
            return self._transaction(batch)
        except _Refused as exc:
            if len(batch) == 1:
                refused.append((batch[0].entry, exc.reason))
                return 0
            middle = len(batch) // 2
            return self._append_splitting(batch[:middle], refused) + self._append_splitting(batch[middle:], refused)

    def _transaction(self, batch: Sequence[_Prepared]) -> int:
        what = f"appending {len(batch)} audit records"
        try:
            with self.engine.connect() as conn, time_limit(conn, self.time_limit_seconds, what), conn.begin():
                return self._append_locked(conn, batch)
        except StoreTimeout:
            raise
        except (DataError, IntegrityError) as exc:
            raise _Refused(_describe(exc)) from exc
        except DBAPIError as exc:
            raise AuditStoreError(f"cannot write the audit store: {type(exc).__name__}") from exc
        except StatementError as exc:
            # Not a database answer: a value the driver could not send (a type or encoding it cannot bind).
            raise _Refused(_describe(exc)) from exc
        except SQLAlchemyError as exc:
            raise AuditStoreError(f"cannot write the audit store: {type(exc).__name__}") from exc

    def _append_locked(self, conn: Connection, batch: Sequence[_Prepared]) -> int:
        head = conn.execute(
            select(head_table.c.seq, head_table.c.entry_hash).where(head_table.c.id == HEAD_ID).with_for_update()
        ).first()
        if head is None:
            raise AuditStoreError("audit chain head row missing: run `mgcds audit init`")
        seq, prev_hash = int(head.seq), str(head.entry_hash)
        ids = [item.entry.record_id for item in batch]
        already = set(
            conn.execute(select(records_table.c.record_id).where(records_table.c.record_id.in_(ids))).scalars()
        )
        batch_cards: dict[tuple[str, str], str] = {}
        rows: list[dict[str, Any]] = []
        card_rows_: list[Mapping[str, Any]] = []
        feedback_rows: list[Mapping[str, Any]] = []
        for item in batch:
            entry = item.entry
            if entry.record_id in already:
                continue  # replay of a record that reached the store before a crash: exactly once
            already.add(entry.record_id)
            linked: str | None = None
            if item.feedback is not None:
                # Sealed into the chain when the card's call is already stored; readers link by the index anyway,
                # so feedback that arrives first is linked too once its call lands (issue 19, R3).
                key = (str(item.feedback["card_uuid"]), str(item.feedback["origin_key"]))
                linked = (
                    batch_cards.get(key)
                    or conn.execute(
                        select(cards_table.c.record_id)
                        .where(cards_table.c.card_uuid == key[0], cards_table.c.origin_key == key[1])
                        .limit(1)
                    ).scalar_one_or_none()
                )
                feedback_rows.append(item.feedback)
            seq += 1
            this_hash = entry_hash(
                seq=seq,
                record_id=entry.record_id,
                event_type=entry.event_type,
                linked_record_id=linked,
                payload_sha256=item.payload_sha256,
                prev_hash=prev_hash,
            )
            rows.append(
                {
                    **item.columns,
                    "seq": seq,
                    "linked_record_id": linked,
                    "payload_sha256": item.payload_sha256,
                    "prev_hash": prev_hash,
                    "entry_hash": this_hash,
                }
            )
            for card in item.cards:
                batch_cards.setdefault((str(card["card_uuid"]), str(card["origin_key"])), entry.record_id)
                card_rows_.append(card)
            prev_hash = this_hash
        if rows:
            conn.execute(insert(records_table), rows)
            if card_rows_:
                conn.execute(insert(cards_table), list(card_rows_))
            if feedback_rows:
                conn.execute(insert(feedback_table), list(feedback_rows))
            conn.execute(update(head_table).where(head_table.c.id == HEAD_ID).values(seq=seq, entry_hash=prev_hash))
        return len(rows)

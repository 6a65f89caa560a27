"""Reading the audit store: the review list and its counts, one record, the chain walk, every record in order.

The real AuditReader. It opens its engine read-only (see :mod:`cds_service.audit.schema`), so the review page and
``mgcds audit verify | list | show | export`` cannot change the store, and it holds no spool, so they cannot drain
one either.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Engine, and_, exists, func, not_, select
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.sql.elements import ColumnElement

from cds_service.audit.chain import ChainReport, verify_rows
from cds_service.audit.model import CallFilter, StoredRecord, Summary
from cds_service.audit.records import AuditEventType, format_timestamp
from cds_service.audit.schema import (
    HEAD_ID,
    READ_ONLY_OPTION,
    ROW_COLUMNS,
    cards_table,
    check_schema,
    create_store_engine,
    head_table,
    records_table,
)
from cds_service.errors import AuditStoreError


def row_to_record(row: Mapping[str, Any] | RowMapping) -> StoredRecord:
    """A records-table row as a StoredRecord (its payload parsed)."""
    return StoredRecord(
        seq=int(row["seq"]),
        record_id=row["record_id"],
        event_type=row["event_type"],
        occurred_at=row["occurred_at"],
        linked_record_id=row["linked_record_id"],
        payload=json.loads(row["payload"]),
        payload_sha256=row["payload_sha256"],
        prev_hash=row["prev_hash"],
        entry_hash=row["entry_hash"],
    )


class SqlAuditReader:
    """Queries over the store (SQLite or PostgreSQL); database failures surface as AuditStoreError."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def open_read_only(cls, url: str) -> SqlAuditReader:
        """A reader of the store at ``url`` on a read-only engine of its own."""
        return cls(create_store_engine(url, read_only=True))

    def check_ready(self) -> None:
        """Raise AuditStoreError unless the store answers and its schema is the one this code reads."""
        check_schema(self.engine)

    def close(self) -> None:
        """Close pooled connections."""
        self.engine.dispose()

    def count(self) -> int:
        """How many records the store holds."""
        with self._reading() as conn:
            return int(conn.execute(select(func.count()).select_from(records_table)).scalar_one())

    def head(self) -> tuple[int, str] | None:
        """The head row ``(seq, entry_hash)``, or None when it is missing."""
        with self._reading() as conn:
            row = conn.execute(
                select(head_table.c.seq, head_table.c.entry_hash).where(head_table.c.id == HEAD_ID)
            ).first()
        return (int(row.seq), str(row.entry_hash)) if row is not None else None

    def iter_rows(self, *, batch: int = 500) -> Iterator[dict[str, Any]]:
        """Every record row in chain order, fetched in keyset pages (no long-lived cursor)."""
        after = 0
        while True:
            with self._reading() as conn:
                page = [
                    dict(row._mapping)
                    for row in conn.execute(
                        select(*ROW_COLUMNS)
                        .where(records_table.c.seq > after)
                        .order_by(records_table.c.seq)
                        .limit(batch)
                    )
                ]
            if not page:
                return
            yield from page
            after = int(page[-1]["seq"])

    def iter_records(self) -> Iterator[StoredRecord]:
        """Every record in chain order."""
        for row in self.iter_rows():
            yield row_to_record(row)

    def verify(self) -> ChainReport:
        """Walk the whole chain; the report names the first broken link."""
        head = self.head()
        return verify_rows(self.iter_rows(), head)

    def get(self, record_id: str) -> StoredRecord | None:
        """One record by id."""
        with self._reading() as conn:
            row = conn.execute(select(*ROW_COLUMNS).where(records_table.c.record_id == record_id)).first()
        return row_to_record(row._mapping) if row is not None else None

    def feedback_for(self, record_ids: Sequence[str]) -> dict[str, list[StoredRecord]]:
        """Feedback records linked to each of these calls, in chain order."""
        result: dict[str, list[StoredRecord]] = {record_id: [] for record_id in record_ids}
        if not record_ids:
            return result
        with self._reading() as conn:
            rows = conn.execute(
                select(*ROW_COLUMNS)
                .where(records_table.c.linked_record_id.in_(list(record_ids)))
                .order_by(records_table.c.seq)
            ).all()
        for row in rows:
            record = row_to_record(row._mapping)
            result[str(record.linked_record_id)].append(record)
        return result

    def _call_conditions(self, filters: CallFilter) -> list[ColumnElement[bool]]:
        r = records_table.c
        conditions: list[ColumnElement[bool]] = [r.event_type == AuditEventType.SERVICE_CALL.value]
        if filters.patient_id:
            conditions.append(r.patient_id == filters.patient_id)
        if filters.user_id:
            conditions.append(r.user_id == filters.user_id)
        if filters.since is not None:
            conditions.append(r.occurred_at >= format_timestamp(filters.since))
        if filters.until is not None:
            conditions.append(r.occurred_at <= format_timestamp(filters.until))
        if filters.recommendation:
            conditions.append(
                exists().where(
                    and_(
                        cards_table.c.record_id == r.record_id,
                        cards_table.c.recommendation == filters.recommendation,
                    )
                )
            )
        if filters.outcome:
            feedback = records_table.alias("feedback")
            linked = and_(
                feedback.c.event_type == AuditEventType.FEEDBACK.value,
                feedback.c.linked_record_id == r.record_id,
            )
            if filters.outcome == "none":
                conditions.append(not_(exists().where(linked)))
            else:
                conditions.append(exists().where(and_(linked, feedback.c.outcome == filters.outcome)))
        return conditions

    def list_calls(self, filters: CallFilter, *, limit: int = 50, offset: int = 0) -> tuple[list[StoredRecord], int]:
        """Calls matching the filters, newest first, one page of them, and the total count."""
        conditions = self._call_conditions(filters)
        with self._reading() as conn:
            total = int(conn.execute(select(func.count()).select_from(records_table).where(*conditions)).scalar_one())
            rows = conn.execute(
                select(*ROW_COLUMNS).where(*conditions).order_by(records_table.c.seq.desc()).limit(limit).offset(offset)
            ).all()
        return [row_to_record(row._mapping) for row in rows], total

    def summary(self, filters: CallFilter) -> Summary:
        """Counts over the calls matching the filters and the feedback linked to them."""
        conditions = self._call_conditions(filters)
        calls = select(records_table.c.record_id).where(*conditions).subquery()
        fb = records_table.alias("fb")
        with self._reading() as conn:
            n_calls = int(conn.execute(select(func.count()).select_from(calls)).scalar_one())
            n_failed = int(
                conn.execute(
                    select(func.count())
                    .select_from(records_table)
                    .where(*conditions, records_table.c.http_status >= 400)
                ).scalar_one()
            )
            shown = conn.execute(
                select(cards_table.c.recommendation, func.count())
                .where(cards_table.c.record_id.in_(select(calls.c.record_id)))
                .group_by(cards_table.c.recommendation)
            ).all()
            outcomes = conn.execute(
                select(cards_table.c.recommendation, fb.c.outcome, func.count())
                .select_from(
                    fb.join(
                        cards_table,
                        and_(
                            cards_table.c.card_uuid == fb.c.card_uuid,
                            cards_table.c.record_id == fb.c.linked_record_id,
                        ),
                    )
                )
                .where(
                    fb.c.event_type == AuditEventType.FEEDBACK.value,
                    fb.c.linked_record_id.in_(select(calls.c.record_id)),
                )
                .group_by(cards_table.c.recommendation, fb.c.outcome)
            ).all()
            override_payloads = conn.execute(
                select(fb.c.payload).where(
                    fb.c.event_type == AuditEventType.FEEDBACK.value,
                    fb.c.outcome == "overridden",
                    fb.c.linked_record_id.in_(select(calls.c.record_id)),
                )
            ).scalars()
            reasons: dict[str, int] = {}
            for text in override_payloads:
                reason = json.loads(text).get("override_reason") or {}
                label = reason.get("code") or "(no reason given)"
                if reason.get("display"):
                    label = f"{label}: {reason['display']}"
                reasons[label] = reasons.get(label, 0) + 1
            unlinked = int(
                conn.execute(
                    select(func.count())
                    .select_from(records_table)
                    .where(
                        records_table.c.event_type == AuditEventType.FEEDBACK.value,
                        records_table.c.linked_record_id.is_(None),
                    )
                ).scalar_one()
            )
        per: dict[str, dict[str, int]] = {}
        for code, n in shown:
            per.setdefault(str(code), {"shown": 0, "accepted": 0, "overridden": 0})["shown"] = int(n)
        for code, outcome, n in outcomes:
            bucket = per.setdefault(str(code), {"shown": 0, "accepted": 0, "overridden": 0})
            bucket[str(outcome)] = bucket.get(str(outcome), 0) + int(n)
        return Summary(
            calls=n_calls,
            failed_calls=n_failed,
            cards_shown=sum(v["shown"] for v in per.values()),
            accepted=sum(v.get("accepted", 0) for v in per.values()),
            overridden=sum(v.get("overridden", 0) for v in per.values()),
            unlinked_feedback=unlinked,
            override_reasons=dict(sorted(reasons.items(), key=lambda item: (-item[1], item[0]))),
            per_recommendation=dict(sorted(per.items())),
        )

    def _reading(self) -> _ReadingContext:
        return _ReadingContext(self.engine)


class _ReadingContext:
    """A read connection whose database failures surface as AuditStoreError."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._conn: Connection | None = None

    def __enter__(self) -> Connection:
        try:
            self._conn = self._engine.connect().execution_options(**{READ_ONLY_OPTION: True})
        except SQLAlchemyError as exc:
            raise AuditStoreError(f"cannot read the audit store: {type(exc).__name__}") from exc
        return self._conn

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if self._conn is not None:
            self._conn.close()
        if isinstance(exc, SQLAlchemyError):
            raise AuditStoreError(f"cannot read the audit store: {type(exc).__name__}") from exc

"""The audit store: one SQLAlchemy Core code path for SQLite (default) and PostgreSQL.

Records are only ever inserted. The single-row head table is the one row that changes: it names the last
record and is updated in the same transaction as the insert, which both serialises appends across processes
(PostgreSQL row lock via SELECT ... FOR UPDATE; SQLite BEGIN IMMEDIATE) and lets ``verify`` notice a truncated
tail.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    and_,
    create_engine,
    event,
    exists,
    func,
    insert,
    not_,
    select,
    update,
)
from sqlalchemy.engine import RowMapping, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import StaticPool
from sqlalchemy.sql.elements import ColumnElement

from cds_service.audit.chain import GENESIS_HASH, ChainReport, entry_hash, sha256_hex, verify_rows
from cds_service.audit.records import AuditEventType, format_timestamp
from cds_service.errors import AuditStoreError

SCHEMA_VERSION = "1"
_HEAD_ID = 1
_ID = 64  # record ids are uuid4 hex (32); card uuids come from the engine (36); room for other ids

metadata = MetaData()

meta_table = Table(
    "mgcds_audit_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", String(256), nullable=False),
)

head_table = Table(
    "mgcds_audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    Column("entry_hash", String(64), nullable=False),
)

records_table = Table(
    "mgcds_audit_records",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("record_id", String(_ID), nullable=False, unique=True),
    Column("event_type", String(32), nullable=False),
    Column("occurred_at", String(32), nullable=False, index=True),
    Column("service_id", String(128), nullable=False),
    Column("patient_id", String(256), nullable=True, index=True),
    Column("user_id", String(256), nullable=True, index=True),
    Column("card_uuid", String(_ID), nullable=True, index=True),
    Column("outcome", String(32), nullable=True),
    Column("http_status", Integer, nullable=True),
    Column("linked_record_id", String(_ID), nullable=True, index=True),
    Column("payload", Text, nullable=False),
    Column("payload_sha256", String(64), nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("entry_hash", String(64), nullable=False),
)

cards_table = Table(
    "mgcds_audit_cards",
    metadata,
    Column("record_id", String(_ID), nullable=False),
    Column("card_uuid", String(_ID), nullable=False),
    Column("recommendation", String(64), nullable=False),
    PrimaryKeyConstraint("record_id", "card_uuid"),
    Index("ix_mgcds_audit_cards_card_uuid", "card_uuid"),
    Index("ix_mgcds_audit_cards_recommendation", "recommendation"),
)

_ROW_COLUMNS = list(records_table.c)
READ_ONLY_OPTION = "mgcds_read_only"


@dataclass(frozen=True)
class PendingEntry:
    """A record on its way into the store: id, type, canonical payload text and the parsed payload."""

    record_id: str
    event_type: str
    payload_text: str
    payload: Mapping[str, Any]


@dataclass(frozen=True)
class StoredRecord:
    """A record as stored, with its place in the chain."""

    seq: int
    record_id: str
    event_type: str
    occurred_at: str
    linked_record_id: str | None
    payload: Mapping[str, Any]
    payload_sha256: str
    prev_hash: str
    entry_hash: str


@dataclass(frozen=True)
class CallFilter:
    """Filters of the review list (all optional; ``outcome`` is accepted, overridden or none)."""

    patient_id: str | None = None
    user_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    recommendation: str | None = None
    outcome: str | None = None


@dataclass(frozen=True)
class Summary:
    """What the reviewers count: cards shown, accepted, overridden (with reasons), per recommendation code."""

    calls: int
    failed_calls: int
    cards_shown: int
    accepted: int
    overridden: int
    unlinked_feedback: int
    override_reasons: dict[str, int]
    per_recommendation: dict[str, dict[str, int]]


def normalise_url(url: str) -> str:
    """Use psycopg 3 for ``postgresql://`` URLs (SQLAlchemy would otherwise look for psycopg2)."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _sqlite_setup(engine: Engine, *, wal: bool) -> None:
    # pysqlite would begin lazily and DEFERRED; take the write lock at BEGIN instead, so two processes never
    # read the same head and both append after it.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        if wal:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # Readers take no write lock (WAL lets them read beside a writer).
        read_only = connection.get_execution_options().get(READ_ONLY_OPTION, False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def create_store_engine(url: str) -> Engine:
    """A SQLAlchemy engine for an audit URL (SQLite file in WAL mode, in-memory SQLite, or PostgreSQL)."""
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database in {"", ":memory:"}:
            engine = create_engine("sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False})
            _sqlite_setup(engine, wal=False)
            return engine
        Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 10})
        _sqlite_setup(engine, wal=True)
        return engine
    if parsed.get_backend_name() == "postgresql":
        return create_engine(url, pool_pre_ping=True, pool_size=2, connect_args={"connect_timeout": 3})
    raise AuditStoreError(f"unsupported audit store backend: {parsed.get_backend_name()}")


def _row_to_record(row: Mapping[str, Any] | RowMapping) -> StoredRecord:
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


class SqlAuditStore:
    """The append-only store (SQLite or PostgreSQL); database failures surface as AuditStoreError."""

    def __init__(self, url: str) -> None:
        self.url = normalise_url(url)
        self.engine = create_store_engine(self.url)

    @property
    def backend(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.engine.dialect.name

    def dispose(self) -> None:
        """Close pooled connections."""
        self.engine.dispose()

    # -- schema -----------------------------------------------------------------------------------------
    def init_schema(self) -> None:
        """Create the tables and the head row if absent (``mgcds audit init``); safe to repeat."""
        try:
            metadata.create_all(self.engine, checkfirst=True)
            with self.engine.begin() as conn:
                if conn.execute(select(meta_table.c.value).where(meta_table.c.key == "schema_version")).first() is None:
                    conn.execute(insert(meta_table).values(key="schema_version", value=SCHEMA_VERSION))
                if conn.execute(select(head_table.c.id).where(head_table.c.id == _HEAD_ID)).first() is None:
                    conn.execute(insert(head_table).values(id=_HEAD_ID, seq=0, entry_hash=GENESIS_HASH))
        except SQLAlchemyError as exc:
            raise AuditStoreError(f"cannot initialise the audit store: {type(exc).__name__}") from exc

    def check_ready(self) -> None:
        """Raise AuditStoreError unless the store answers and its schema is the one this code writes."""
        try:
            with self.engine.connect() as conn:
                version = conn.execute(
                    select(meta_table.c.value).where(meta_table.c.key == "schema_version")
                ).scalar_one_or_none()
                head = conn.execute(select(head_table.c.seq).where(head_table.c.id == _HEAD_ID)).first()
        except SQLAlchemyError as exc:
            raise AuditStoreError(
                f"audit store unavailable or not initialised (run `mgcds audit init`): {type(exc).__name__}"
            ) from exc
        if version != SCHEMA_VERSION:
            raise AuditStoreError(
                f"audit schema version {version!r}, expected {SCHEMA_VERSION}: run `mgcds audit init`"
            )
        if head is None:
            raise AuditStoreError("audit chain head row missing: run `mgcds audit init`")

    # -- the one write path -----------------------------------------------------------------------------
    def append(self, entries: Sequence[PendingEntry]) -> int:
        """Insert the entries not yet stored (by record id), in order, returns how many."""
        if not entries:
            return 0
        try:
            with self.engine.begin() as conn:
                return self._append_locked(conn, entries)
        except SQLAlchemyError as exc:
            raise AuditStoreError(f"cannot write the audit store: {type(exc).__name__}") from exc

    def _append_locked(self, conn: Connection, entries: Sequence[PendingEntry]) -> int:
        head = conn.execute(
            select(head_table.c.seq, head_table.c.entry_hash).where(head_table.c.id == _HEAD_ID).with_for_update()
        ).first()
        if head is None:
            raise AuditStoreError("audit chain head row missing: run `mgcds audit init`")
        seq, prev_hash = int(head.seq), str(head.entry_hash)
        ids = [entry.record_id for entry in entries]
        already = set(
            conn.execute(select(records_table.c.record_id).where(records_table.c.record_id.in_(ids))).scalars()
        )
        batch_cards: dict[str, str] = {}
        rows: list[dict[str, Any]] = []
        card_rows: list[dict[str, Any]] = []
        for entry in entries:
            if entry.record_id in already:
                continue  # replay of a record that reached the store before a crash: exactly once
            already.add(entry.record_id)
            payload = entry.payload
            linked: str | None = None
            if entry.event_type == AuditEventType.FEEDBACK:
                card_uuid = str(payload["card_uuid"])
                linked = (
                    batch_cards.get(card_uuid)
                    or conn.execute(
                        select(cards_table.c.record_id).where(cards_table.c.card_uuid == card_uuid).limit(1)
                    ).scalar_one_or_none()
                )
            seq += 1
            payload_sha = sha256_hex(entry.payload_text)
            this_hash = entry_hash(
                seq=seq,
                record_id=entry.record_id,
                event_type=entry.event_type,
                linked_record_id=linked,
                payload_sha256=payload_sha,
                prev_hash=prev_hash,
            )
            rows.append(
                {
                    "seq": seq,
                    "record_id": entry.record_id,
                    "event_type": entry.event_type,
                    "occurred_at": payload["occurred_at"],
                    "service_id": payload["service_id"],
                    "patient_id": payload.get("patient_id"),
                    "user_id": payload.get("user_id"),
                    "card_uuid": payload.get("card_uuid"),
                    "outcome": payload.get("outcome"),
                    "http_status": payload.get("http_status"),
                    "linked_record_id": linked,
                    "payload": entry.payload_text,
                    "payload_sha256": payload_sha,
                    "prev_hash": prev_hash,
                    "entry_hash": this_hash,
                }
            )
            if entry.event_type == AuditEventType.SERVICE_CALL:
                for card in payload.get("cards", ()):
                    batch_cards.setdefault(card["uuid"], entry.record_id)
                    card_rows.append(
                        {
                            "record_id": entry.record_id,
                            "card_uuid": card["uuid"],
                            "recommendation": card["recommendation"],
                        }
                    )
            prev_hash = this_hash
        if rows:
            conn.execute(insert(records_table), rows)
            if card_rows:
                conn.execute(insert(cards_table), card_rows)
            conn.execute(update(head_table).where(head_table.c.id == _HEAD_ID).values(seq=seq, entry_hash=prev_hash))
        return len(rows)

    # -- reading ----------------------------------------------------------------------------------------
    def count(self) -> int:
        """How many records the store holds."""
        with self._reading() as conn:
            return int(conn.execute(select(func.count()).select_from(records_table)).scalar_one())

    def head(self) -> tuple[int, str] | None:
        """The head row ``(seq, entry_hash)``, or None when it is missing."""
        with self._reading() as conn:
            row = conn.execute(
                select(head_table.c.seq, head_table.c.entry_hash).where(head_table.c.id == _HEAD_ID)
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
                        select(*_ROW_COLUMNS)
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
            yield _row_to_record(row)

    def verify(self) -> ChainReport:
        """Walk the whole chain; the report names the first broken link."""
        head = self.head()
        return verify_rows(self.iter_rows(), head)

    def get(self, record_id: str) -> StoredRecord | None:
        """One record by id."""
        with self._reading() as conn:
            row = conn.execute(select(*_ROW_COLUMNS).where(records_table.c.record_id == record_id)).first()
        return _row_to_record(row._mapping) if row is not None else None

    def feedback_for(self, record_ids: Sequence[str]) -> dict[str, list[StoredRecord]]:
        """Feedback records linked to each of these calls, in chain order."""
        result: dict[str, list[StoredRecord]] = {record_id: [] for record_id in record_ids}
        if not record_ids:
            return result
        with self._reading() as conn:
            rows = conn.execute(
                select(*_ROW_COLUMNS)
                .where(records_table.c.linked_record_id.in_(list(record_ids)))
                .order_by(records_table.c.seq)
            ).all()
        for row in rows:
            record = _row_to_record(row._mapping)
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
                select(*_ROW_COLUMNS)
                .where(*conditions)
                .order_by(records_table.c.seq.desc())
                .limit(limit)
                .offset(offset)
            ).all()
        return [_row_to_record(row._mapping) for row in rows], total

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

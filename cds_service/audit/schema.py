"""The audit store's tables and engines: one SQLAlchemy Core schema for SQLite (default) and PostgreSQL.

Records are only ever inserted. The single-row head table is the one row that changes: it names the last record
and is updated in the same transaction as the insert, which both serialises appends across processes (PostgreSQL
row lock via SELECT ... FOR UPDATE; SQLite BEGIN IMMEDIATE) and lets ``verify`` notice a truncated tail.

Two index tables are derived from the hashed payloads in the same transaction, and ``verify`` recomputes them:
``mgcds_audit_cards`` (every card a call returned: who it was issued to, for whom) and ``mgcds_audit_feedback``
(every feedback item: which card, from whom, what was answered when). A feedback item is linked to its call by
joining the two at read time, so the link holds whichever of the two reached the store first (issue 19, R3).

An engine opened ``read_only`` cannot write, whatever the code above it does: SQLite opens the file read-only
(``mode=ro``), PostgreSQL sessions start with ``default_transaction_read_only``. Readers use it.

Nothing waits on the network without a limit (issue 19, R4): PostgreSQL connections carry a connect timeout, TCP
keepalives and ``tcp_user_timeout`` (a dead peer is noticed in seconds, not after the kernel's 15 minutes), and a
server-side ``statement_timeout`` and ``idle_in_transaction_session_timeout``; the work done on a connection is
also bounded on the client side (:mod:`cds_service.audit.deadline`), which holds when the network swallows
packets and no server timeout can fire.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import quote

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
    create_engine,
    event,
    insert,
    inspect,
    select,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import StaticPool

from cds_service.audit import limits
from cds_service.audit.chain import GENESIS_HASH, indexed_value
from cds_service.audit.deadline import StoreTimeout, time_limit
from cds_service.audit.index_keys import card_rows, feedback_row
from cds_service.errors import AuditStoreError

log = logging.getLogger("mgcds.audit")

# 2: card index with origin and subject keys, feedback index (links at read time)
# 3: records.hook_instance, indexed (the review filter ?hook_instance=, mgcds audit list --hook-instance)
SCHEMA_VERSION = "3"
HEAD_ID = 1
_ID = limits.RECORD_ID_COLUMN
READ_ONLY_OPTION = "mgcds_read_only"
_SQLITE_TIMEOUT_SECONDS = 10
CONNECT_TIMEOUT_SECONDS = 3
# TCP keepalive on the PostgreSQL connection: a peer that vanished is detected after idle + interval * count
# seconds (11 s) even while we wait for an answer, instead of the kernel's default of two hours.
_KEEPALIVE = {"keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2, "keepalives_count": 3}
STATEMENT_TIMEOUT_SECONDS = 10.0  # the writer's default; readers get their own

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
    Column("occurred_at", String(limits.TIMESTAMP_COLUMN), nullable=False, index=True),
    Column("service_id", String(limits.SERVICE_ID_COLUMN), nullable=False),
    Column("patient_id", String(limits.CONTEXT_ID_COLUMN), nullable=True, index=True),
    Column("user_id", String(limits.CONTEXT_ID_COLUMN), nullable=True, index=True),
    # Added in schema 3 (nullable: `mgcds audit init` adds it to an older table and fills it from the payloads).
    Column("hook_instance", String(limits.HOOK_INSTANCE_COLUMN), nullable=True, index=True),
    Column("card_uuid", String(limits.CARD_ID_COLUMN), nullable=True, index=True),
    Column("outcome", String(limits.OUTCOME_COLUMN), nullable=True),
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
    Column("card_uuid", String(limits.CARD_ID_COLUMN), nullable=False),
    Column("recommendation", String(limits.RECOMMENDATION_COLUMN), nullable=False),
    # Added in schema 2 (nullable so that `mgcds audit init` can add them to a version 1 table, then fills them).
    Column("indicator", String(limits.INDICATOR_COLUMN), nullable=True),
    Column("origin_key", String(limits.KEY_COLUMN), nullable=True),
    Column("subject_key", String(limits.KEY_COLUMN), nullable=True),
    Column("occurred_at", String(limits.TIMESTAMP_COLUMN), nullable=True),
    PrimaryKeyConstraint("record_id", "card_uuid"),
    Index("ix_mgcds_audit_cards_card_uuid", "card_uuid"),
    Index("ix_mgcds_audit_cards_recommendation", "recommendation"),
    # Suppression: the cards one EHR showed for one patient, in one indexed lookup.
    Index("ix_mgcds_audit_cards_subject", "subject_key"),
)
CARD_COLUMNS_ADDED_IN_2 = ("indicator", "origin_key", "subject_key", "occurred_at")

feedback_table = Table(
    "mgcds_audit_feedback",
    metadata,
    Column("record_id", String(_ID), primary_key=True),
    Column("card_uuid", String(limits.CARD_ID_COLUMN), nullable=False),
    Column("origin_key", String(limits.KEY_COLUMN), nullable=False),
    Column("outcome", String(limits.OUTCOME_COLUMN), nullable=False),
    Column("reason_system", String(limits.REASON_SYSTEM_COLUMN), nullable=True),
    Column("reason_code", String(limits.REASON_CODE_COLUMN), nullable=True),
    Column("answered_at", String(limits.TIMESTAMP_COLUMN), nullable=False),
    Index("ix_mgcds_audit_feedback_card", "card_uuid", "origin_key"),
)

ROW_COLUMNS = list(records_table.c)


def normalise_url(url: str) -> str:
    """Use psycopg 3 for ``postgresql://`` URLs (SQLAlchemy would otherwise look for psycopg2)."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def is_in_memory(url: str) -> bool:
    """True for an in-memory SQLite URL: one store that exists only in this process."""
    parsed = make_url(normalise_url(url))
    return parsed.get_backend_name() == "sqlite" and (parsed.database or "") in {"", ":memory:"}


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
        cursor.execute(f"PRAGMA busy_timeout={_SQLITE_TIMEOUT_SECONDS * 1000}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # Readers take no write lock (WAL lets them read beside a writer).
        read_only = connection.get_execution_options().get(READ_ONLY_OPTION, False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def _read_only_sqlite(database: str) -> Engine:
    uri = f"file:{quote(str(Path(database).resolve()))}?mode=ro"

    def connect() -> sqlite3.Connection:
        # mode=ro: the file is never created or written through this engine (a missing file is an error).
        return sqlite3.connect(uri, uri=True, timeout=_SQLITE_TIMEOUT_SECONDS, check_same_thread=False)

    # The file URL (not the creator) decides the pool: a queue of connections, as for the writing engine.
    engine = create_engine(f"sqlite:///{database}", creator=connect)
    _sqlite_setup(engine, wal=False)
    return engine.execution_options(**{READ_ONLY_OPTION: True})


def postgres_connect_args(
    statement_timeout_seconds: float, connect_timeout_seconds: int = CONNECT_TIMEOUT_SECONDS
) -> dict[str, Any]:
    """libpq parameters that keep a PostgreSQL connection from waiting on a dead network for minutes."""
    return {
        "connect_timeout": max(2, connect_timeout_seconds),  # libpq's own minimum
        **_KEEPALIVE,
        # Unacknowledged data is given up on after this long (Linux TCP_USER_TIMEOUT), in milliseconds.
        "tcp_user_timeout": int(statement_timeout_seconds * 1000),
    }


def postgres_options(statement_timeout_seconds: float, *, read_only: bool) -> str:
    """Server-side limits for each session: a statement, and a transaction left idle by a client that vanished."""
    millis = int(statement_timeout_seconds * 1000)
    options = f"-c statement_timeout={millis} -c idle_in_transaction_session_timeout={max(millis * 3, 30000)}"
    return options + (" -c default_transaction_read_only=on" if read_only else "")


def create_store_engine(
    url: str,
    *,
    read_only: bool = False,
    statement_timeout_seconds: float = STATEMENT_TIMEOUT_SECONDS,
    connect_timeout_seconds: int = CONNECT_TIMEOUT_SECONDS,
) -> Engine:
    """A SQLAlchemy engine for an audit URL (SQLite file in WAL mode, in-memory SQLite, or PostgreSQL)."""
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database in {"", ":memory:"}:
            engine = create_engine("sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False})
            _sqlite_setup(engine, wal=False)
            return engine
        if read_only:
            return _read_only_sqlite(database)
        Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": _SQLITE_TIMEOUT_SECONDS})
        _sqlite_setup(engine, wal=True)
        return engine
    if parsed.get_backend_name() == "postgresql":
        # Added to the URL's own libpq options (a search_path, say), not instead of them.
        given = parsed.query.get("options")
        own = given if isinstance(given, str) else " ".join(given or ())
        limits_option = postgres_options(statement_timeout_seconds, read_only=read_only)
        parsed = parsed.update_query_dict({"options": f"{own} {limits_option}".strip()})
        # No pool_pre_ping: its ping runs before any client-side time limit can be set on the connection, so a
        # blackholed pooled connection would hang it. A dead connection fails the next statement instead, within
        # the time limit; the pool then discards it and the writer retries.
        return create_engine(
            parsed,
            pool_size=2,
            pool_recycle=300,
            connect_args=postgres_connect_args(statement_timeout_seconds, connect_timeout_seconds),
        )
    raise AuditStoreError(f"unsupported audit store backend: {parsed.get_backend_name()}")


def init_schema(engine: Engine) -> None:
    """Create the tables and the head row if absent, or bring a version 1 or 2 store to 3 (``mgcds audit init``)."""
    try:
        metadata.create_all(engine, checkfirst=True)
        with engine.begin() as conn:
            version = conn.execute(
                select(meta_table.c.value).where(meta_table.c.key == "schema_version")
            ).scalar_one_or_none()
            if version is None:
                conn.execute(insert(meta_table).values(key="schema_version", value=SCHEMA_VERSION))
            elif version in {"1", "2"}:
                if version == "1":
                    _migrate_from_1(conn)
                _migrate_from_2(conn)
                conn.execute(
                    update(meta_table).where(meta_table.c.key == "schema_version").values(value=SCHEMA_VERSION)
                )
            if conn.execute(select(head_table.c.id).where(head_table.c.id == HEAD_ID)).first() is None:
                conn.execute(insert(head_table).values(id=HEAD_ID, seq=0, entry_hash=GENESIS_HASH))
    except SQLAlchemyError as exc:
        raise AuditStoreError(f"cannot initialise the audit store: {type(exc).__name__}") from exc


def _migrate_from_1(conn: Connection) -> None:
    """Add the card index's new columns and fill both index tables from the hashed payloads (records unchanged)."""
    present = {column["name"] for column in inspect(conn).get_columns(cards_table.name)}
    for name in CARD_COLUMNS_ADDED_IN_2:
        if name not in present:
            column = cards_table.c[name]
            ddl_type = column.type.compile(dialect=conn.dialect)
            conn.exec_driver_sql(f"ALTER TABLE {cards_table.name} ADD COLUMN {name} {ddl_type}")
    for index in cards_table.indexes:
        index.create(conn, checkfirst=True)
    after = 0
    migrated = 0
    while True:
        rows = conn.execute(
            select(records_table.c.seq, records_table.c.record_id, records_table.c.event_type, records_table.c.payload)
            .where(records_table.c.seq > after)
            .order_by(records_table.c.seq)
            .limit(500)
        ).all()
        if not rows:
            break
        for row in rows:
            payload = json.loads(row.payload)
            if row.event_type == "service-call":
                for card in card_rows(row.record_id, payload):
                    conn.execute(
                        update(cards_table)
                        .where(
                            cards_table.c.record_id == card["record_id"], cards_table.c.card_uuid == card["card_uuid"]
                        )
                        .values({name: card[name] for name in CARD_COLUMNS_ADDED_IN_2})
                    )
            elif row.event_type == "feedback":
                conn.execute(insert(feedback_table).values(feedback_row(row.record_id, payload)))
            migrated += 1
        after = int(rows[-1].seq)
    log.warning(
        "audit store migrated from schema 1 to %s: index tables filled from %d records", SCHEMA_VERSION, migrated
    )


def _migrate_from_2(conn: Connection) -> None:
    """Add ``records.hook_instance`` with its index and fill it from the hashed payloads (records unchanged)."""
    column = records_table.c.hook_instance
    present = {c["name"] for c in inspect(conn).get_columns(records_table.name)}
    if column.name not in present:
        ddl_type = column.type.compile(dialect=conn.dialect)
        conn.exec_driver_sql(f"ALTER TABLE {records_table.name} ADD COLUMN {column.name} {ddl_type}")
    for index in records_table.indexes:
        index.create(conn, checkfirst=True)
    after = 0
    filled = 0
    while True:
        rows = conn.execute(
            select(records_table.c.seq, records_table.c.payload)
            .where(records_table.c.seq > after, records_table.c.event_type == "service-call")
            .order_by(records_table.c.seq)
            .limit(500)
        ).all()
        if not rows:
            break
        for row in rows:
            value = indexed_value(json.loads(row.payload), column.name)
            if value is not None:
                conn.execute(update(records_table).where(records_table.c.seq == row.seq).values(hook_instance=value))
                filled += 1
        after = int(rows[-1].seq)
    log.warning("audit store migrated to schema %s: hook_instance filled for %d calls", SCHEMA_VERSION, filled)


def check_schema(engine: Engine, time_limit_seconds: float = STATEMENT_TIMEOUT_SECONDS) -> None:
    """Raise AuditStoreError unless the store answers within the limit and its schema is the one this code uses."""
    try:
        with engine.connect() as conn, time_limit(conn, time_limit_seconds, "the audit store readiness probe"):
            conn.execution_options(**{READ_ONLY_OPTION: True})  # a probe takes no write lock
            version = conn.execute(
                select(meta_table.c.value).where(meta_table.c.key == "schema_version")
            ).scalar_one_or_none()
            head = conn.execute(select(head_table.c.seq).where(head_table.c.id == HEAD_ID)).first()
            conn.rollback()
    except StoreTimeout:
        raise
    except SQLAlchemyError as exc:
        raise AuditStoreError(
            f"audit store unavailable or not initialised (run `mgcds audit init`): {type(exc).__name__}"
        ) from exc
    if version != SCHEMA_VERSION:
        raise AuditStoreError(f"audit schema version {version!r}, expected {SCHEMA_VERSION}: run `mgcds audit init`")
    if head is None:
        raise AuditStoreError("audit chain head row missing: run `mgcds audit init`")

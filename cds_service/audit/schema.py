"""The audit store's tables and engines: one SQLAlchemy Core schema for SQLite (default) and PostgreSQL.

Records are only ever inserted. The single-row head table is the one row that changes: it names the last record
and is updated in the same transaction as the insert, which both serialises appends across processes (PostgreSQL
row lock via SELECT ... FOR UPDATE; SQLite BEGIN IMMEDIATE) and lets ``verify`` notice a truncated tail.

An engine opened ``read_only`` cannot write, whatever the code above it does: SQLite opens the file read-only
(``mode=ro``), PostgreSQL sessions start with ``default_transaction_read_only``. Readers use it.
"""

from __future__ import annotations

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
    select,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import StaticPool

from cds_service.audit.chain import GENESIS_HASH
from cds_service.errors import AuditStoreError

SCHEMA_VERSION = "1"
HEAD_ID = 1
_ID = 64  # record ids are uuid4 hex (32); card uuids come from the engine (36); room for other ids
READ_ONLY_OPTION = "mgcds_read_only"
_SQLITE_TIMEOUT_SECONDS = 10

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


def create_store_engine(url: str, *, read_only: bool = False) -> Engine:
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
        if read_only:
            # Added to the URL's own libpq options (a search_path, say), not instead of them.
            given = parsed.query.get("options")
            own = given if isinstance(given, str) else " ".join(given or ())
            parsed = parsed.update_query_dict({"options": f"{own} -c default_transaction_read_only=on".strip()})
        return create_engine(parsed, pool_pre_ping=True, pool_size=2, connect_args={"connect_timeout": 3})
    raise AuditStoreError(f"unsupported audit store backend: {parsed.get_backend_name()}")


def init_schema(engine: Engine) -> None:
    """Create the tables and the head row if absent (``mgcds audit init``); safe to repeat."""
    try:
        metadata.create_all(engine, checkfirst=True)
        with engine.begin() as conn:
            if conn.execute(select(meta_table.c.value).where(meta_table.c.key == "schema_version")).first() is None:
                conn.execute(insert(meta_table).values(key="schema_version", value=SCHEMA_VERSION))
            if conn.execute(select(head_table.c.id).where(head_table.c.id == HEAD_ID)).first() is None:
                conn.execute(insert(head_table).values(id=HEAD_ID, seq=0, entry_hash=GENESIS_HASH))
    except SQLAlchemyError as exc:
        raise AuditStoreError(f"cannot initialise the audit store: {type(exc).__name__}") from exc


def check_schema(engine: Engine) -> None:
    """Raise AuditStoreError unless the store answers and its schema is the one this code writes."""
    try:
        with engine.connect() as conn:
            conn.execution_options(**{READ_ONLY_OPTION: True})  # a probe takes no write lock
            version = conn.execute(
                select(meta_table.c.value).where(meta_table.c.key == "schema_version")
            ).scalar_one_or_none()
            head = conn.execute(select(head_table.c.seq).where(head_table.c.id == HEAD_ID)).first()
    except SQLAlchemyError as exc:
        raise AuditStoreError(
            f"audit store unavailable or not initialised (run `mgcds audit init`): {type(exc).__name__}"
        ) from exc
    if version != SCHEMA_VERSION:
        raise AuditStoreError(f"audit schema version {version!r}, expected {SCHEMA_VERSION}: run `mgcds audit init`")
    if head is None:
        raise AuditStoreError("audit chain head row missing: run `mgcds audit init`")

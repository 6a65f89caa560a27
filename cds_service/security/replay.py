"""Replay caches: each (issuer, jti) is accepted once within the token's lifetime (the ReplayCache seam).

:class:`SqlReplayCache` keeps the jtis in a table of the audit database, so every worker and instance sharing that
database sees the same ones and a restart forgets nothing: the default SQLite file serves every worker of one host,
PostgreSQL every instance (one table, the same on both). :class:`InMemoryReplayCache` serves one process (an
in-memory audit store: tests and tools). ``cds_service.factory.build_replay_cache`` chooses.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from cds_service.errors import InvalidCallerToken

MAX_JTI_CHARS = 512
TABLE_NAME = "mgcds_jwt_replay"
_SQLITE_BUSY_SECONDS = 10


class InMemoryReplayCache:
    """A per-process replay cache (one worker; with several workers use :class:`SqlReplayCache`)."""

    def __init__(self, *, clock: Callable[[], float] = time.time, purge_every: int = 1024) -> None:
        self._clock = clock
        self._entries: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()
        self._purge_every = purge_every
        self._calls = 0

    def seen(self, issuer: str, jti: str, expires_at: float) -> bool:
        """Record the jti; True when it was already recorded and has not expired (a replay)."""
        _check_expiry(expires_at)
        now = self._clock()
        with self._lock:
            self._calls += 1
            if self._calls % self._purge_every == 0:
                self._entries = {key: exp for key, exp in self._entries.items() if exp >= now}
            key = (issuer, jti)
            previous = self._entries.get(key)
            if previous is not None and previous >= now:
                return True
            self._entries[key] = expires_at
            return False


def _check_expiry(expires_at: float) -> None:
    # NaN compares false with everything: a NaN expiry would be recorded but never count as a replay.
    if not math.isfinite(expires_at):
        raise ValueError("a replay cache entry needs a finite expiry")


def replay_engine(url: str) -> sa.Engine:
    """An engine on the audit database for the replay table (SQLite file or PostgreSQL URL).

    SQLite gets WAL (readers beside the audit writer), a busy timeout, and BEGIN IMMEDIATE (the write lock is taken
    before the test-and-set, never upgraded half-way). Its connections are pooled: opening one per call tripled the
    cost of the check (2.4 ms instead of 0.9 ms per authenticated call).
    """
    from cds_service.audit.schema import normalise_url

    url = normalise_url(url)
    parsed = sa.make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return sa.create_engine(parsed, pool_pre_ping=True, pool_size=2, connect_args={"connect_timeout": 3})
    Path(parsed.database or ".").parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, connect_args={"timeout": _SQLITE_BUSY_SECONDS, "check_same_thread": False})

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={_SQLITE_BUSY_SECONDS * 1000}")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


class SqlReplayCache:
    """A replay cache in a database table, shared by every worker and instance (PostgreSQL or SQLite)."""

    def __init__(
        self,
        engine: sa.Engine,
        *,
        table_name: str = TABLE_NAME,
        clock: Callable[[], float] = time.time,
        purge_every: int = 256,
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._purge_every = purge_every
        self._calls = 0
        metadata = sa.MetaData()
        self._table = sa.Table(
            table_name,
            metadata,
            sa.Column("issuer", sa.String(2048), primary_key=True),
            sa.Column("jti", sa.String(MAX_JTI_CHARS), primary_key=True),
            sa.Column("expires_at", sa.Float, nullable=False),
            sa.Index(f"ix_{table_name}_expires_at", "expires_at"),
        )
        # IF NOT EXISTS: every worker starts at once and creates the table if it is missing; a check-then-create
        # would race between them.
        for attempt in range(2):
            try:
                with engine.begin() as conn:
                    conn.execute(sa.schema.CreateTable(self._table, if_not_exists=True))
                    for index in self._table.indexes:
                        conn.execute(sa.schema.CreateIndex(index, if_not_exists=True))
                break
            except (sa.exc.IntegrityError, sa.exc.ProgrammingError):
                # PostgreSQL can still collide on its catalogue when two workers create at the same instant.
                if attempt:
                    raise
        # Nothing stays open from construction: gunicorn's master builds an app (to check the configuration) and
        # then forks; a pooled connection inherited by the workers must not exist.
        engine.dispose()

    def seen(self, issuer: str, jti: str, expires_at: float) -> bool:
        """Record the jti; True when it was already recorded and has not expired (a replay)."""
        _check_expiry(expires_at)
        now = self._clock()
        table = self._table
        self._calls += 1
        try:
            with self._engine.begin() as conn:
                if self._calls % self._purge_every == 0:
                    conn.execute(sa.delete(table).where(table.c.expires_at < now))
                conn.execute(
                    sa.delete(table).where(table.c.issuer == issuer, table.c.jti == jti, table.c.expires_at < now)
                )
                # The primary key makes the insert the atomic test-and-set across workers.
                conn.execute(sa.insert(table).values(issuer=issuer, jti=jti, expires_at=expires_at))
        except sa.exc.IntegrityError:
            return True
        except sa.exc.SQLAlchemyError as exc:
            # Fail closed: a jti we cannot record could be replayed, so the token is refused (401, never "not seen").
            raise InvalidCallerToken(f"replay cache unavailable: {type(exc).__name__}", issuer=issuer) from exc
        return False

    def close(self) -> None:
        """Release pooled connections."""
        self._engine.dispose()

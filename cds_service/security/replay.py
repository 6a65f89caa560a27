"""Replay caches: each (issuer, jti) is accepted once within the token's lifetime (the ReplayCache seam).

:class:`InMemoryReplayCache` serves one process; :class:`SqlReplayCache` keeps the jtis in a database table, so
every worker and instance sharing that database sees the same ones. Which one a process uses is chosen in
``cds_service.factory``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import sqlalchemy as sa

MAX_JTI_CHARS = 512


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


class SqlReplayCache:
    """A replay cache in a database table, shared by every worker and instance (PostgreSQL or SQLite)."""

    def __init__(
        self,
        engine: sa.Engine,
        *,
        table_name: str = "mgcds_jwt_replay",
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
            sa.Column("expires_at", sa.Float, nullable=False, index=True),
        )
        metadata.create_all(engine, checkfirst=True)

    def seen(self, issuer: str, jti: str, expires_at: float) -> bool:
        """Record the jti; True when it was already recorded and has not expired (a replay)."""
        now = self._clock()
        table = self._table
        self._calls += 1
        # Fail closed: a database error propagates (the caller answers 401/500), never "not seen".
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
        return False

    def close(self) -> None:
        """Release pooled connections."""
        self._engine.dispose()

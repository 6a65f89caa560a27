"""A client-side time limit on the work done over one database connection.

Server-side timeouts cannot fire when the network swallows the query (a blackholed route, a stalled proxy), and TCP
keepalive cannot either when something on the path still acknowledges. So the audit store bounds its own waiting:
a deadline armed with the work aborts the connection from another thread when the limit passes (PostgreSQL: the
socket is shut down, so the blocked read returns at once; SQLite: ``interrupt()``), logs an error naming what
stalled, and the caller gets :class:`StoreTimeout` (an AuditStoreError) instead of waiting for the kernel.

One watchdog thread per process keeps every deadline (:class:`Watchdog`): a ``threading.Timer`` per operation
started a thread each time, which cost more CPU than the indexed query it guarded on the hook path (0.6 of 1.0 ms
per suppression read, docs/performance.md round 2).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError

from cds_service.errors import AuditStoreError

log = logging.getLogger("mgcds.audit")


class StoreTimeout(AuditStoreError):
    """Work on the audit store took longer than its time limit; the connection was aborted."""


def abort_connection(dbapi_connection: Any) -> None:
    """Make every blocked or future operation on this DBAPI connection fail now (from any thread)."""
    if isinstance(dbapi_connection, sqlite3.Connection):
        dbapi_connection.interrupt()
        return
    pgconn = getattr(dbapi_connection, "pgconn", None)  # psycopg 3
    fd = getattr(pgconn, "socket", None) if pgconn is not None else None
    if not isinstance(fd, int) or fd < 0:
        return
    # shutdown() acts on the socket, not on the descriptor: shutting down a duplicate wakes the thread blocked on
    # the original, and closing the duplicate leaves psycopg's own descriptor for psycopg to close.
    duplicate = socket.socket(fileno=os.dup(fd))
    try:
        duplicate.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed by the peer: the blocked call has failed by itself
    finally:
        duplicate.close()


class Watchdog:
    """Runs callbacks at their deadlines from one daemon thread, started on first use (again in a forked child)."""

    def __init__(self) -> None:
        self._reset()
        if hasattr(os, "register_at_fork"):
            # gunicorn forks its workers: the child has none of the parent's threads, and the lock may have been
            # held at the fork. Each child starts afresh.
            os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._deadlines: list[tuple[float, int]] = []  # heap of (deadline, token)
        self._pending: dict[int, Callable[[], None]] = {}
        self._tokens = itertools.count()
        self._thread: threading.Thread | None = None

    def arm(self, seconds: float, callback: Callable[[], None]) -> int:
        """Run ``callback`` in the watchdog's thread after ``seconds`` unless cancelled; returns the token."""
        deadline = time.monotonic() + seconds
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="mgcds-store-watchdog", daemon=True)
                self._thread.start()
            token = next(self._tokens)
            self._pending[token] = callback
            heapq.heappush(self._deadlines, (deadline, token))
            if self._deadlines[0][1] == token:
                self._wake.notify()  # the earliest deadline changed
        return token

    def cancel(self, token: int) -> None:
        """The callback will not run (unless it is running already, as with ``threading.Timer.cancel``)."""
        with self._lock:
            self._pending.pop(token, None)

    def _run(self) -> None:
        with self._lock:
            while True:
                while self._deadlines and self._deadlines[0][1] not in self._pending:
                    heapq.heappop(self._deadlines)  # cancelled
                if not self._deadlines:
                    self._wake.wait()
                    continue
                deadline, token = self._deadlines[0]
                wait = deadline - time.monotonic()
                if wait > 0:
                    self._wake.wait(wait)
                    continue
                heapq.heappop(self._deadlines)
                callback = self._pending.pop(token)
                self._lock.release()
                try:
                    callback()
                except Exception:  # the watchdog must outlive any callback
                    log.exception("audit store: a time-limit callback failed")
                finally:
                    self._lock.acquire()


WATCHDOG = Watchdog()


@contextmanager
def time_limit(conn: Connection, seconds: float, what: str) -> Iterator[None]:
    """Abort ``conn`` if the block takes longer than ``seconds``; the block then raises :class:`StoreTimeout`."""
    dbapi_connection = conn.connection.dbapi_connection
    fired = threading.Event()

    def expire() -> None:
        fired.set()
        log.error("audit store: %s took longer than %.1f s; its connection was aborted", what, seconds)
        try:
            abort_connection(dbapi_connection)
        except Exception:  # the timer thread must not die noisily; the work will still be abandoned
            log.exception("audit store: aborting a stalled connection failed")

    token = WATCHDOG.arm(seconds, expire)
    try:
        yield
    except (SQLAlchemyError, OSError) as exc:
        if fired.is_set():
            raise StoreTimeout(f"{what} took longer than {seconds:.1f} s (the audit store stalled)") from exc
        raise
    finally:
        WATCHDOG.cancel(token)
        if fired.is_set() and not conn.invalidated:
            conn.invalidate()  # never hand an aborted connection back to the pool

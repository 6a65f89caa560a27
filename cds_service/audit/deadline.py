"""A client-side time limit on the work done over one database connection.

Server-side timeouts cannot fire when the network swallows the query (a blackholed route, a stalled proxy), and TCP
keepalive cannot either when something on the path still acknowledges. So the audit store bounds its own waiting:
a timer started with the work aborts the connection from another thread when the limit passes (PostgreSQL: the
socket is shut down, so the blocked read returns at once; SQLite: ``interrupt()``), logs an error naming what
stalled, and the caller gets :class:`StoreTimeout` (an AuditStoreError) instead of waiting for the kernel.
"""

from __future__ import annotations

import logging
import os
import socket
import sqlite3
import threading
from collections.abc import Iterator
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

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
    try:
        yield
    except (SQLAlchemyError, OSError) as exc:
        if fired.is_set():
            raise StoreTimeout(f"{what} took longer than {seconds:.1f} s (the audit store stalled)") from exc
        raise
    finally:
        timer.cancel()
        if fired.is_set() and not conn.invalidated:
            conn.invalidate()  # never hand an aborted connection back to the pool

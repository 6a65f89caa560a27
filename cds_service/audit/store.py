"""SqlAuditStore: one read-write engine with the schema, the append path and the queries over it.

What ``mgcds audit init``, the in-memory audit log and the tests use. The service itself writes through
:class:`cds_service.audit.writer.SpoolingAuditWriter` (over a :class:`SqlAuditAppender`) and reads through a
:class:`SqlAuditReader` on a read-only engine of its own.
"""

from __future__ import annotations

from cds_service.audit.schema import STATEMENT_TIMEOUT_SECONDS, create_store_engine, init_schema, normalise_url
from cds_service.audit.sqlread import SqlAuditReader
from cds_service.audit.sqlwrite import SqlAuditAppender


class SqlAuditStore(SqlAuditAppender, SqlAuditReader):
    """The store at ``url``: schema, appends and queries on one engine."""

    def __init__(self, url: str) -> None:
        self.url = normalise_url(url)
        engine = create_store_engine(self.url)
        SqlAuditAppender.__init__(self, engine)
        SqlAuditReader.__init__(self, engine, time_limit_seconds=STATEMENT_TIMEOUT_SECONDS)

    @property
    def backend(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.engine.dialect.name

    def init_schema(self) -> None:
        """Create the tables and the head row if absent (``mgcds audit init``); safe to repeat."""
        init_schema(self.engine)

    def close(self) -> None:
        """Close pooled connections."""
        self.engine.dispose()


def init_audit_store(url: str) -> None:
    """Create or check the schema (``mgcds audit init``)."""
    store = SqlAuditStore(url)
    try:
        store.init_schema()
        store.check_ready()
    finally:
        store.dispose()

"""The append-only, hash-chained audit log: see docs/audit.md."""

from __future__ import annotations

from cds_service.audit.log import AuditLog, NullAuditLog, init_audit_store, open_audit_log
from cds_service.audit.records import (
    AuditEventType,
    CallRecord,
    CardRecord,
    DataOrigin,
    DataSourceRecord,
    FeedbackOutcome,
    FeedbackRecord,
    ResourceUsed,
)

__all__ = [
    "AuditEventType",
    "AuditLog",
    "CallRecord",
    "CardRecord",
    "DataOrigin",
    "DataSourceRecord",
    "FeedbackOutcome",
    "FeedbackRecord",
    "NullAuditLog",
    "ResourceUsed",
    "init_audit_store",
    "open_audit_log",
]

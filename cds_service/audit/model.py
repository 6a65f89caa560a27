"""The audit log's plain data: a record on its way to the store, a stored record, review filters and counts.

No database code here: the AuditWriter and AuditReader seams (``cds_service.interfaces``) name these types, and
the review page, the CLI and the export use them without loading SQLAlchemy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any


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

"""The audit log's plain data: a record on its way to the store, a stored record, review filters and counts.

No database code here: the AuditWriter and AuditReader seams (``cds_service.interfaces``) name these types, and
the review page, the CLI and the export use them without loading SQLAlchemy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
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
class AppendOutcome:
    """What the store did with a batch: how many it stored, and the entries it refused with the reason."""

    stored: int
    refused: tuple[tuple[PendingEntry, str], ...] = ()


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
    # linked_record_id is the link as read (feedback to the call that issued its card, by the index); this is the
    # link sealed into the chain at insert, present only when the call was stored before its feedback.
    sealed_link: str | None = None


@dataclass(frozen=True)
class CallFilter:
    """Filters of the review list (all optional; ``outcome`` is accepted, overridden or none)."""

    patient_id: str | None = None
    user_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    recommendation: str | None = None
    outcome: str | None = None
    hook_instance: str | None = None


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


READY = "ok"
DEGRADED = "degraded"
NOT_READY = "not-ready"


@dataclass(frozen=True)
class ReadinessCheck:
    """One part of the audit log's readiness: ``ok``, ``degraded`` (still recording) or ``not-ready``."""

    name: str
    status: str
    detail: str
    data: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Readiness:
    """Every part's check; not ready when any part is, degraded when any part is degraded."""

    checks: tuple[ReadinessCheck, ...]

    @property
    def status(self) -> str:
        """``ok``, ``degraded`` or ``unavailable`` (the /readyz answer's status)."""
        states = {check.status for check in self.checks}
        if NOT_READY in states:
            return "unavailable"
        return DEGRADED if DEGRADED in states else READY

    def named(self, status: str) -> list[str]:
        """The names of the parts in ``status``."""
        return [check.name for check in self.checks if check.status == status]

    def as_json(self) -> dict[str, Any]:
        """The /readyz body: the status, which parts are not ready or degraded, and each part's detail."""
        store = next((c for c in self.checks if c.name == "store"), None)
        return {
            "status": self.status,
            "audit_store": "ok" if store is not None and store.status == READY else "unreachable",
            "not_ready": self.named(NOT_READY),
            "degraded": self.named(DEGRADED),
            "checks": {c.name: {"status": c.status, "detail": c.detail, **c.data} for c in self.checks},
        }

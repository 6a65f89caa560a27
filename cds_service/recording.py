"""Turns what a hook call and a feedback item were into audit records (the payload itself is never stored).

The audit log decides how records are made durable; this module decides what goes in them: identifiers, the
resources the engine used (type, id, version), the assessment, the cards as sent. Never tokens or JWTs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cds_service.audit.records import (
    CallRecord,
    CardRecord,
    DataSourceRecord,
    FeedbackRecord,
    ResourceUsed,
)

if TYPE_CHECKING:
    from cds_service.cdshooks import AnyHookRequest, FeedbackItem
    from cds_service.fhir.prefetch import ResolvedData
    from cds_service.runtime import CallerIdentityLike
    from hooks import HookOutcome

log = logging.getLogger("mgcds.audit")

RULE_VERSION = "clinical-rules.md 2026-11 (MgCDS engine 0.1.0)"


def _resource_used(resource: dict[str, Any]) -> ResourceUsed:
    raw_meta = resource.get("meta")
    meta: dict[str, Any] = raw_meta if isinstance(raw_meta, dict) else {}
    version = meta.get("versionId")
    updated = meta.get("lastUpdated")
    rid = resource.get("id")
    return ResourceUsed(
        resource_type=str(resource.get("resourceType")),
        resource_id=str(rid)[:200] if isinstance(rid, str) else None,
        version_id=str(version)[:64] if isinstance(version, str) else None,
        last_updated=str(updated)[:64] if isinstance(updated, str) else None,
    )


def data_source_records(data: ResolvedData | None) -> tuple[DataSourceRecord, ...]:
    """One record per prefetch key: where its data came from and which resources it held."""
    if data is None:
        return ()
    return tuple(
        DataSourceRecord(
            key=key,
            origin=item.origin,
            resources=tuple(_resource_used(r) for r in item.resources),
            error=item.error or (item.note if item.note and item.note.startswith("incomplete") else None),
        )
        for key, item in data.keys.items()
    )


def card_records(cards: list[dict[str, Any]]) -> tuple[CardRecord, ...]:
    """The cards as sent, with their ids and recommendation codes."""
    return tuple(
        CardRecord(
            uuid=card["uuid"],
            summary=card["summary"],
            indicator=card["indicator"],
            recommendation=str(card.get("extension", {}).get("org.mgcds.recommendation", "")),
            suggestion_uuids=tuple(s["uuid"] for s in card.get("suggestions", ())),
            card=card,
        )
        for card in cards
    )


class AuditRecorder:
    """Builds call and feedback records and hands them to the audit log."""

    def __init__(self, audit_log: Any, *, clock: Callable[[], datetime]) -> None:
        self.audit_log = audit_log
        self.clock = clock

    def record_call(
        self,
        service_id: str,
        request: AnyHookRequest | None,
        caller: CallerIdentityLike | None,
        outcome: HookOutcome | None,
        status: int,
        latency_ms: float,
        error: str | None,
    ) -> str:
        """Record one service call (failed calls too, without the payload)."""

        def ctx(name: str) -> str | None:
            value = getattr(request.context, name, None) if request is not None else None
            return value[:200] if isinstance(value, str) else None

        record = CallRecord(
            occurred_at=self.clock(),
            service_id=service_id[:200],
            hook=request.hook if request is not None else None,
            hook_instance=request.hookInstance if request is not None else None,
            issuer=caller.issuer if caller is not None else None,
            tenant=caller.tenant if caller is not None else None,
            user_id=ctx("userId"),
            patient_id=ctx("patientId"),
            encounter_id=ctx("encounterId"),
            fhir_server=request.fhirServer if request is not None else None,
            data_sources=data_source_records(outcome.data if outcome is not None else None),
            assessment=outcome.assessment if outcome is not None else None,
            cards=card_records(outcome.cards) if outcome is not None else (),
            rule_version=RULE_VERSION,
            http_status=status,
            latency_ms=round(latency_ms, 3),
            error=error,
        )
        record_id: str = self.audit_log.record_call(record)
        return record_id

    def record_feedback(self, service_id: str, item: FeedbackItem, caller: CallerIdentityLike | None) -> str:
        """Record one feedback item; the audit log links it to the call that issued the card (or marks unknown)."""
        reason = item.overrideReason.reason if item.overrideReason is not None else None
        override = None
        if reason is not None:
            override = {
                k: v for k, v in (("system", reason.system), ("code", reason.code), ("display", reason.display)) if v
            }
        record = FeedbackRecord(
            occurred_at=self.clock(),
            service_id=service_id[:200],
            card_uuid=item.card,
            outcome=item.outcome,
            accepted_suggestions=tuple(s.id for s in item.acceptedSuggestions or ()),
            override_reason=override,
            user_comment=item.overrideReason.userComment if item.overrideReason is not None else None,
            outcome_timestamp=item.outcomeTimestamp.isoformat(),
            issuer=caller.issuer if caller is not None else None,
            sender=caller.subject if caller is not None else None,
        )
        record_id: str = self.audit_log.record_feedback(record)
        return record_id

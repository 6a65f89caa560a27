"""What the audit log keeps: one record per service call, one per feedback item, one per refused feedback call.

The records are plain frozen dataclasses with no place for access tokens or JWTs: whatever the HTTP layer
knows about credentials cannot reach the log because there is no field to put it in. This module imports no
database code: the seams in ``cds_service.interfaces`` name these types.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Any

from cds_service.errors import AuditStoreError


class AuditEventType(StrEnum):
    """The closed vocabulary of audit events (DESIGN.md principle 9)."""

    SERVICE_CALL = "service-call"
    FEEDBACK = "feedback"
    # A feedback call answered anything but 200 (refused: 400, 401, 404, 413, 415; or our 500). Feedback calls
    # answered 200 are recorded as their items (FEEDBACK), one record each.
    FEEDBACK_CALL = "feedback-call"


class FeedbackOutcome(StrEnum):
    """CDS Hooks feedback outcomes."""

    ACCEPTED = "accepted"
    OVERRIDDEN = "overridden"


@dataclass(frozen=True)
class ResourceUsed:
    """One FHIR resource the engine used, identified down to its version."""

    resource_type: str
    resource_id: str | None
    version_id: str | None = None
    last_updated: str | None = None


@dataclass(frozen=True)
class DataSourceRecord:
    """How the data of one prefetch key was obtained."""

    key: str
    origin: str
    resources: tuple[ResourceUsed, ...] = ()
    error: str | None = None


@dataclass(frozen=True)
class CardRecord:
    """A card as returned to the EHR; ``card`` is its JSON exactly as sent."""

    uuid: str
    summary: str
    indicator: str
    recommendation: str
    suggestion_uuids: tuple[str, ...] = ()
    card: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SuppressedRecord:
    """A card the hook did not show because feedback on the same recommendation is still in force (rules 7.5)."""

    code: str  # the recommendation code that was not shown
    feedback_record_id: str  # the feedback record whose suppression applied
    outcome: str  # accepted or overridden
    reason: str | None  # the override reason code, when there was one
    until: datetime  # when that suppression ends


@dataclass(frozen=True)
class CallRecord:
    """One CDS service call, successful or failed (failed ones carry ``error`` and never the payload)."""

    occurred_at: datetime
    service_id: str
    hook: str | None
    hook_instance: str | None
    issuer: str | None
    tenant: str | None
    user_id: str | None
    patient_id: str | None
    encounter_id: str | None
    fhir_server: str | None
    data_sources: tuple[DataSourceRecord, ...]
    assessment: Mapping[str, Any] | None
    cards: tuple[CardRecord, ...]
    rule_version: str
    http_status: int
    latency_ms: float
    error: str | None = None
    suppressed: tuple[SuppressedRecord, ...] = ()  # filled by the hook side (cards not shown, and why)


@dataclass(frozen=True)
class FeedbackRecord:
    """One CDS Hooks feedback item; the store links it to the call that issued ``card_uuid``."""

    occurred_at: datetime
    service_id: str
    card_uuid: str
    outcome: str
    accepted_suggestions: tuple[str, ...]
    override_reason: Mapping[str, str] | None
    user_comment: str | None
    outcome_timestamp: str
    issuer: str | None
    sender: str | None
    # The caller's tenant: feedback links to a card only from the same issuer and tenant (and the same service).
    tenant: str | None = None


@dataclass(frozen=True)
class FeedbackCallRecord:
    """A feedback call that was not answered 200: who sent it, what it was answered, and why (never its body)."""

    occurred_at: datetime
    service_id: str
    issuer: str | None
    tenant: str | None
    sender: str | None
    http_status: int
    latency_ms: float
    error: str | None
    items_recorded: int = 0  # feedback items already recorded when the call failed (0 when it was refused)


def format_timestamp(moment: datetime) -> str:
    """UTC ISO 8601 with microseconds: one fixed width, so text order is time order in every store."""
    if moment.tzinfo is None:
        raise AuditStoreError("audit timestamps must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_timestamp(text: str) -> datetime:
    """Inverse of :func:`format_timestamp` (also accepts any ISO 8601 with an offset)."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


MOMENT_MAX_LENGTH = 40  # the longest ISO 8601 date-time with microseconds and an offset has 32
MAX_UTC_OFFSET = timedelta(hours=14)  # the widest offset in use (UTC+14, Line Islands; UTC-12 the other way)


def parse_moment(text: str, *, end_of_day: bool = False) -> datetime:
    """A filter bound in UTC: ISO 8601 date or date-time (naive is UTC); ``end_of_day``: a bare date inclusive.

    ValueError, saying why, for anything else: malformed text, an offset beyond +/-14:00, or a moment that is not
    within years 1-9999 once in UTC (``9999-12-31T23:59-14:00``), which Python could not even represent.
    """
    if len(text) > MOMENT_MAX_LENGTH:
        raise ValueError(f"not an ISO 8601 date or date-time: longer than {MOMENT_MAX_LENGTH} characters")
    if not (text.isascii() and text.isprintable()):
        raise ValueError(f"not an ISO 8601 date or date-time: {text!r}")
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            moment = datetime.combine(day, time.min, tzinfo=UTC)
            return moment + timedelta(days=1, microseconds=-1) if end_of_day else moment
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"not an ISO 8601 date or date-time: {text!r}") from exc
    offset = parsed.utcoffset()
    if offset is None:
        return parsed.replace(tzinfo=UTC)
    if abs(offset) > MAX_UTC_OFFSET:
        raise ValueError(f"UTC offset out of range (at most +/-14:00): {text!r}")
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"out of range: {text!r} is not within years 1-9999 in UTC") from None


# Fields of call_to_payload built from plain JSON values only (lists, dicts with string keys, str and None: the
# typed str fields of DataSourceRecord and ResourceUsed), which make_entry need not walk. A field listed here must
# stay so; tests/unit/audit/test_entries_plain.py compares the entries with and without this.
CALL_PAYLOAD_PLAIN_FIELDS = frozenset({"data_sources"})


def call_to_payload(record: CallRecord) -> dict[str, Any]:
    """The JSON payload of a call record (what is hashed and stored)."""
    return {
        "occurred_at": format_timestamp(record.occurred_at),
        "service_id": record.service_id,
        "hook": record.hook,
        "hook_instance": record.hook_instance,
        "issuer": record.issuer,
        "tenant": record.tenant,
        "user_id": record.user_id,
        "patient_id": record.patient_id,
        "encounter_id": record.encounter_id,
        "fhir_server": record.fhir_server,
        "data_sources": [
            {
                "key": source.key,
                "origin": str(source.origin),
                "resources": [
                    {
                        "resource_type": used.resource_type,
                        "resource_id": used.resource_id,
                        "version_id": used.version_id,
                        "last_updated": used.last_updated,
                    }
                    for used in source.resources
                ],
                "error": source.error,
            }
            for source in record.data_sources
        ],
        "assessment": dict(record.assessment) if record.assessment is not None else None,
        "cards": [
            {
                "uuid": card.uuid,
                "summary": card.summary,
                "indicator": card.indicator,
                "recommendation": card.recommendation,
                "suggestion_uuids": list(card.suggestion_uuids),
                "card": dict(card.card),
            }
            for card in record.cards
        ],
        "rule_version": record.rule_version,
        "http_status": record.http_status,
        "latency_ms": record.latency_ms,
        "error": record.error,
        "suppressed": [
            {
                "code": item.code,
                "feedback_record_id": item.feedback_record_id,
                "outcome": item.outcome,
                "reason": item.reason,
                "until": format_timestamp(item.until),
            }
            for item in record.suppressed
        ],
    }


def feedback_to_payload(record: FeedbackRecord) -> dict[str, Any]:
    """The JSON payload of a feedback record (what is hashed and stored)."""
    return {
        "occurred_at": format_timestamp(record.occurred_at),
        "service_id": record.service_id,
        "card_uuid": record.card_uuid,
        "outcome": str(record.outcome),
        "accepted_suggestions": list(record.accepted_suggestions),
        "override_reason": dict(record.override_reason) if record.override_reason is not None else None,
        "user_comment": record.user_comment,
        "outcome_timestamp": record.outcome_timestamp,
        "issuer": record.issuer,
        "tenant": record.tenant,
        "sender": record.sender,
    }


def feedback_call_to_payload(record: FeedbackCallRecord) -> dict[str, Any]:
    """The JSON payload of a refused feedback call (what is hashed and stored)."""
    return {
        "occurred_at": format_timestamp(record.occurred_at),
        "service_id": record.service_id,
        "issuer": record.issuer,
        "tenant": record.tenant,
        "sender": record.sender,
        "http_status": record.http_status,
        "latency_ms": record.latency_ms,
        "error": record.error,
        "items_recorded": record.items_recorded,
    }


def call_from_payload(payload: Mapping[str, Any]) -> CallRecord:
    """Rebuild a :class:`CallRecord` from its stored payload."""
    return CallRecord(
        occurred_at=parse_timestamp(payload["occurred_at"]),
        service_id=payload["service_id"],
        hook=payload["hook"],
        hook_instance=payload["hook_instance"],
        issuer=payload["issuer"],
        tenant=payload["tenant"],
        user_id=payload["user_id"],
        patient_id=payload["patient_id"],
        encounter_id=payload["encounter_id"],
        fhir_server=payload["fhir_server"],
        data_sources=tuple(
            DataSourceRecord(
                key=source["key"],
                origin=source["origin"],
                resources=tuple(ResourceUsed(**used) for used in source["resources"]),
                error=source["error"],
            )
            for source in payload["data_sources"]
        ),
        assessment=payload["assessment"],
        cards=tuple(
            CardRecord(
                uuid=card["uuid"],
                summary=card["summary"],
                indicator=card["indicator"],
                recommendation=card["recommendation"],
                suggestion_uuids=tuple(card["suggestion_uuids"]),
                card=card["card"],
            )
            for card in payload["cards"]
        ),
        rule_version=payload["rule_version"],
        http_status=payload["http_status"],
        latency_ms=payload["latency_ms"],
        error=payload["error"],
        # Records written before suppression existed have no such list.
        suppressed=tuple(
            SuppressedRecord(
                code=item["code"],
                feedback_record_id=item["feedback_record_id"],
                outcome=item["outcome"],
                reason=item["reason"],
                until=parse_timestamp(item["until"]),
            )
            for item in payload.get("suppressed", ())
        ),
    )


def feedback_from_payload(payload: Mapping[str, Any]) -> FeedbackRecord:
    """Rebuild a :class:`FeedbackRecord` from its stored payload."""
    return FeedbackRecord(
        occurred_at=parse_timestamp(payload["occurred_at"]),
        service_id=payload["service_id"],
        card_uuid=payload["card_uuid"],
        outcome=payload["outcome"],
        accepted_suggestions=tuple(payload["accepted_suggestions"]),
        override_reason=payload["override_reason"],
        user_comment=payload["user_comment"],
        outcome_timestamp=payload["outcome_timestamp"],
        issuer=payload["issuer"],
        sender=payload["sender"],
        tenant=payload.get("tenant"),  # absent from records written before feedback was bound to its tenant
    )

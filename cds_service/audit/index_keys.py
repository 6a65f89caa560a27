"""The keys the store's index tables are searched by: fixed-width hashes of who issued a card, and for whom.

``origin_key(issuer, tenant, service_id)`` binds a card and its feedback (issue 16 item 8): feedback links to a
card only when it came from the same issuer and tenant to the same service. ``subject_key(issuer, tenant,
patient_id)`` finds the cards a patient was shown by one EHR (suppression after feedback, clinical-rules.md 7.5).
Hashing makes the columns fixed-width and indexable whatever a caller's claims hold (length, NUL characters), and
the same function computes them at write time, at read time and in ``verify``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cds_service.audit.chain import canonical_json, sha256_hex
from cds_service.audit.records import format_timestamp, parse_timestamp


def origin_key(issuer: str | None, tenant: str | None, service_id: str) -> str:
    """Who a card was issued to (or feedback came from): issuer, tenant and service."""
    return sha256_hex(canonical_json(["origin", issuer, tenant, service_id]))


def subject_key(issuer: str | None, tenant: str | None, patient_id: str) -> str:
    """Whose chart a card was shown in, as one EHR (issuer and tenant) names the patient."""
    return sha256_hex(canonical_json(["subject", issuer, tenant, patient_id]))


def card_rows(record_id: str, payload: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The card index rows of a service-call payload (raises KeyError/TypeError when it is malformed)."""
    issuer, tenant = payload.get("issuer"), payload.get("tenant")
    origin = origin_key(issuer, tenant, str(payload["service_id"]))
    patient = payload.get("patient_id")
    subject = subject_key(issuer, tenant, patient) if isinstance(patient, str) and patient else None
    return [
        {
            "record_id": record_id,
            "card_uuid": str(card["uuid"]),
            "recommendation": str(card["recommendation"]),
            "indicator": str(card.get("indicator")),
            "origin_key": origin,
            "subject_key": subject,
            "occurred_at": str(payload["occurred_at"]),
        }
        for card in payload.get("cards") or ()
    ]


def answered_at(payload: Mapping[str, Any]) -> str:
    """When the clinician answered: the EHR's outcomeTimestamp, but never later than we received the feedback.

    A timestamp in the future (a wrong clock, or a caller's wish) cannot lengthen a suppression that way.
    """
    received = str(payload["occurred_at"])
    stated = payload.get("outcome_timestamp")
    if not isinstance(stated, str):
        return received
    try:
        said = format_timestamp(parse_timestamp(stated))
    except (ValueError, TypeError):
        return received
    return min(said, received)  # fixed-width UTC text: text order is time order


def feedback_row(record_id: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """The feedback index row of a feedback payload (raises KeyError/TypeError when it is malformed)."""
    reason = payload.get("override_reason") or {}
    return {
        "record_id": record_id,
        "card_uuid": str(payload["card_uuid"]),
        "origin_key": origin_key(payload.get("issuer"), payload.get("tenant"), str(payload["service_id"])),
        "outcome": str(payload["outcome"]),
        "reason_system": reason.get("system"),
        "reason_code": reason.get("code"),
        "answered_at": answered_at(payload),
    }

"""A patient's timeline and a call's held-back cards, assembled from stored records (plain data, no I/O).

The reader hands over the calls, the feedback naming their cards and the feedback records the suppressions name;
this module decides what each piece means for a reviewer:
- a feedback item is *linked* to a card when the store links it to the call that issued the card (same card uuid,
  same issuer, tenant and service), and the link is *sealed* when it is also in the hash chain (the call was
  stored first); feedback that names the card's uuid but comes from another EHR, tenant or service is shown as
  *unlinked*: it does not count for the card and never suppresses it;
- a held-back card is the call record's ``suppressed`` entry (code, outcome, reason, until) with the feedback
  that caused it: when it was answered (as suppression reads it: the EHR's outcomeTimestamp, never later than
  its receipt) and the call whose card it answered.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cds_service.audit.index_keys import answered_at
from cds_service.audit.model import StoredRecord


@dataclass(frozen=True)
class CardFeedback:
    """One feedback item naming a card, and whether it is linked to the call that shows the card."""

    record: StoredRecord
    linked: bool
    sealed: bool  # the link is also in the hash chain
    linked_elsewhere: str | None  # the call it is linked to instead, when another call issued that uuid

    @property
    def payload(self) -> Mapping[str, Any]:
        """The feedback payload."""
        return self.record.payload


@dataclass(frozen=True)
class TimelineCard:
    """A card a call returned, with the feedback naming it."""

    uuid: str
    recommendation: str
    indicator: str
    summary: str
    feedback: tuple[CardFeedback, ...]


@dataclass(frozen=True)
class HeldBack:
    """A card a call did not show because feedback suppressed its recommendation (clinical-rules.md 7.5)."""

    code: str
    outcome: str
    reason: str | None
    until: str | None
    feedback_record_id: str | None
    answered_at: str | None  # None when the feedback record is not in the store (or not readable)
    answered_call: str | None  # the call whose card that feedback answered, when linked


@dataclass(frozen=True)
class TimelineCall:
    """One call of the timeline: the record, its cards with feedback, the cards it held back."""

    record: StoredRecord
    cards: tuple[TimelineCard, ...]
    held_back: tuple[HeldBack, ...]

    @property
    def payload(self) -> Mapping[str, Any]:
        """The call payload."""
        return self.record.payload


def suppression_feedback_ids(calls: Sequence[StoredRecord]) -> list[str]:
    """The feedback record ids the calls' suppressions name."""
    ids: list[str] = []
    for call in calls:
        for item in call.payload.get("suppressed") or ():
            if isinstance(item, Mapping) and isinstance(item.get("feedback_record_id"), str):
                ids.append(item["feedback_record_id"])
    return ids


def card_uuids(calls: Sequence[StoredRecord]) -> list[str]:
    """The uuids of every card the calls returned."""
    return [str(card["uuid"]) for call in calls for card in call.payload.get("cards") or () if "uuid" in card]


def held_back(call: StoredRecord, feedback: Mapping[str, StoredRecord]) -> tuple[HeldBack, ...]:
    """The call's suppressed cards, each with the feedback record it names (when the store has it)."""
    found: list[HeldBack] = []
    for item in call.payload.get("suppressed") or ():
        if not isinstance(item, Mapping):
            continue
        record = feedback.get(str(item.get("feedback_record_id")))
        when: str | None = None
        if record is not None:
            try:
                when = answered_at(record.payload)
            except (KeyError, TypeError):
                when = None
        found.append(
            HeldBack(
                code=str(item.get("code")),
                outcome=str(item.get("outcome")),
                reason=item.get("reason"),
                until=item.get("until"),
                feedback_record_id=item.get("feedback_record_id"),
                answered_at=when,
                answered_call=record.linked_record_id if record is not None else None,
            )
        )
    return tuple(found)


def timeline(
    calls: Sequence[StoredRecord], feedback: Sequence[StoredRecord], suppressing: Mapping[str, StoredRecord]
) -> list[TimelineCall]:
    """The calls oldest first (time, then chain order), each card with the feedback naming it."""
    by_card: dict[str, list[StoredRecord]] = {}
    for item in feedback:
        by_card.setdefault(str(item.payload.get("card_uuid")), []).append(item)
    entries: list[TimelineCall] = []
    for call in sorted(calls, key=lambda record: (record.occurred_at, record.seq)):
        cards = tuple(
            TimelineCard(
                uuid=str(card["uuid"]),
                recommendation=str(card.get("recommendation")),
                indicator=str(card.get("indicator")),
                summary=str(card.get("summary")),
                feedback=tuple(
                    CardFeedback(
                        record=item,
                        linked=item.linked_record_id == call.record_id,
                        sealed=item.sealed_link == call.record_id,
                        linked_elsewhere=item.linked_record_id
                        if item.linked_record_id not in (None, call.record_id)
                        else None,
                    )
                    for item in by_card.get(str(card["uuid"]), ())
                ),
            )
            for card in call.payload.get("cards") or ()
        )
        entries.append(TimelineCall(call, cards, held_back(call, suppressing)))
    return entries


def origins(calls: Sequence[StoredRecord]) -> list[tuple[str | None, str | None]]:
    """The distinct (issuer, tenant) pairs the calls came from: one patient id may name different people in two."""
    seen: dict[tuple[str | None, str | None], None] = {}
    for call in calls:
        seen.setdefault((call.payload.get("issuer"), call.payload.get("tenant")), None)
    return list(seen)

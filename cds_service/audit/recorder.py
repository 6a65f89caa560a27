"""The recorder: every hook call and every feedback call leaves an audit record, whatever it was answered.

The HTTP layer wraps each call in :meth:`AuditRecorder.hook_call` or :meth:`AuditRecorder.feedback_call` and tells
the call what it learnt (the parsed request, the caller, the outcome, the status it answered). The record is written
in a ``finally``, so a call that is refused (400, 401, 404, 412, 413, 415) or that fails on a bug of ours (500) is
recorded as surely as one answered 200: with the status actually sent and without the payload. A call whose answer
the recorder never learnt is recorded as 500, because that is what the client got.

This module decides what goes in the records: identifiers, the resources the engine used (type, id, version), the
assessment, the cards as sent, the suppressions applied. Never tokens or JWTs. The AuditWriter decides how records
are made durable; when it cannot, :class:`AuditNotDurable` leaves the block and the one error handler answers 503
instead of the answer the call had (issue 19: nothing is answered 200 that is not recorded).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from cds_service.audit.limits import CONTEXT_ID_MAX, CONTROL_CHARACTERS, SERVICE_ID_COLUMN
from cds_service.audit.records import (
    CallRecord,
    CardRecord,
    DataSourceRecord,
    FeedbackCallRecord,
    FeedbackRecord,
    ResourceUsed,
    SuppressedRecord,
)
from cds_service.cdshooks import AnyHookRequest, FeedbackItem
from cds_service.engine.vocabulary import RULES_VERSION
from cds_service.errors import AuditNotDurable
from cds_service.interfaces import AuditWriter, Clock, Suppression
from cds_service.security.identity import CallerIdentity
from cds_service.vocabulary import CardExtension

log = logging.getLogger("mgcds.audit")

HTTP_OK = 200
HTTP_INTERNAL_ERROR = 500
_ID_MAX = CONTEXT_ID_MAX  # ids from the request are kept at most this long (the API refuses longer ones)

JsonObject = Mapping[str, object]
T = TypeVar("T")


# What the recorder reads of a hook's outcome: hooks.HookOutcome and fhir.prefetch.ResolvedData fit these shapes,
# so the audit package depends on no hook or FHIR module.
class KeyDataView(Protocol):
    """One prefetch key's data: where it came from and which resources it held."""

    @property
    def origin(self) -> str: ...

    @property
    def resources(self) -> Sequence[JsonObject]: ...

    @property
    def error(self) -> str | None: ...

    @property
    def note(self) -> str | None: ...


class ResolvedDataView(Protocol):
    """Every prefetch key of one call."""

    @property
    def keys(self) -> Mapping[str, KeyDataView]: ...


class OutcomeView(Protocol):
    """What a hook produced."""

    @property
    def cards(self) -> Sequence[JsonObject]: ...

    @property
    def assessment(self) -> JsonObject | None: ...

    @property
    def data(self) -> ResolvedDataView | None: ...


def _text(value: object, limit: int) -> str | None:
    return value[:limit] if isinstance(value, str) else None


_CONTROL_TO_REPLACEMENT = str.maketrans({ch: "\ufffd" for ch in CONTROL_CHARACTERS})


def service_id_text(service_id: str) -> str:
    """The service id from the URL as the record keeps it: fits its column, no control characters.

    Only an unknown service (answered 404) can have an id that needs this: the record must still fit the store.
    """
    return service_id[:SERVICE_ID_COLUMN].translate(_CONTROL_TO_REPLACEMENT)


def _resource_used(resource: JsonObject) -> ResourceUsed:
    raw_meta = resource.get("meta")
    meta: JsonObject = raw_meta if isinstance(raw_meta, Mapping) else {}
    return ResourceUsed(
        resource_type=str(resource.get("resourceType")),
        resource_id=_text(resource.get("id"), _ID_MAX),
        version_id=_text(meta.get("versionId"), 64),
        last_updated=_text(meta.get("lastUpdated"), 64),
    )


def data_source_records(data: ResolvedDataView | None) -> tuple[DataSourceRecord, ...]:
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


def _suggestion_uuids(card: JsonObject) -> tuple[str, ...]:
    suggestions = card.get("suggestions")
    if not isinstance(suggestions, Sequence):
        return ()
    return tuple(str(s.get("uuid")) for s in suggestions if isinstance(s, Mapping))


def card_records(cards: Sequence[JsonObject]) -> tuple[CardRecord, ...]:
    """The cards as sent, with their ids and recommendation codes."""
    records = []
    for card in cards:
        extension = card.get("extension")
        code = extension.get(CardExtension.RECOMMENDATION, "") if isinstance(extension, Mapping) else ""
        records.append(
            CardRecord(
                uuid=str(card.get("uuid")),
                summary=str(card.get("summary")),
                indicator=str(card.get("indicator")),
                recommendation=str(code),
                suggestion_uuids=_suggestion_uuids(card),
                card=card,
            )
        )
    return tuple(records)


@dataclass
class HookCall:
    """One hook call while it is being answered: the HTTP layer fills in what it learns."""

    service_id: str
    started: float
    request: AnyHookRequest | None = None
    caller: CallerIdentity | None = None
    outcome: OutcomeView | None = None  # kept in the record only when the call was answered 200
    status: int = HTTP_INTERNAL_ERROR  # until the answer is known, what the client gets is our 500
    error: str | None = None
    record_id: str | None = None
    # The cards the hook did not show because feedback suppresses them (clinical-rules.md 7.5): the hook side sets
    # this from its SuppressionSource; the record lists them when the call was answered 200.
    suppressed: Sequence[Suppression] = ()

    def refused(self, status: int, error: str) -> None:
        """The call was answered ``status`` with this error (``code: message``) instead of cards."""
        self.status = status
        self.error = error

    def answered(self, status: int) -> None:
        """The status actually sent."""
        self.status = status


@dataclass
class FeedbackCall:
    """One feedback call while it is being answered."""

    service_id: str
    started: float
    caller: CallerIdentity | None = None
    status: int = HTTP_INTERNAL_ERROR
    error: str | None = None
    items_recorded: list[str] = field(default_factory=list)
    record_id: str | None = None

    def refused(self, status: int, error: str) -> None:
        """The call was answered ``status`` with this error (``code: message``)."""
        self.status = status
        self.error = error

    def answered(self, status: int) -> None:
        """The status actually sent."""
        self.status = status


class AuditRecorder:
    """Builds the records of hook calls and feedback calls and hands them to the audit writer."""

    def __init__(self, writer: AuditWriter, *, clock: Clock, timer: Callable[[], float] = time.perf_counter) -> None:
        self.writer = writer
        self.clock = clock
        self._timer = timer

    def _write(self, kind: str, write: Callable[[], T]) -> T:
        # Fail closed: a record that cannot be made durable (the spool refuses it, or a bug of ours cannot build
        # it) would leave an answered call unaudited. AuditNotDurable leaves the block before the answer is sent,
        # and the one error handler answers 503 instead (the EHR shows no card: the fail-safe for advice).
        try:
            return write()
        except AuditNotDurable:
            log.critical("audit record of a %s could not be made durable: answered 503", kind)
            raise
        except Exception as exc:
            log.critical("audit record of a %s could not be written: answered 503", kind, exc_info=True)
            raise AuditNotDurable(f"the audit record of this {kind} could not be written") from exc

    def _elapsed_ms(self, started: float) -> float:
        return round((self._timer() - started) * 1000, 3)

    @contextmanager
    def hook_call(self, service_id: str) -> Iterator[HookCall]:
        """Wrap one hook call; its record is written when the block ends, however it ends."""
        call = HookCall(service_id=service_id_text(service_id), started=self._timer())
        try:
            yield call
        except BaseException as exc:
            # The block never produced its answer: the client gets the framework's 500.
            call.refused(HTTP_INTERNAL_ERROR, f"internal_error: {type(exc).__name__}")
            raise
        finally:
            call.record_id = self._write("hook call", lambda: self.writer.record_call(self._call_record(call)))

    def _call_record(self, call: HookCall) -> CallRecord:
        request = call.request
        context = request.context if request is not None else None
        answered = call.status == HTTP_OK and call.outcome is not None
        outcome = call.outcome if answered else None
        caller = call.caller
        return CallRecord(
            occurred_at=self.clock(),
            service_id=call.service_id,
            hook=request.hook if request is not None else None,
            hook_instance=request.hookInstance if request is not None else None,
            issuer=caller.issuer if caller is not None else None,
            tenant=caller.tenant if caller is not None else None,
            user_id=_text(context.userId, _ID_MAX) if context is not None else None,
            patient_id=_text(context.patientId, _ID_MAX) if context is not None else None,
            encounter_id=_text(context.encounterId, _ID_MAX) if context is not None else None,
            fhir_server=request.fhirServer if request is not None else None,
            data_sources=data_source_records(outcome.data) if outcome is not None else (),
            assessment=outcome.assessment if outcome is not None else None,
            cards=card_records(outcome.cards) if outcome is not None else (),
            rule_version=RULES_VERSION,
            http_status=call.status,
            latency_ms=self._elapsed_ms(call.started),
            error=None if call.status == HTTP_OK else call.error,
            suppressed=tuple(
                SuppressedRecord(
                    code=item.code,
                    feedback_record_id=item.feedback_record_id,
                    outcome=item.outcome,
                    reason=item.reason,
                    until=item.until,
                )
                for item in call.suppressed
            )
            if answered
            else (),
        )

    @contextmanager
    def feedback_call(self, service_id: str) -> Iterator[FeedbackCall]:
        """Wrap one feedback call; unless it was answered 200, one record says how it was answered."""
        call = FeedbackCall(service_id=service_id_text(service_id), started=self._timer())
        try:
            yield call
        except BaseException as exc:
            call.refused(HTTP_INTERNAL_ERROR, f"internal_error: {type(exc).__name__}")
            raise
        finally:
            # A feedback call answered 200 is recorded as its items (record_feedback); any other answer leaves
            # no item records, so the call itself is recorded, without its body.
            if call.status != HTTP_OK:
                call.record_id = self._write(
                    "feedback call", lambda: self.writer.record_feedback_call(self._feedback_call_record(call))
                )

    def _feedback_call_record(self, call: FeedbackCall) -> FeedbackCallRecord:
        caller = call.caller
        return FeedbackCallRecord(
            occurred_at=self.clock(),
            service_id=call.service_id,
            issuer=caller.issuer if caller is not None else None,
            tenant=caller.tenant if caller is not None else None,
            sender=caller.subject if caller is not None else None,
            http_status=call.status,
            latency_ms=self._elapsed_ms(call.started),
            error=call.error,
            items_recorded=len(call.items_recorded),
        )

    def _feedback_record(self, call: FeedbackCall, item: FeedbackItem) -> FeedbackRecord:
        reason = item.overrideReason.reason if item.overrideReason is not None else None
        override = None
        if reason is not None:
            override = {
                k: v for k, v in (("system", reason.system), ("code", reason.code), ("display", reason.display)) if v
            }
        caller = call.caller
        return FeedbackRecord(
            occurred_at=self.clock(),
            service_id=call.service_id,
            card_uuid=item.card,
            outcome=item.outcome,
            # Empty when an EHR accepted a card without naming a suggestion (a card without suggestions can only
            # be accepted that way): the record says that none was named.
            accepted_suggestions=tuple(s.id for s in item.acceptedSuggestions or ()),
            override_reason=override,
            user_comment=item.overrideReason.userComment if item.overrideReason is not None else None,
            outcome_timestamp=item.outcomeTimestamp.isoformat(),
            issuer=caller.issuer if caller is not None else None,
            sender=caller.subject if caller is not None else None,
            tenant=caller.tenant if caller is not None else None,
        )

    def record_feedback_items(self, call: FeedbackCall, items: Sequence[FeedbackItem]) -> list[str]:
        """Record the items of ``call`` together (all durable or none: AuditNotDurable); linked to their cards."""
        records = [self._feedback_record(call, item) for item in items]
        ids = self._write("feedback call", lambda: self.writer.record_feedback_items(records))
        call.items_recorded.extend(ids)
        return ids

    def record_feedback(self, call: FeedbackCall, item: FeedbackItem) -> str:
        """Record one feedback item of ``call``."""
        return self.record_feedback_items(call, [item])[0]

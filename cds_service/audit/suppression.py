"""Suppression after feedback, the store side (clinical-rules.md 7.5; issue 15 item 4).

Feedback on a card keeps the same recommendation from being shown again to the same patient by the same EHR for a
while. The feedback lives in the audit database, so every worker and every instance sees the same suppressions
(no per-process memory). :class:`SqlSuppressionSource` answers with one indexed query per call: the card index row
of every card one EHR (issuer, tenant) showed for the patient (``subject_key``), joined with the feedback index on
the card and its origin (feedback binds to its card only from the same issuer, tenant and service: issue 16 item
8). Both sides are derived from the records as they land, so the answer does not depend on whether the call or the
feedback reached the store first. A record still waiting in a spool is not seen until it is drained (~50 ms).

Periods (7.5, all configurable in :class:`ClinicalSettings`): accepted 7 days; overridden already-addressed 30,
recent-result-elsewhere the magnesium window (90), patient-declined 180, not-clinically-relevant 365, another or no
reason 30; never more than ``CRITICAL_SUPPRESSION_MAX_HOURS`` when the answered card was critical or
``urgent-evaluation``. The period runs from when the clinician answered (the EHR's outcomeTimestamp, but never later
than we received the feedback). Ending early on a newer magnesium, creatinine or eGFR result is the hook's part.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, bindparam, select

from cds_service.audit.index_keys import subject_key
from cds_service.audit.records import format_timestamp, parse_timestamp
from cds_service.audit.schema import cards_table, create_store_engine, feedback_table
from cds_service.audit.sqlread import ISSUED_BY, reading
from cds_service.engine.settings import CRITICAL_SUPPRESSION_MAX_HOURS, ClinicalSettings
from cds_service.engine.vocabulary import Indicator, RecommendationCode
from cds_service.errors import AuditStoreError
from cds_service.interfaces import Suppression

log = logging.getLogger("mgcds.audit")

QUERY_TIME_LIMIT_SECONDS = 1.0  # on the hook path: an unanswered query is given up (fail open) after this
CONNECT_TIMEOUT_SECONDS = 2  # libpq's minimum: a new connection to a store that does not answer
# After a failure, calls skip the query for this long (no suppression, immediately) instead of each paying the
# time limit again while the store is away.
PAUSE_AFTER_FAILURE_SECONDS = 10.0

ACCEPTED = "accepted"
OVERRIDDEN = "overridden"
ALREADY_ADDRESSED = "already-addressed"
RECENT_RESULT_ELSEWHERE = "recent-result-elsewhere"
PATIENT_DECLINED = "patient-declined"
NOT_CLINICALLY_RELEVANT = "not-clinically-relevant"


def suppression_days(settings: ClinicalSettings, outcome: str, reason: str | None) -> int:
    """The days a suppression lasts for this feedback (clinical-rules.md 7.5)."""
    if outcome == ACCEPTED:
        return settings.suppression_accepted_days
    if reason == ALREADY_ADDRESSED:
        return settings.suppression_already_addressed_days
    if reason == RECENT_RESULT_ELSEWHERE:
        chosen = settings.suppression_recent_result_elsewhere_days
        return settings.magnesium_window_days if chosen is None else chosen
    if reason == PATIENT_DECLINED:
        return settings.suppression_patient_declined_days
    if reason == NOT_CLINICALLY_RELEVANT:
        return settings.suppression_not_clinically_relevant_days
    return settings.suppression_other_reason_days


def suppression_until(
    settings: ClinicalSettings,
    *,
    outcome: str,
    reason: str | None,
    answered_at: datetime,
    recommendation: str,
    indicator: str,
) -> datetime:
    """When the suppression by this feedback ends, with the 24-hour cap for critical and urgent cards."""
    period = timedelta(days=suppression_days(settings, outcome, reason))
    if indicator == Indicator.CRITICAL or recommendation == RecommendationCode.URGENT_EVALUATION:
        period = min(period, timedelta(hours=CRITICAL_SUPPRESSION_MAX_HOURS))
    return answered_at + period


def longest_period(settings: ClinicalSettings) -> timedelta:
    """The longest any suppression can last with these settings (how far back the query looks)."""
    days = max(
        settings.suppression_accepted_days,
        settings.suppression_already_addressed_days,
        settings.magnesium_window_days
        if settings.suppression_recent_result_elsewhere_days is None
        else settings.suppression_recent_result_elsewhere_days,
        settings.suppression_patient_declined_days,
        settings.suppression_not_clinically_relevant_days,
        settings.suppression_other_reason_days,
    )
    return timedelta(days=days)


_cards, _fb = cards_table.c, feedback_table.c
# Built once (performance: building it per call cost more CPU than running it); the values are bound per call.
_ACTIVE_QUERY = (
    select(_cards.recommendation, _cards.indicator, _fb.record_id, _fb.outcome, _fb.reason_code, _fb.answered_at)
    .select_from(cards_table.join(feedback_table, ISSUED_BY))
    .where(
        _cards.subject_key == bindparam("subject_key"),
        _fb.answered_at >= bindparam("answered_since"),
        _fb.answered_at <= bindparam("answered_until"),
    )
)


def _latest_first(found: list[Suppression]) -> list[Suppression]:
    return sorted(found, key=lambda s: (s.code, -s.until.timestamp(), s.feedback_record_id))


class SqlSuppressionSource:
    """The suppressions in force, read from the audit database with one indexed query."""

    def __init__(
        self, engine: Engine, settings: ClinicalSettings, *, time_limit_seconds: float = QUERY_TIME_LIMIT_SECONDS
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.time_limit_seconds = time_limit_seconds
        self._paused_until = 0.0

    @classmethod
    def open(cls, url: str, settings: ClinicalSettings) -> SqlSuppressionSource:
        """A source over the audit store at ``url`` on a read-only engine of its own."""
        engine = create_store_engine(
            url,
            read_only=True,
            statement_timeout_seconds=QUERY_TIME_LIMIT_SECONDS,
            connect_timeout_seconds=CONNECT_TIMEOUT_SECONDS,
        )
        return cls(engine, settings)

    def close(self) -> None:
        """Close pooled connections."""
        self.engine.dispose()

    def active(self, issuer: str | None, tenant: str | None, patient_id: str, now: datetime) -> list[Suppression]:
        """The suppressions whose period has not ended at ``now`` for this patient as this EHR names them."""
        if not patient_id or time.monotonic() < self._paused_until:
            return []
        parameters = {
            "subject_key": subject_key(issuer, tenant, patient_id),
            "answered_since": format_timestamp(now - longest_period(self.settings)),
            "answered_until": format_timestamp(now),
        }
        try:
            with reading(self.engine, self.time_limit_seconds, "reading suppressions") as conn:
                rows = conn.execute(_ACTIVE_QUERY, parameters).all()
        except AuditStoreError as exc:
            # Fail open: without the store nothing is suppressed, so the card is shown again (the safe direction).
            self._paused_until = time.monotonic() + PAUSE_AFTER_FAILURE_SECONDS
            log.warning("suppressions unavailable, none applied for %.0f s: %s", PAUSE_AFTER_FAILURE_SECONDS, exc)
            return []
        found = []
        for row in rows:
            answered = parse_timestamp(row.answered_at)
            until = suppression_until(
                self.settings,
                outcome=row.outcome,
                reason=row.reason_code,
                answered_at=answered,
                recommendation=row.recommendation,
                indicator=str(row.indicator),
            )
            if until > now:
                found.append(
                    Suppression(
                        code=row.recommendation,
                        feedback_record_id=row.record_id,
                        outcome=row.outcome,
                        reason=row.reason_code,
                        answered_at=answered,
                        until=until,
                        answered_indicator=str(row.indicator),
                    )
                )
        return _latest_first(found)


@dataclass(frozen=True)
class _Held:
    issuer: str | None
    tenant: str | None
    patient_id: str
    suppression: Suppression


class InMemorySuppressionSource:
    """Suppressions given by the test (or nothing): the in-memory SuppressionSource."""

    def __init__(self) -> None:
        self._held: list[_Held] = []
        self._lock = threading.Lock()

    def add(self, issuer: str | None, tenant: str | None, patient_id: str, suppression: Suppression) -> None:
        """Hold a suppression for this patient as this EHR names them."""
        with self._lock:
            self._held.append(_Held(issuer, tenant, patient_id, suppression))

    def active(self, issuer: str | None, tenant: str | None, patient_id: str, now: datetime) -> list[Suppression]:
        """The held suppressions of this patient and EHR answered by ``now`` and not ended at ``now``."""
        with self._lock:
            held = list(self._held)
        return _latest_first(
            [
                h.suppression
                for h in held
                if (h.issuer, h.tenant, h.patient_id) == (issuer, tenant, patient_id)
                and h.suppression.answered_at <= now < h.suppression.until
            ]
        )

"""Not repeating a card the clinician has answered (clinical-rules.md 7.5), the hook side.

The audit store says which feedback is in force for this patient as the calling EHR names them
(``SuppressionSource``, bound to the caller by the API as ``PatientSuppressions``). Here each patient-view
recommendation whose code is under an active suppression is held back, unless the picture changed: a magnesium,
creatinine or eGFR result newer than the feedback ends the suppression early; a critical card (the one answered or
the one now due) or ``urgent-evaluation`` is never held for more than 24 hours after the feedback.

Safest reading: suppression applies to patient-view cards (section 7) only. An order-entry card is about a new
draft; hiding a contraindication for a new magnesium order because an earlier card was overridden could harm.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from cds_service.engine.facts import Facts
from cds_service.engine.recommend.types import Recommendation
from cds_service.engine.settings import CRITICAL_SUPPRESSION_MAX_HOURS
from cds_service.engine.vocabulary import Indicator, LabConcept, RecommendationCode
from cds_service.engine.windows import is_usable_status
from cds_service.interfaces import PatientSuppressions, Suppression, SuppressionSource

log = logging.getLogger("mgcds.hooks.suppression")

# Results that change the picture (section 7.5): any magnesium, any creatinine, any eGFR.
PICTURE_CHANGING = frozenset(
    {
        LabConcept.SERUM_MAGNESIUM,
        LabConcept.IONIZED_MAGNESIUM,
        LabConcept.URINE_MAGNESIUM,
        LabConcept.SERUM_CREATININE,
        LabConcept.URINE_CREATININE,
        LabConcept.EGFR,
    }
)
CRITICAL_CAP = timedelta(hours=CRITICAL_SUPPRESSION_MAX_HOURS)


class CallerSuppressions:
    """A ``SuppressionSource`` bound to one call's issuer and tenant: what a hook may ask, by patient only."""

    def __init__(self, source: SuppressionSource, issuer: str | None, tenant: str | None) -> None:
        self._source = source
        self._issuer = issuer
        self._tenant = tenant

    def active(self, patient_id: str, now: datetime) -> list[Suppression]:
        """The caller's suppressions in force for this patient; none when the store cannot say."""
        try:
            return self._source.active(self._issuer, self._tenant, patient_id, now)
        except Exception:  # noqa: BLE001
            # Fail open: without an answer nothing is suppressed, so the card shows again (the safe direction).
            log.warning("suppressions could not be read: none applied", exc_info=True)
            return []


def _newest_result(facts: Facts, now: datetime) -> datetime | None:
    times = [
        lab.effective
        for lab in facts.labs
        if lab.concept in PICTURE_CHANGING
        and is_usable_status(lab.status)
        and lab.effective is not None
        and lab.effective <= now
    ]
    return max(times, default=None)


def _holds(suppression: Suppression, rec: Recommendation, newest: datetime | None, now: datetime) -> Suppression | None:
    """The suppression as it applies to ``rec`` now (its end capped for a critical card), or None if it does not."""
    if newest is not None and newest > suppression.answered_at:
        return None  # a newer magnesium, creatinine or eGFR result: the picture changed
    until = suppression.until
    critical = (
        rec.indicator == Indicator.CRITICAL
        or suppression.answered_indicator == Indicator.CRITICAL
        or rec.code == RecommendationCode.URGENT_EVALUATION
    )
    if critical:
        # Checked here too, for both cards: the store caps by the answered card only, and a warning answered
        # yesterday may be a critical card today.
        until = min(until, suppression.answered_at + CRITICAL_CAP)
    return replace(suppression, until=until) if until > now else None


def apply_suppressions(
    recommendations: Sequence[Recommendation],
    facts: Facts,
    suppressions: PatientSuppressions,
    now: datetime,
) -> tuple[tuple[Recommendation, ...], tuple[Suppression, ...]]:
    """The recommendations still shown, and the suppressions that held the others back (for the audit record)."""
    if not recommendations or facts.patient_id is None:
        return tuple(recommendations), ()
    active = suppressions.active(facts.patient_id, now)
    if not active:
        return tuple(recommendations), ()
    newest = _newest_result(facts, now)
    shown: list[Recommendation] = []
    held: list[Suppression] = []
    for rec in recommendations:
        holding = [h for h in (_holds(s, rec, newest, now) for s in active if s.code == rec.code) if h is not None]
        if holding:
            held.append(max(holding, key=lambda s: s.until))
        else:
            shown.append(rec)
    return tuple(shown), tuple(held)

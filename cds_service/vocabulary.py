"""The service's own vocabulary, defined once: prefetch keys, data origins and the card extension keys.

These are contracts with EHR integrators (prefetch keys, card extensions) and with audit reviewers (data origins);
the clinical vocabulary lives in :mod:`cds_service.engine.vocabulary`.
"""

from __future__ import annotations

from enum import StrEnum


class PrefetchKey(StrEnum):
    """The prefetch keys every MgCDS service declares in discovery (exactly these names)."""

    PATIENT = "patient"
    OBSERVATIONS = "observations"
    MEDICATION_STATEMENTS = "medicationStatements"
    MEDICATION_REQUESTS = "medicationRequests"
    CONDITIONS = "conditions"
    SERVICE_REQUESTS = "serviceRequests"


class DataOrigin(StrEnum):
    """Where the data behind one prefetch key came from (cards say what was unknown; the audit log keeps it)."""

    PREFETCH = "prefetch"
    FETCHED = "fetched"
    ABSENT = "absent"  # the key was null in the prefetch: the EHR has no such data; nothing is fetched
    FAILED = "failed"


class CardExtension(StrEnum):
    """Keys MgCDS adds to a card's ``extension`` (CDS Hooks 2.0 "Extensions")."""

    RECOMMENDATION = "org.mgcds.recommendation"  # the recommendation code of the card (always present)
    DRAFT_ORDER = "org.mgcds.draft-order"  # order hooks: the draft the card concerns, "MedicationRequest/<id>"

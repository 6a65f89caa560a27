"""Which medications are current (clinical-rules.md sections 4 and 8).

A MedicationStatement is current with status active or intended and an effectivePeriod not ended before
``now``; a MedicationRequest with status active, or a draft from the hook's draftOrders. Drafts count as
current: the MDS is the one the patient will have once the order is signed.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from cds_service.engine.facts import MedicationFact
from cds_service.engine.vocabulary import MG_SALT_CLASSES

CURRENT_STATEMENT_STATUSES = frozenset({"active", "intended"})
CURRENT_REQUEST_STATUSES = frozenset({"active"})


def is_current(medication: MedicationFact, now: datetime) -> bool:
    """Whether the medication counts as current use at ``now``."""
    if medication.is_draft:
        return True
    if medication.period_end is not None and medication.period_end < now:
        return False
    if medication.resource_type == "MedicationStatement":
        return medication.status in CURRENT_STATEMENT_STATUSES
    return medication.status in CURRENT_REQUEST_STATUSES


def current_medications(medications: Iterable[MedicationFact], now: datetime) -> tuple[MedicationFact, ...]:
    """The current medications, drafts included, in input order."""
    return tuple(m for m in medications if is_current(m, now))


def with_class(medications: Iterable[MedicationFact], classes: Iterable[str]) -> tuple[MedicationFact, ...]:
    """The medications carrying any of ``classes``."""
    wanted = frozenset(classes)
    return tuple(m for m in medications if m.classes & wanted)


def is_supplement(medication: MedicationFact) -> bool:
    """Whether the medication is a magnesium salt (organic or inorganic)."""
    return bool(medication.classes & MG_SALT_CLASSES)

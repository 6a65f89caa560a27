"""Whether a test is already ordered: an active or draft ServiceRequest for it (clinical-rules.md section 7)."""

from __future__ import annotations

from cds_service.engine.facts import Facts
from cds_service.engine.vocabulary import LabConcept

# A ServiceRequest in these statuses (or a draft of this hook) means the test is already ordered (section 7).
OPEN_ORDER_STATUSES = frozenset({"active", "draft"})


def has_open_order(facts: Facts, concept: LabConcept) -> bool:
    """Whether an active or draft ServiceRequest for ``concept`` exists."""
    return any(o.concept == concept and (o.is_draft or o.status in OPEN_ORDER_STATUSES) for o in facts.orders)

"""Magnesium deficiency assessment (clinical-rules.md section 6): first matching rule wins."""

from __future__ import annotations

from cds_service.engine.magnesium import HIGH, LOW, LOW_NORMAL, NORMAL, SEVERE_LOW

EXCESS = "excess"
LIKELY = "likely"
POSSIBLE = "possible"
UNLIKELY = "unlikely"
UNKNOWN = "unknown"

# Most to least severe, for comparisons (excess is a different axis and ranks apart).
SEVERITY_ORDER = (LIKELY, POSSIBLE, UNKNOWN, UNLIKELY)


def assess_deficiency(serum_category: str, ionized_category: str) -> str:
    """excess / likely / unlikely (ionized normal, [OPA22]) / possible [COS16] / unlikely / unknown."""
    if serum_category == HIGH:
        return EXCESS
    if serum_category in (SEVERE_LOW, LOW) or ionized_category == LOW:
        return LIKELY
    if ionized_category == NORMAL:
        return UNLIKELY
    if serum_category == LOW_NORMAL:
        return POSSIBLE
    if serum_category == NORMAL:
        return UNLIKELY
    return UNKNOWN

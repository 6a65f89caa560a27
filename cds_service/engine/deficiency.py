"""Magnesium deficiency assessment (clinical-rules.md section 7.1): first matching rule wins."""

from __future__ import annotations

from cds_service.engine.vocabulary import HIGH_CATEGORIES, LOW_CATEGORIES, Deficiency, MagnesiumCategory


def assess_deficiency(serum_category: MagnesiumCategory, ionized_category: MagnesiumCategory) -> Deficiency:
    """excess / likely / unlikely (ionized normal, [OPA22]) / possible [COS16] / unlikely / unknown."""
    if serum_category in HIGH_CATEGORIES:
        return Deficiency.EXCESS
    if serum_category in LOW_CATEGORIES or ionized_category == MagnesiumCategory.LOW:
        return Deficiency.LIKELY
    if ionized_category == MagnesiumCategory.NORMAL:
        return Deficiency.UNLIKELY
    if serum_category == MagnesiumCategory.LOW_NORMAL:
        return Deficiency.POSSIBLE
    if serum_category == MagnesiumCategory.NORMAL:
        return Deficiency.UNLIKELY
    return Deficiency.UNKNOWN

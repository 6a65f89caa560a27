"""Helpers for comparing card answers across runs."""

from __future__ import annotations

from typing import Any


def strip_ids(value: Any) -> Any:
    """A card answer without its random uuids, for comparing two runs."""
    if isinstance(value, dict):
        return {k: strip_ids(v) for k, v in value.items() if k != "uuid"}
    if isinstance(value, list):
        return [strip_ids(v) for v in value]
    return value


def recommendation_codes(cards: list[dict[str, Any]]) -> list[str]:
    """The recommendation code of each card, in order."""
    return [card["extension"]["org.mgcds.recommendation"] for card in cards]

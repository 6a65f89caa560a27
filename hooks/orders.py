"""What the two order hooks share: reading draft orders, and not repeating a card at order-sign.

De-duplication (issue 5 item 4): when order-select already showed a card for a draft (same patient, same draft id,
same recommendation), order-sign does not show it again within ``order_session_ttl_seconds``. The memory is per
process: with several workers a repeat is possible (a duplicate card, never a missing one), which is the safe
direction for a clinical prompt.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from cachetools import TTLCache

from cds_service.cards import DRAFT_EXTENSION_KEY, RECOMMENDATION_EXTENSION_KEY
from cds_service.cdshooks import OrderSelectRequest, OrderSignRequest
from cds_service.errors import BadRequest
from cds_service.fhir.extract import DraftOrders, parse_draft_orders

if TYPE_CHECKING:
    from cds_service.interfaces import OrderSession

# An order-sign of a large admission order set holds tens of drafts, rarely more than a hundred. Far more is not an
# ordering session but a hostile or broken payload: each draft is evaluated against every current medication and
# can produce cards, so the work (and the answer) would grow without bound (issue 6 item 4: no hang).
MAX_DRAFT_ORDERS = 200


def drafts_for(request: OrderSelectRequest | OrderSignRequest) -> DraftOrders:
    """The draft orders of an order hook; order-select's selections must name drafts in the Bundle (else 400)."""
    selections_required = isinstance(request, OrderSelectRequest)
    selections = request.context.selections if isinstance(request, OrderSelectRequest) else None
    entries = request.context.draftOrders.get("entry")
    if isinstance(entries, list) and len(entries) > MAX_DRAFT_ORDERS:
        raise BadRequest(
            f"context.draftOrders holds {len(entries)} entries; at most {MAX_DRAFT_ORDERS} are evaluated per call",
            field="context.draftOrders",
        )
    drafts = parse_draft_orders(request.context.draftOrders, selections, patient_id=request.context.patientId)
    if selections_required:
        missing = [s for s in selections or () if s not in drafts.refs]
        if missing:
            raise BadRequest(
                f"context.selections names orders that are not in context.draftOrders: {', '.join(missing[:5])}",
                field="context.selections",
            )
    return drafts


class TtlOrderSession:
    """The cards order-select showed, per (patient, draft, recommendation code), for ``ttl_seconds`` (thread-safe)."""

    def __init__(self, ttl_seconds: float, *, maxsize: int = 10000) -> None:
        self._seen: TTLCache[tuple[str, str, str], bool] = TTLCache(maxsize=maxsize, ttl=ttl_seconds)
        self._lock = threading.Lock()

    def remember(self, patient_id: str, draft: str, code: str) -> None:
        """Note that card ``code`` was shown for ``draft``."""
        with self._lock:
            self._seen[(patient_id, draft, code)] = True

    def was_shown(self, patient_id: str, draft: str, code: str) -> bool:
        """Whether that card was shown within the session."""
        with self._lock:
            return (patient_id, draft, code) in self._seen


def _key(card: dict[str, Any]) -> tuple[str, str] | None:
    extension = card.get("extension", {})
    draft = extension.get(DRAFT_EXTENSION_KEY)
    if not isinstance(draft, str):
        return None
    return (draft, str(extension.get(RECOMMENDATION_EXTENSION_KEY)))


def remember_cards(session: OrderSession, patient_id: str, cards: list[dict[str, Any]]) -> None:
    """Note the cards order-select showed, per patient and draft."""
    for card in cards:
        key = _key(card)
        if key is not None:
            session.remember(patient_id, *key)


def drop_repeated_cards(session: OrderSession, patient_id: str, cards: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The cards order-select did not already show for the same draft in this ordering session."""
    return [card for card in cards if (key := _key(card)) is None or not session.was_shown(patient_id, *key)]

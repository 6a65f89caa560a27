"""What the two order hooks share: reading draft orders, and not repeating a recommendation at order-sign.

De-duplication (issue 5 item 4): when order-select already showed a card for a draft (same patient, same draft
``Type/id``, same recommendation code), order-sign does not show it again within ``order_session_ttl_seconds``. It
works on the engine's recommendations, before any card is built. The memory is per process: with several workers a
repeat is possible (a duplicate card, never a missing one), which is the safe direction for a clinical prompt.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from cachetools import TTLCache

from cds_service.cdshooks import OrderSelectRequest, OrderSignRequest
from cds_service.engine.recommend.types import Recommendation
from cds_service.errors import BadRequest
from cds_service.fhir.extract import DraftOrders, parse_draft_orders
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


def remember_shown(session: OrderSession, patient_id: str, shown: Sequence[Recommendation]) -> None:
    """Note the recommendations order-select showed as cards, per patient and concerned draft."""
    for rec in shown:
        if rec.draft_reference is not None:
            session.remember(patient_id, rec.draft_reference, rec.code)


def drop_already_shown(
    session: OrderSession, patient_id: str, recommendations: Sequence[Recommendation]
) -> tuple[Recommendation, ...]:
    """The recommendations order-select did not already show for the same draft in this ordering session."""
    return tuple(
        rec
        for rec in recommendations
        if rec.draft_reference is None or not session.was_shown(patient_id, rec.draft_reference, rec.code)
    )

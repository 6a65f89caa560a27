"""`mg-order-sign`: prompts about every draft order when the clinician signs (clinical-rules.md section 8)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from cds_service.cdshooks import OrderSignRequest
from hooks import HookOutcome, RegisteredService
from hooks.base import USAGE_REQUIREMENTS, CdsService, prefetch_templates
from hooks.orders import drafts_for, drop_repeated_cards
from hooks.pipeline import run_pipeline

if TYPE_CHECKING:
    from cds_service.cdshooks import AnyHookRequest as HookRequest
    from cds_service.interfaces import HookDeps

SERVICE_ID = "mg-order-sign"


def definition(observation_codes: Sequence[str]) -> CdsService:
    """The discovery entry of mg-order-sign."""
    return CdsService(
        id=SERVICE_ID,
        hook="order-sign",
        title="Magnesium prompts before orders are signed",
        description=(
            "Before signing: flags draft orders that deplete magnesium, magnesium supplements that are "
            "contraindicated or inorganic, and dose spacing with interacting drugs."
        ),
        prefetch=prefetch_templates(observation_codes),
        usage_requirements=USAGE_REQUIREMENTS,
    )


def service(observation_codes: Sequence[str]) -> RegisteredService:
    """mg-order-sign with its handler."""
    spec = definition(observation_codes)

    def handle(request: HookRequest, deps: HookDeps) -> HookOutcome:
        if not isinstance(request, OrderSignRequest):
            raise TypeError(f"{SERVICE_ID} handles OrderSignRequest only")
        drafts = drafts_for(request)
        outcome = run_pipeline(spec, request, deps, drafts=drafts)
        outcome.cards = drop_repeated_cards(deps.order_session, request.context.patientId, outcome.cards)
        outcome.notes.extend(drafts.notes)
        return outcome

    return RegisteredService(spec, handle)

"""`mg-order-select`: prompts about the order the clinician just picked (clinical-rules.md section 8)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from cds_service.cdshooks import OrderSelectRequest
from hooks import HookOutcome, RegisteredService
from hooks.base import USAGE_REQUIREMENTS, CdsService, prefetch_templates
from hooks.orders import drafts_for, remember_cards
from hooks.pipeline import run_pipeline

if TYPE_CHECKING:
    from cds_service.cdshooks import AnyHookRequest as HookRequest
    from cds_service.interfaces import HookDeps

SERVICE_ID = "mg-order-select"


def definition(observation_codes: Sequence[str]) -> CdsService:
    """The discovery entry of mg-order-select."""
    return CdsService(
        id=SERVICE_ID,
        hook="order-select",
        title="Magnesium prompts for the order being selected",
        description=(
            "When a diuretic, proton pump inhibitor, other magnesium-wasting drug or magnesium supplement is "
            "selected: testing, contraindication, organic-salt and dose-spacing prompts for that order."
        ),
        prefetch=prefetch_templates(observation_codes),
        usage_requirements=USAGE_REQUIREMENTS,
    )


def service(observation_codes: Sequence[str]) -> RegisteredService:
    """mg-order-select with its handler."""
    spec = definition(observation_codes)

    def handle(request: HookRequest, deps: HookDeps) -> HookOutcome:
        if not isinstance(request, OrderSelectRequest):
            raise TypeError(f"{SERVICE_ID} handles OrderSelectRequest only")
        drafts = drafts_for(request)
        outcome = run_pipeline(spec, request, deps, drafts=drafts)
        remember_cards(deps.order_session, request.context.patientId, outcome.cards)
        outcome.notes.extend(drafts.notes)
        return outcome

    return RegisteredService(spec, handle)

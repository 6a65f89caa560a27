"""`mg-order-sign`: prompts about every draft order when the clinician signs (clinical-rules.md section 8)."""

from __future__ import annotations

from collections.abc import Sequence

from cds_service.cdshooks import OrderSignRequest
from cds_service.engine.vocabulary import Hook
from cds_service.interfaces import HookDeps
from hooks import HookOutcome, RegisteredService, register
from hooks.base import USAGE_REQUIREMENTS, CdsService, prefetch_templates
from hooks.orders import drafts_for, drop_already_shown
from hooks.pipeline import assess_request, respond

SERVICE_ID = "mg-order-sign"


def definition(observation_codes: Sequence[str]) -> CdsService:
    """The discovery entry of mg-order-sign."""
    return CdsService(
        id=SERVICE_ID,
        hook=Hook.ORDER_SIGN,
        title="Magnesium prompts before orders are signed",
        description=(
            "Before signing (adults): flags draft orders that deplete magnesium, oral magnesium that is "
            "contraindicated or an inorganic supplement, parenteral magnesium that needs monitoring (never "
            "removed), and dose spacing with interacting drugs."
        ),
        prefetch=prefetch_templates(observation_codes),
        usage_requirements=USAGE_REQUIREMENTS,
    )


def service(observation_codes: Sequence[str]) -> RegisteredService:
    """mg-order-sign with its handler."""
    spec = definition(observation_codes)

    def handle(request: OrderSignRequest, deps: HookDeps) -> HookOutcome:
        evaluation = assess_request(spec, request, deps, drafts=drafts_for(request))
        shown = drop_already_shown(deps.order_session, request.context.patientId, evaluation.recommendations)
        return respond(evaluation, shown, deps)

    return register(spec, OrderSignRequest, handle)

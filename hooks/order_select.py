"""`mg-order-select`: prompts about the order the clinician just picked (clinical-rules.md section 8)."""

from __future__ import annotations

from collections.abc import Sequence

from cds_service.cdshooks import OrderSelectRequest
from cds_service.engine.vocabulary import Hook
from cds_service.interfaces import HookDeps
from hooks import HookOutcome, RegisteredService, register
from hooks.base import USAGE_REQUIREMENTS, CdsService, prefetch_templates
from hooks.orders import drafts_for, remember_shown
from hooks.pipeline import assess_request, respond

SERVICE_ID = "mg-order-select"


def definition(observation_codes: Sequence[str]) -> CdsService:
    """The discovery entry of mg-order-select."""
    return CdsService(
        id=SERVICE_ID,
        hook=Hook.ORDER_SELECT,
        title="Magnesium prompts for the order being selected",
        description=(
            "When a diuretic, proton pump inhibitor, other magnesium-wasting drug or magnesium product is selected "
            "(adults): testing, contraindication, parenteral-monitoring, organic-salt and dose-spacing prompts for "
            "that order."
        ),
        prefetch=prefetch_templates(observation_codes),
        usage_requirements=USAGE_REQUIREMENTS,
    )


def service(observation_codes: Sequence[str]) -> RegisteredService:
    """mg-order-select with its handler."""
    spec = definition(observation_codes)

    def handle(request: OrderSelectRequest, deps: HookDeps) -> HookOutcome:
        evaluation = assess_request(spec, request, deps, drafts=drafts_for(request))
        outcome = respond(evaluation, evaluation.recommendations, deps)
        # Remembered once the cards exist: a card that could not be built was never shown.
        remember_shown(deps.order_session, request.context.patientId, outcome.recommendations)
        return outcome

    return register(spec, OrderSelectRequest, handle)

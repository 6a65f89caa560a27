"""`mg-patient-view`: magnesium status and depletion risk while a clinician opens the chart."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from hooks import HookOutcome, RegisteredService
from hooks.base import USAGE_REQUIREMENTS, CdsService, prefetch_templates
from hooks.pipeline import run_pipeline

if TYPE_CHECKING:
    from cds_service.cdshooks import AnyHookRequest as HookRequest
    from cds_service.interfaces import HookDeps

SERVICE_ID = "mg-patient-view"


def definition(observation_codes: Sequence[str]) -> CdsService:
    """The discovery entry of mg-patient-view."""
    return CdsService(
        id=SERVICE_ID,
        hook="patient-view",
        title="Magnesium depletion risk and magnesium status",
        description=(
            "Computes the Magnesium Depletion Score (diuretics, proton pump inhibitors, eGFR, heavy drinking), "
            "interprets serum and ionized magnesium, and recommends testing or organic-salt supplementation."
        ),
        prefetch=prefetch_templates(observation_codes),
        usage_requirements=USAGE_REQUIREMENTS,
    )


def service(observation_codes: Sequence[str]) -> RegisteredService:
    """mg-patient-view with its handler."""
    spec = definition(observation_codes)

    def handle(request: HookRequest, deps: HookDeps) -> HookOutcome:
        return run_pipeline(spec, request, deps)

    return RegisteredService(spec, handle)

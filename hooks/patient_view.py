"""`mg-patient-view`: magnesium status and depletion risk while a clinician opens the chart."""

from __future__ import annotations

from collections.abc import Sequence

from cds_service.cdshooks import PatientViewRequest
from cds_service.engine.vocabulary import Hook
from cds_service.interfaces import HookDeps
from hooks import HookOutcome, RegisteredService, register
from hooks.base import USAGE_REQUIREMENTS, CdsService, prefetch_templates
from hooks.pipeline import run_patient_view

SERVICE_ID = "mg-patient-view"


def definition(observation_codes: Sequence[str]) -> CdsService:
    """The discovery entry of mg-patient-view."""
    return CdsService(
        id=SERVICE_ID,
        hook=Hook.PATIENT_VIEW,
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

    def handle(request: PatientViewRequest, deps: HookDeps) -> HookOutcome:
        return run_patient_view(spec, request, deps)

    return register(spec, PatientViewRequest, handle)

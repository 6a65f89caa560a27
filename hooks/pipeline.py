"""The one path every hook takes: prefetch/FHIR -> facts -> engine -> recommendations -> cards.

Data flows one way (DESIGN.md); each hook module only adds what is specific to it (the draft orders).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cds_service.cards import build_cards
from cds_service.engine import assess, assessment_to_dict, recommend
from cds_service.errors import BadRequest, FhirError
from cds_service.fhir.extract import DraftOrders, extract_facts
from cds_service.fhir.prefetch import resolve_prefetch
from hooks import HookOutcome

if TYPE_CHECKING:
    from cds_service.cdshooks import AnyHookRequest as HookRequest
    from cds_service.interfaces import HookDeps
    from hooks.base import CdsService


def check_patient_matches(patient: dict[str, Any], patient_id: str) -> None:
    """The prefetched Patient must be the patient in context: cards may only use that patient's data."""
    if patient.get("resourceType") != "Patient":
        raise BadRequest("prefetch.patient is not a Patient resource", field="prefetch.patient")
    if patient.get("id") not in (None, patient_id):
        raise BadRequest("prefetch.patient is a different patient than context.patientId", field="prefetch.patient")


def run_pipeline(
    service: CdsService,
    request: HookRequest,
    deps: HookDeps,
    *,
    drafts: DraftOrders | None = None,
) -> HookOutcome:
    """Evaluate one hook request end to end and return its cards with their evidence."""
    token = request.fhirAuthorization.access_token if request.fhirAuthorization is not None else None
    data = resolve_prefetch(
        service.prefetch,
        request.context.model_dump(),
        request.prefetch,
        client=deps.fhir,
        fhir_server=request.fhirServer,
        access_token=token,
    )
    check_patient_matches(data.resources("patient")[0], request.context.patientId)

    def fetch_medication(reference: str) -> dict[str, Any] | None:
        # A MedicationRequest may point at a Medication the prefetch did not carry. Fail open: without it the
        # drug is classified by the reference's display text, and the card says so.
        if not request.fhirServer:
            return None
        try:
            return deps.fhir.read(request.fhirServer, reference, token)
        except FhirError:
            return None

    facts = extract_facts(
        data,
        patient_id=request.context.patientId,
        encounter_id=request.context.encounterId,
        hook=service.hook,
        terminology=deps.terminology,
        drafts=drafts,
        fetch_medication=fetch_medication,
    )
    assessment = assess(facts, deps.clock(), deps.clinical)
    recommendations = recommend(assessment, facts, deps.clinical)
    cards = build_cards(
        recommendations,
        assessment,
        facts,
        source_url=deps.rules_url,
        id_factory=deps.id_factory,
    )
    return HookOutcome(cards=cards, assessment=assessment_to_dict(assessment), data=data, notes=list(facts.data_notes))

"""The one path every hook takes: prefetch/FHIR -> facts -> engine -> recommendations -> cards.

Data flows one way (DESIGN.md): ``assess_request`` reads the data, extracts the facts, assesses them and computes
the recommendations, once; ``respond`` words the recommendations a hook decided to show as cards. Each hook module
only adds what is specific to it (the draft orders, and at order-sign what order-select already showed).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from cds_service.cards import build_cards
from cds_service.cdshooks import AnyHookRequest
from cds_service.engine import Assessment, assess, assessment_to_dict
from cds_service.engine.facts import Facts
from cds_service.engine.recommend import recommend
from cds_service.engine.recommend.types import Recommendation
from cds_service.errors import BadRequest, PrerequisiteFailed
from cds_service.fhir.extract import DraftOrders, extract_facts
from cds_service.fhir.prefetch import ResolvedData, resolve_prefetch
from cds_service.interfaces import HookDeps
from cds_service.vocabulary import PrefetchKey
from hooks import HookOutcome
from hooks.base import CdsService
from hooks.suppression import apply_suppressions


@dataclass(frozen=True)
class Evaluation:
    """One hook call evaluated: the data read, the facts, the assessment and every recommendation (card order)."""

    data: ResolvedData
    facts: Facts
    assessment: Assessment
    recommendations: tuple[Recommendation, ...]


def check_patient_matches(patient: dict[str, Any], patient_id: str) -> None:
    """The prefetched Patient must be the patient in context: cards may only use that patient's data."""
    if patient.get("resourceType") != "Patient":
        raise BadRequest("prefetch.patient is not a Patient resource", field="prefetch.patient")
    if patient.get("id") not in (None, patient_id):
        raise BadRequest("prefetch.patient is a different patient than context.patientId", field="prefetch.patient")


# Without any of these the rules have nothing to read: no magnesium, eGFR or drug (issue 15 item 6).
CLINICAL_DATA_KEYS = (PrefetchKey.OBSERVATIONS, PrefetchKey.MEDICATION_STATEMENTS, PrefetchKey.MEDICATION_REQUESTS)


def require_clinical_data(data: ResolvedData) -> None:
    """412 when neither the prefetch nor the FHIR server gave the observations nor either medication list.

    ``{"cards": []}`` would read as "nothing actionable" when the service in fact saw nothing; CDS Hooks answers 412
    for data the service cannot obtain. With any of them the call is answered (200), the unknowns widening the score
    and named in the cards (fail open on partial data).
    """
    if any(data.known(key) for key in CLINICAL_DATA_KEYS):
        return
    why = "; ".join(
        f"{key}: {data.keys[key].error or 'not obtained'}" if key in data.keys else f"{key}: not requested"
        for key in CLINICAL_DATA_KEYS
    )
    raise PrerequisiteFailed(
        f"neither the prefetch nor the FHIR server provided the observations or the medication lists ({why})",
        cause=",".join(CLINICAL_DATA_KEYS),
    )


def assess_request(
    service: CdsService,
    request: AnyHookRequest,
    deps: HookDeps,
    *,
    drafts: DraftOrders | None = None,
) -> Evaluation:
    """Read, extract, assess and recommend for one hook request (``recommend`` runs here, once)."""
    data = resolve_prefetch(
        service.prefetch,
        request.context.model_dump(),
        request.prefetch,
        client=deps.fhir,
        fhir_server=request.fhirServer,
        access_token=request.access_token,
        drafts=drafts.resources if drafts is not None else (),
    )
    check_patient_matches(data.resources(PrefetchKey.PATIENT)[0], request.context.patientId)
    require_clinical_data(data)
    facts = extract_facts(
        data,
        patient_id=request.context.patientId,
        encounter_id=request.context.encounterId,
        hook=service.hook,
        terminology=deps.terminology,
        drafts=drafts,
    )
    assessment = assess(facts, deps.clock(), deps.clinical)
    return Evaluation(data, facts, assessment, recommend(assessment, facts, deps.clinical))


def respond(evaluation: Evaluation, shown: Sequence[Recommendation], deps: HookDeps) -> HookOutcome:
    """The cards of the recommendations ``shown`` (all of them, or those a hook kept), with their evidence."""
    cards = build_cards(
        shown,
        evaluation.assessment,
        evaluation.facts,
        source_url=deps.rules_url,
        id_factory=deps.id_factory,
        settings=deps.clinical,
        products=deps.terminology.supplement_products(),
    )
    return HookOutcome(
        cards=cards,
        assessment=assessment_to_dict(evaluation.assessment, [rec.code for rec in shown]),
        data=evaluation.data,
        # The facts' notes already hold the draft orders' notes (parse_draft_orders -> extract_facts): not again.
        notes=list(evaluation.facts.data_notes),
        recommendations=tuple(shown),
    )


def run_patient_view(service: CdsService, request: AnyHookRequest, deps: HookDeps) -> HookOutcome:
    """patient-view end to end: the recommendations feedback does not suppress become cards (rules 7.5)."""
    evaluation = assess_request(service, request, deps)
    shown, suppressed = apply_suppressions(
        evaluation.recommendations, evaluation.facts, deps.suppressions, evaluation.assessment.now
    )
    return replace(respond(evaluation, shown, deps), suppressed=suppressed)


def run_pipeline(service: CdsService, request: AnyHookRequest, deps: HookDeps) -> HookOutcome:
    """Evaluate one hook request end to end and return a card for every recommendation."""
    evaluation = assess_request(service, request, deps)
    return respond(evaluation, evaluation.recommendations, deps)

"""FHIR R4 resources -> engine facts: the one converter.

``extract_facts`` orchestrates the readers, one module per kind of resource: ``observations``, ``medications``,
``conditions``, ``service_requests``; ``drafts`` reads the order hooks' draft orders, ``patient`` whose data this
is, ``datatypes`` the FHIR datatypes they share. Real data is messy; every problem becomes a fact marked unusable
with its reason, or a note, never a crash and never a silent "normal". Extraction does no I/O: whatever had to be
fetched was fetched by the prefetch stage (``cds_service.fhir.prefetch``).
"""

from __future__ import annotations

from collections.abc import Iterable

from cds_service.engine.facts import Facts, PatientFacts
from cds_service.engine.vocabulary import Hook
from cds_service.fhir.extract.conditions import read_conditions
from cds_service.fhir.extract.drafts import DraftOrders, parse_draft_orders
from cds_service.fhir.extract.medications import MedicationReader
from cds_service.fhir.extract.observations import ObservationReader
from cds_service.fhir.extract.patient import PatientScope, patient_facts
from cds_service.fhir.extract.service_requests import read_service_requests
from cds_service.fhir.prefetch import ResolvedData
from cds_service.interfaces import TerminologyService
from cds_service.vocabulary import DataOrigin, PrefetchKey

__all__ = ["DraftOrders", "extract_facts", "parse_draft_orders"]


def extract_facts(
    data: ResolvedData,
    *,
    patient_id: str,
    encounter_id: str | None,
    hook: Hook,
    terminology: TerminologyService,
    drafts: DraftOrders | None = None,
    patient_aliases: Iterable[str] = (),
) -> Facts:
    """Turn one request's resolved data (and draft orders) into the engine's facts."""
    scope = PatientScope(patient_id, patient_aliases)
    medication_reader = MedicationReader(terminology, scope, data.medications)

    patient_resources = data.resources(PrefetchKey.PATIENT)
    patient = patient_facts(patient_resources[0]) if patient_resources else PatientFacts()
    labs = ObservationReader(terminology, scope).labs(data.resources(PrefetchKey.OBSERVATIONS))
    meds = medication_reader.medication_facts(
        [*data.resources(PrefetchKey.MEDICATION_STATEMENTS), *data.resources(PrefetchKey.MEDICATION_REQUESTS)]
    )
    conditions = read_conditions(data.resources(PrefetchKey.CONDITIONS), terminology, scope)
    orders = read_service_requests(data.resources(PrefetchKey.SERVICE_REQUESTS), terminology, scope)
    if drafts is not None:
        meds.extend(medication_reader.medication_facts(drafts.resources, draft=True, concerned=drafts.concerned))
        orders.extend(read_service_requests(drafts.resources, terminology, scope, draft=True))

    notes: list[str] = []
    for key, item in data.keys.items():
        if item.origin == DataOrigin.FAILED:
            notes.append(f"{key}: could not be obtained ({item.error})")
        elif item.note and item.note.startswith("incomplete"):
            notes.append(f"{key}: {item.note}")
    if scope.foreign:
        notes.append(f"{scope.foreign} resource(s) of another patient ignored")
    notes.extend(medication_reader.notes)
    if drafts is not None:
        notes.extend(drafts.notes)

    return Facts(
        patient=patient,
        labs=tuple(labs),
        medications=tuple(meds),
        conditions=tuple(conditions),
        orders=tuple(orders),
        medications_known=(
            data.known(PrefetchKey.MEDICATION_STATEMENTS)
            and data.known(PrefetchKey.MEDICATION_REQUESTS)
            and medication_reader.unreadable == 0
        ),
        labs_known=data.known(PrefetchKey.OBSERVATIONS),
        conditions_known=data.known(PrefetchKey.CONDITIONS),
        orders_known=data.known(PrefetchKey.SERVICE_REQUESTS),
        data_notes=tuple(dict.fromkeys(notes)),
        hook=hook,
        patient_id=patient_id,
        encounter_id=encounter_id,
    )

"""Suggestions as CDS Hooks actions with their FHIR R4 resources, each validated before it leaves.

Every FHIR resource in a suggestion is validated with ``fhir.resources.R4B`` (an invalid one is our bug:
``CardBuildError``). Only codes we are sure of are sent: a LOINC display where we know it, no RxNorm code.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from fhir.resources.R4B.medicationrequest import MedicationRequest
from fhir.resources.R4B.servicerequest import ServiceRequest

from cds_service.cards.wording import TEST_TEXT
from cds_service.engine.facts import Facts
from cds_service.engine.recommend.types import (
    Action,
    CreateMedicationRequest,
    CreateServiceRequest,
    DeleteDraft,
    SuggestionSpec,
)

LOINC_SYSTEM = "http://loinc.org"
SNOMED_SYSTEM = "http://snomed.info/sct"
UCUM_SYSTEM = "http://unitsofmeasure.org"
ORAL_ROUTE = ("26643006", "Oral route")  # SNOMED CT

# Displays only for LOINC codes whose display we are sure of; others carry text only.
LOINC_DISPLAYS = {
    "19123-9": "Magnesium [Mass/volume] in Serum or Plasma",
    "2601-3": "Magnesium [Moles/volume] in Serum or Plasma",
    "2160-0": "Creatinine [Mass/volume] in Serum or Plasma",
}


class CardBuildError(RuntimeError):
    """A card we built is invalid: a programming error, never the caller's fault."""


def suggestion(spec: SuggestionSpec, facts: Facts, id_factory: Callable[[], str]) -> dict[str, Any]:
    """One CDS Hooks suggestion; its actions lack the creates that cannot be made (no patient id)."""
    actions = [a for a in (_action(x, facts) for x in spec.actions) if a is not None]
    return {"uuid": id_factory(), "label": _suggestion_label(spec), "actions": actions}


def _suggestion_label(spec: SuggestionSpec) -> str:
    for action in spec.actions:
        if isinstance(action, CreateServiceRequest):
            return f"Order {TEST_TEXT.get(action.test, action.test).lower()}"
    creates = [a for a in spec.actions if isinstance(a, CreateMedicationRequest)]
    deletes = [a for a in spec.actions if isinstance(a, DeleteDraft)]
    if creates and deletes:
        return f"Replace the order with {creates[0].salt}"
    if creates:
        return f"Start {creates[0].salt}, {creates[0].elemental_mg_per_day} mg elemental magnesium per day"
    return "Remove the draft order"


def _action(action: Action, facts: Facts) -> dict[str, Any] | None:
    if isinstance(action, DeleteDraft):
        return {
            "type": "delete",
            "description": "Remove the draft order",
            "resourceId": f"{action.resource_type}/{action.resource_id}",
        }
    if facts.patient_id is None:
        return None  # a create without a subject is invalid FHIR: offer nothing rather than something broken
    if isinstance(action, CreateServiceRequest):
        resource = service_request(action, facts.patient_id, facts.encounter_id)
        return {
            "type": "create",
            "description": _suggestion_label(SuggestionSpec("", (action,))),
            "resource": resource,
        }
    resource = medication_request(action, facts.patient_id, facts.encounter_id)
    return {"type": "create", "description": f"Draft order for {action.salt}", "resource": resource}


def _context(patient_id: str, encounter_id: str | None) -> dict[str, Any]:
    context: dict[str, Any] = {"subject": {"reference": f"Patient/{patient_id}"}}
    if encounter_id:
        context["encounter"] = {"reference": f"Encounter/{encounter_id}"}
    return context


def service_request(action: CreateServiceRequest, patient_id: str, encounter_id: str | None) -> dict[str, Any]:
    """A draft ServiceRequest for a LOINC-coded test, validated as FHIR R4."""
    coding: dict[str, Any] = {"system": LOINC_SYSTEM, "code": action.loinc}
    if action.loinc in LOINC_DISPLAYS:
        coding["display"] = LOINC_DISPLAYS[action.loinc]
    resource: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "status": "draft",
        "intent": "order",
        "code": {"coding": [coding], "text": TEST_TEXT.get(action.test, action.test)},
        **_context(patient_id, encounter_id),
    }
    _validate(ServiceRequest, resource)
    return resource


def medication_request(action: CreateMedicationRequest, patient_id: str, encounter_id: str | None) -> dict[str, Any]:
    """A draft MedicationRequest for a magnesium salt at the elemental daily dose in divided doses."""
    per_dose = action.elemental_mg_per_day / action.doses_per_day
    per_dose_value: int | float = int(per_dose) if per_dose.is_integer() else round(per_dose, 1)
    text = (
        f"{per_dose_value} mg elemental magnesium as {action.salt} by mouth "
        f"{action.doses_per_day} times a day "
        f"({action.elemental_mg_per_day} mg elemental magnesium per day in divided doses)"
    )
    resource: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "status": "draft",
        "intent": "order",
        # No RxNorm code: we only send codes we are sure of; the salt name is unambiguous text.
        "medicationCodeableConcept": {"text": action.salt.capitalize()},
        **_context(patient_id, encounter_id),
        "dosageInstruction": [
            {
                "text": text,
                "timing": {"repeat": {"frequency": action.doses_per_day, "period": 1, "periodUnit": "d"}},
                "route": {"coding": [{"system": SNOMED_SYSTEM, "code": ORAL_ROUTE[0], "display": ORAL_ROUTE[1]}]},
                "doseAndRate": [
                    {
                        "doseQuantity": {
                            "value": per_dose_value,
                            "unit": "mg elemental magnesium",
                            "system": UCUM_SYSTEM,
                            "code": "mg",
                        }
                    }
                ],
            }
        ],
    }
    _validate(MedicationRequest, resource)
    return resource


def _validate(model: Any, resource: dict[str, Any]) -> None:
    # Performance: validating a suggestion with its fhir.resources model costs about 0.3 ms, and suggestions differ
    # between patients only in their subject and encounter references. When those are plain strings (always valid
    # FHIR strings) the rest, the suggestion's shape, is validated once and remembered; anything else every time.
    shape = _shape(resource)
    if shape is None:
        _validate_now(model, resource)
    else:
        _validate_shape(model, shape)


def _plain_reference(value: Any) -> bool:
    reference = value.get("reference") if isinstance(value, dict) and value.keys() == {"reference"} else None
    return isinstance(reference, str) and reference != "" and reference.isprintable() and reference.strip() == reference


def _shape(resource: dict[str, Any]) -> str | None:
    """The resource as canonical JSON with placeholder references, or None when a reference is not plain."""
    shape = dict(resource)
    for key, placeholder in (("subject", "Patient/p"), ("encounter", "Encounter/e")):
        if key in shape:
            if not _plain_reference(shape[key]):
                return None
            shape[key] = {"reference": placeholder}
    return json.dumps(shape, sort_keys=True)


@lru_cache(maxsize=256)
def _validate_shape(model: Any, shape: str) -> None:
    # lru_cache remembers only successes: an invalid shape raises again on every call.
    _validate_now(model, json.loads(shape))


def _validate_now(model: Any, resource: dict[str, Any]) -> None:
    try:
        model.model_validate(resource)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise CardBuildError(f"invalid {resource.get('resourceType')} built for a suggestion: {exc}") from exc

"""Suggestions as CDS Hooks actions with their FHIR R4 resources, each validated before it leaves (section 9).

Every FHIR resource in a suggestion is validated with ``fhir.resources.R4B`` (an invalid one is our bug:
``CardBuildError``). A drafted MedicationRequest carries the RxNorm tablet of its salt (``supplement_products()``,
the value set drafts-mg-supplement-products) with its display, and text naming the salt and "tablet" (never a bare
"magnesium citrate", which is also a bowel preparation); the dose is stated in elemental magnesium in the dosage
text, and as a ``doseQuantity`` only when the coded product's strength is itself elemental magnesium. A
ServiceRequest carries its LOINC coding with the display.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
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
from terminology.products import SupplementProduct

Products = Mapping[str, SupplementProduct]

LOINC_SYSTEM = "http://loinc.org"
SNOMED_SYSTEM = "http://snomed.info/sct"
UCUM_SYSTEM = "http://unitsofmeasure.org"
ORAL_ROUTE = ("26643006", "Oral route")  # SNOMED CT


# The LOINC long common names of the tests the rules suggest (section 9: coding with display). Sources, read
# 2026-12-02:
# - 19123-9, 2601-3: HL7 PDDI CDS IG 1.0.0, ValueSet valueset-magnesium-LOINC (LOINC 2.82),
#   https://hl7.org/fhir/uv/pddi/en/ValueSet-valueset-magnesium-LOINC.html
# - 2160-0: HL7 Clinical Guidelines IG 1.0.0, ValueSet ckd-valueset-creatinine,
#   https://hl7.org/fhir/uv/cpg/ValueSet-ckd-valueset-creatinine.html (and the dQM CMS IG's serum-creatinine
#   expansion from tx.fhir.org, LOINC 2.82)
# - 73573-8: the LOINC 2.82 record as republished by healthassure.in (component Magnesium.ionized^^adjusted to pH
#   7.4, system Bld, method ISE), https://www.healthassure.in/codes/loinc-73573-8-magnesium-ionized-adjusted-to-ph-74-ise-bld-molesvol
#   (no HL7 IG listing it could be found; loinc.org itself was not reachable from here).
# A configured test code not listed here is sent with its code and text only: no display is made up.
LOINC_DISPLAYS = {
    "19123-9": "Magnesium [Mass/volume] in Serum or Plasma",
    "2601-3": "Magnesium [Moles/volume] in Serum or Plasma",
    "2160-0": "Creatinine [Mass/volume] in Serum or Plasma",
    "73573-8": "Magnesium Ionized [Moles/volume] adjusted to pH 7.4 in Blood by Ion-selective membrane electrode (ISE)",
}
DOSES_PER_DAY_TEXT = {1: "once a day", 2: "twice a day", 3: "three times a day", 4: "four times a day"}


class CardBuildError(RuntimeError):
    """A card we built is invalid: a programming error, never the caller's fault."""


def suggestion(spec: SuggestionSpec, facts: Facts, id_factory: Callable[[], str], products: Products) -> dict[str, Any]:
    """One CDS Hooks suggestion; its actions lack the creates that cannot be made (no patient id)."""
    actions = [a for a in (_action(x, facts, products) for x in spec.actions) if a is not None]
    return {"uuid": id_factory(), "label": _suggestion_label(spec), "actions": actions}


def has_verified_code(spec: SuggestionSpec, products: Products) -> bool:
    """False when the suggestion drafts a salt without a verified RxNorm product (it is offered last, section 9)."""
    return all(action.salt in products for action in spec.actions if isinstance(action, CreateMedicationRequest))


def _per_dose(action: CreateMedicationRequest) -> int | float:
    per_dose = action.elemental_mg_per_day / action.doses_per_day
    return int(per_dose) if per_dose.is_integer() else round(per_dose, 1)


def _how_often(action: CreateMedicationRequest) -> str:
    return DOSES_PER_DAY_TEXT.get(action.doses_per_day, f"{action.doses_per_day} times a day")


def _suggestion_label(spec: SuggestionSpec) -> str:
    for action in spec.actions:
        if isinstance(action, CreateServiceRequest):
            test = TEST_TEXT.get(action.test, action.test)
            return f"Order {test[0].lower()}{test[1:]}"  # "Order serum creatinine (for eGFR)": eGFR keeps its case
    creates = [a for a in spec.actions if isinstance(a, CreateMedicationRequest)]
    deletes = [a for a in spec.actions if isinstance(a, DeleteDraft)]
    if creates and deletes:
        return f"Replace the order with {creates[0].salt} tablets"
    if creates:
        c = creates[0]
        return f"Start {c.salt} tablets, {_per_dose(c)} mg elemental magnesium {_how_often(c)}"
    return "Remove the draft order"


def _action(action: Action, facts: Facts, products: Products) -> dict[str, Any] | None:
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
    resource = medication_request(action, facts.patient_id, facts.encounter_id, products.get(action.salt))
    return {"type": "create", "description": f"Draft order for {action.salt} tablets", "resource": resource}


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


def medication_text(salt: str, product: SupplementProduct | None) -> str:
    """The medication as text: the salt and "tablet", with the strength only when it is elemental magnesium."""
    if product is None:
        return f"{salt.capitalize()} tablet"
    release = "extended-release " if "extended release" in product.display.lower() else ""
    text = f"{salt.capitalize()} {release}oral {product.form}"
    if product.strength_is_elemental:
        strength = int(product.strength_mg) if product.strength_mg.is_integer() else product.strength_mg
        text += f", {strength} mg elemental magnesium per {product.form}"
    return text


def medication_request(
    action: CreateMedicationRequest,
    patient_id: str,
    encounter_id: str | None,
    product: SupplementProduct | None = None,
) -> dict[str, Any]:
    """A draft MedicationRequest for a magnesium salt's tablet at the elemental daily dose in divided doses."""
    per_dose = _per_dose(action)
    text = (
        f"{per_dose} mg elemental magnesium as {action.salt} by mouth {_how_often(action)} "
        f"({action.elemental_mg_per_day} mg elemental magnesium a day; the dose is elemental magnesium, not the "
        "weight of the salt)"
    )
    medication: dict[str, Any] = {"text": medication_text(action.salt, product)}
    if product is not None:
        medication["coding"] = [{"system": product.system, "code": product.code, "display": product.display}]
    dosage: dict[str, Any] = {
        "text": text,
        "timing": {"repeat": {"frequency": action.doses_per_day, "period": 1, "periodUnit": "d"}},
        "route": {"coding": [{"system": SNOMED_SYSTEM, "code": ORAL_ROUTE[0], "display": ORAL_ROUTE[1]}]},
    }
    if product is not None and product.strength_is_elemental:
        # Section 9: a mg dose is unambiguous only when the coded product's strength is itself elemental magnesium
        # (for the citrate and glycinate tablets RxNorm's "100 MG" is the salt's weight).
        dosage["doseAndRate"] = [
            {"doseQuantity": {"value": per_dose, "unit": "mg elemental magnesium", "system": UCUM_SYSTEM, "code": "mg"}}
        ]
    resource: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "status": "draft",
        "intent": "order",
        "medicationCodeableConcept": medication,
        **_context(patient_id, encounter_id),
        "dosageInstruction": [dosage],
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

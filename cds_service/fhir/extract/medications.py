"""MedicationStatements and MedicationRequests -> medication facts, by ingredient and drug class.

Ingredient, not product (clinical-rules.md section 4): terminology reads the product's code, its text, or the
ingredients of the Medication it references. A magnesium-containing medication also gets its product kind and salt
class (section 5: oral supplement, laxative/antacid, parenteral), decided by terminology from the product code, the
dosage route, ``Medication.form`` and the words of the text; a drug whose magnesium is only its counter-ion
("esomeprazole magnesium") is not a magnesium product and carries no magnesium salt class. A referenced Medication
comes from the prefetch stage (prefetched, or fetched in its second round); this module reads no network. A
medication whose drug cannot be read is counted, so that the MDS drug components widen to [0, 1] instead of counting
it as none.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from cds_service.engine.facts import Evidence, MedicationFact
from cds_service.engine.vocabulary import MG_SALT_CLASSES
from cds_service.fhir.extract.datatypes import (
    Concept,
    code_string,
    display_of,
    parse_fhir_datetime,
    read_codeable_concept,
    resource_id,
    status_of,
)
from cds_service.fhir.extract.patient import PatientScope
from cds_service.fhir.references import medication_key, reference_of
from cds_service.interfaces import TerminologyService
from terminology import CodeRef
from terminology.products import MagnesiumProduct


class MedicationReader:
    """Reads this patient's medications; keeps notes on what it could not read and counts the unreadable ones."""

    def __init__(
        self,
        terminology: TerminologyService,
        scope: PatientScope,
        medications: Mapping[str, Mapping[str, Any]],
    ) -> None:
        self.terminology = terminology
        self.scope = scope
        # Medication resources by "Medication/<id>", for medicationReference.
        self.medications = medications
        self.notes: list[str] = []
        self.unreadable = 0

    def medication_facts(
        self, resources: Iterable[dict[str, Any]], *, draft: bool = False, concerned: set[str] | None = None
    ) -> list[MedicationFact]:
        """The facts of this patient's MedicationStatements, then MedicationRequests, that name a drug of interest."""
        facts: list[MedicationFact] = []
        for resource_type in ("MedicationStatement", "MedicationRequest"):
            for resource in self.scope.mine(resources, resource_type):
                fact = self._medication(resource, draft=draft, concerned=concerned or set())
                if fact is not None:
                    facts.append(fact)
        return facts

    def _medication_concept(
        self, resource: Mapping[str, Any]
    ) -> tuple[list[CodeRef], str | None, list[Concept], str | None, list[str]]:
        """Codings, text, ingredient concepts, a note on what could not be read, and the Medication's dose form."""
        raw_concept = resource.get("medicationCodeableConcept")
        concept = read_codeable_concept(raw_concept)
        if concept is not None:
            return concept[0], concept[1], [], None, []
        if raw_concept is not None:
            return [], None, [], "medicationCodeableConcept is not a valid CodeableConcept", []
        reference = resource.get("medicationReference")
        ref = reference_of(reference)
        display = reference.get("display") if isinstance(reference, dict) else None
        medication = self._resolve_medication(resource, ref)
        if medication is None:
            if isinstance(display, str) and display:
                return [], display, [], f"{ref or 'medication'} not available; classified by its display text", []
            return [], None, [], f"{ref} could not be read" if ref else "no medication given", []
        code = read_codeable_concept(medication.get("code")) or Concept([], None)
        ingredients: list[Concept] = []
        for item in medication.get("ingredient") or ():
            if isinstance(item, dict) and (part := read_codeable_concept(item.get("itemCodeableConcept"))) is not None:
                ingredients.append(part)
        text = code[1] or (display if isinstance(display, str) else None)
        form = read_codeable_concept(medication.get("form")) or Concept([], None)
        form_names = [name for name in (form[1], *(c.display for c in form[0])) if name]
        return code[0], text, ingredients, None, form_names

    def _resolve_medication(self, resource: Mapping[str, Any], ref: str | None) -> Mapping[str, Any] | None:
        if ref is None:
            return None
        if ref.startswith("#"):
            for contained in resource.get("contained") or ():
                if isinstance(contained, dict) and contained.get("id") == ref[1:]:
                    return contained
            return None
        # Prefetched, or fetched in the prefetch stage's second round (cds_service.fhir.prefetch): no I/O here.
        key = medication_key(ref)
        return self.medications.get(key) if key is not None else None

    def _medication(self, resource: dict[str, Any], *, draft: bool, concerned: set[str]) -> MedicationFact | None:
        codings, text, ingredients, note, form_names = self._medication_concept(resource)
        if not codings and not text and not ingredients:
            # Which drug this is cannot be read: it might be a diuretic or a PPI. Counting it as "none of these"
            # would understate the score, so the medication list is treated as incomplete (each drug component
            # becomes [0, 1], as when the list could not be retrieved).
            self.unreadable += 1
            self.notes.append(
                f"{resource['resourceType']}/{resource_id(resource)}: {note or 'medication not readable'}"
            )
            return None
        classification = self.terminology.classify_medication(codings, text, ingredients)
        self.notes.extend(f"{resource['resourceType']}/{resource_id(resource)}: {n}" for n in classification.notes)
        if not classification.ingredients:
            return None
        resource_type = resource["resourceType"]
        ref = f"{resource_type}/{resource_id(resource)}"
        period = resource.get("effectivePeriod")
        period_end = parse_fhir_datetime(period.get("end")) if isinstance(period, dict) else None
        display = display_of(codings, text) or ", ".join(i.name for i in classification.ingredients)
        ingredient_list = classification.ingredients
        classes = classification.classes
        product = None
        if classes & MG_SALT_CLASSES:
            product = self._magnesium_product(resource, codings, text, ingredients, form_names)
            if product is None:
                # Magnesium only as another drug's salt or an excipient ("esomeprazole magnesium"): that drug counts,
                # the magnesium does not (section 5).
                ingredient_list = tuple(i for i in ingredient_list if not i.classes & MG_SALT_CLASSES)
                classes = frozenset(c for i in ingredient_list for c in i.classes)
                if not ingredient_list:
                    return None
        matched_by = "; ".join(i.matched_by for i in ingredient_list)
        if product is not None:
            matched_by = f"{matched_by}; {product.rule}: {product.decided_by}"
            self.notes.extend(f"{resource['resourceType']}/{resource_id(resource)}: {n}" for n in product.notes)
        return MedicationFact(
            ingredients=tuple(i.name for i in ingredient_list),
            classes=classes,
            resource_type=resource_type,
            resource_id=resource_id(resource),
            status=status_of(resource),
            evidence=Evidence(
                resource_type=resource_type,
                resource_id=resource_id(resource),
                code=code_string(codings),
                display=display,
                date=parse_fhir_datetime(resource.get("authoredOn") or resource.get("dateAsserted")),
                note=note or matched_by,
            ),
            display=display,
            period_end=period_end,
            is_draft=draft,
            is_concerned=ref in concerned,
            matched_by=matched_by,
            ingredient_classes=tuple((i.name, i.classes) for i in ingredient_list),
            product_kind=product.kind if product is not None else None,
            salt_class=product.salt_class if product is not None else None,
            product_rule=product.rule if product is not None else "",
        )

    def _magnesium_product(
        self,
        resource: Mapping[str, Any],
        codings: list[CodeRef],
        text: str | None,
        ingredients: list[Concept],
        form_names: list[str],
    ) -> MagnesiumProduct | None:
        """The product kind and salt of a medication with a magnesium salt (section 5), from code, route, form, text."""
        # MedicationRequest.dosageInstruction, MedicationStatement.dosage: both hold Dosage.route.
        dosages = resource.get("dosageInstruction" if resource["resourceType"] == "MedicationRequest" else "dosage")
        route: list[CodeRef] = []
        route_texts: list[str] = []
        for dosage in dosages if isinstance(dosages, list) else ():
            if not isinstance(dosage, dict):
                continue
            concept = read_codeable_concept(dosage.get("route"))
            if concept is not None:
                route.extend(concept[0])
                route_texts.extend([concept[1]] if concept[1] else [])
            # Safest reading of section 5's "words in the text": the dosage text counts too ("2 g IV over 1 hour"):
            # missing an intravenous order would offer to delete it, issue 14's first unsafe example.
            if isinstance(dosage.get("text"), str) and dosage["text"].strip():
                route_texts.append(dosage["text"])
        return self.terminology.magnesium_product(
            codings,
            text,
            route,
            " ".join(route_texts) or None,
            form_names,
            [(concept.codings, concept.text) for concept in ingredients],
        )

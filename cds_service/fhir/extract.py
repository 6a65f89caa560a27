"""FHIR R4 resources -> engine facts: the one converter.

Only the elements the engine needs are parsed, each with its ``fhir.resources.R4B`` datatype model (CodeableConcept,
Quantity): parsing whole resources costs about six times as much, and one malformed element
elsewhere in a resource would throw away a perfectly usable lab value. Real data is messy; every problem becomes a
fact marked unusable with its reason, or a note, never a crash and never a silent "normal".
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from typing import Any

from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.quantity import Quantity
from pydantic import ValidationError

from cds_service.engine.facts import (
    ConditionFact,
    Evidence,
    Facts,
    LabResult,
    MedicationFact,
    OrderFact,
    PatientFacts,
)
from cds_service.engine.vocabulary import AUDITC_ITEMS, ConditionConcept, Hook, LabConcept
from cds_service.errors import TerminologyError
from cds_service.fhir.bundles import iter_bundle_resources
from cds_service.fhir.prefetch import ResolvedData
from cds_service.interfaces import TerminologyService
from terminology import CodeRef

# The resource types of R4 order entry this service reads; anything else in draftOrders is left alone.
ORDER_TYPES = frozenset({"MedicationRequest", "ServiceRequest"})
# Order resource types that only exist in DSTU2/STU3: skipped with a note (issue 5).
PRE_R4_ORDER_TYPES = frozenset(
    {"MedicationOrder", "ProcedureRequest", "DiagnosticOrder", "ReferralRequest", "ProcessRequest"}
)
# Elements of STU3 MedicationRequest that R4 renamed or removed: their presence marks an STU3 resource.
STU3_MEDICATION_REQUEST_ELEMENTS = frozenset({"context", "definition"})

_NUMBER_WITH_COMPARATOR = re.compile(r"^\s*(<=|>=|<|>)?\s*(-?\d+(?:\.\d+)?)\s*$")
_FHIR_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")
# Concepts whose unit is fixed by definition, so a value sent as text (">60") can still be read.
_TEXT_VALUE_CONCEPTS = frozenset({LabConcept.EGFR, LabConcept.ALCOHOL_DRINKS_PER_DAY})
_EGFR_CANONICAL_UNIT = "mL/min/{1.73_m2}"


@dataclass
class DraftOrders:
    """The orders of an order hook's ``context.draftOrders``."""

    resources: list[dict[str, Any]] = field(default_factory=list)
    refs: set[str] = field(default_factory=set)
    concerned: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)


def parse_draft_orders(bundle: Mapping[str, Any], selections: Sequence[str] | None, *, patient_id: str) -> DraftOrders:
    """Read the draft orders; ``selections`` (order-select) picks the concerned ones, else all are concerned."""
    drafts = DraftOrders()
    entries = bundle.get("entry")
    if entries is not None and not isinstance(entries, list):
        drafts.notes.append("draftOrders.entry is not a list; no draft orders read")
        return drafts
    for resource in iter_bundle_resources(bundle):
        resource_type = resource["resourceType"]
        rid = resource.get("id")
        ref = f"{resource_type}/{rid}" if isinstance(rid, str) and rid else None
        if ref is not None:
            drafts.refs.add(ref)
        if resource_type in PRE_R4_ORDER_TYPES or (
            resource_type == "MedicationRequest" and STU3_MEDICATION_REQUEST_ELEMENTS & resource.keys()
        ):
            drafts.notes.append(f"draft {ref or resource_type} is not FHIR R4 (DSTU2/STU3); skipped")
            continue
        if resource_type not in ORDER_TYPES:
            continue
        if ref is None:
            drafts.notes.append(f"a draft {resource_type} has no id; it cannot be named in a suggestion, skipped")
            continue
        if not _belongs_to_patient(resource, {f"Patient/{patient_id}"}):
            drafts.notes.append(f"draft {ref} is for another patient; ignored")
            continue
        drafts.resources.append(resource)
    wanted = set(selections) if selections is not None else {f"{r['resourceType']}/{r['id']}" for r in drafts.resources}
    drafts.concerned = {f"{r['resourceType']}/{r['id']}" for r in drafts.resources} & wanted
    return drafts


# --- small readers ---------------------------------------------------------------------------------------------


# Performance (docs/performance.md): validating a datatype with its fhir.resources model costs about 20 us, and a
# request reads a few hundred of them. The plain shape real data almost always has is read directly; only strings
# that every FHIR primitive pattern accepts unchanged qualify (non-empty, printable, no outer whitespace; codes
# without double spaces), so the result is the model's own. Anything else goes through the model as before.
_CODING_KEYS = frozenset({"system", "code", "display"})
_QUANTITY_KEYS = frozenset({"value", "comparator", "unit", "system", "code"})
_COMPARATORS = frozenset({"<", "<=", ">=", ">"})
_FAST_NUMBER_LIMIT = 1e300


def _plain_string(value: Any) -> bool:
    return isinstance(value, str) and value != "" and value.isprintable() and value.strip() == value


def _plain_code(value: Any) -> bool:
    return _plain_string(value) and "  " not in value


def _plain_coding(coding: Any) -> bool:
    return (
        isinstance(coding, dict)
        and coding.keys() <= _CODING_KEYS
        and all(_plain_code(v) if k == "code" else _plain_string(v) for k, v in coding.items())
    )


def _codeable(value: Any) -> tuple[list[CodeRef], str | None] | None:
    if not isinstance(value, dict):
        return None
    codings_raw = value.get("coding", ())
    text = value.get("text")
    if (
        value.keys() <= {"coding", "text"}
        and (text is None and "text" not in value or _plain_string(text))
        and isinstance(codings_raw, list | tuple)
        and all(_plain_coding(c) for c in codings_raw)
    ):
        return [CodeRef(c.get("system"), c.get("code"), c.get("display")) for c in codings_raw], text
    try:
        concept = CodeableConcept.model_validate(value)
    except ValidationError:
        return None
    codings = [CodeRef(c.system, c.code, c.display) for c in concept.coding or ()]
    return codings, concept.text


@dataclass(frozen=True)
class _Quantity:
    """The elements of a FHIR Quantity the engine reads."""

    value: float | None
    comparator: str | None
    unit: str | None
    code: str | None


def _quantity(raw: dict[str, Any]) -> _Quantity | None:
    """A valid Quantity's elements, or None when the model rejects it."""
    number = raw.get("value")
    comparator = raw.get("comparator")
    if (
        raw.keys() <= _QUANTITY_KEYS
        and (
            isinstance(number, int)
            and not isinstance(number, bool)
            and abs(number) < _FAST_NUMBER_LIMIT
            or isinstance(number, float)
            and abs(number) < _FAST_NUMBER_LIMIT
        )
        and (comparator is None and "comparator" not in raw or comparator in _COMPARATORS)
        and all(
            _plain_code(raw[k]) if k == "code" else _plain_string(raw[k])
            for k in ("unit", "system", "code")
            if k in raw
        )
    ):
        return _Quantity(float(number), comparator, raw.get("unit"), raw.get("code"))
    try:
        quantity = Quantity.model_validate(raw)
    except ValidationError:
        return None
    value = float(quantity.value) if quantity.value is not None else None
    return _Quantity(value, quantity.comparator, quantity.unit, quantity.code)


def _code_string(codings: Sequence[CodeRef]) -> str | None:
    for coding in codings:
        if coding.code:
            return f"{coding.system}|{coding.code}" if coding.system else coding.code
    return None


def _display(codings: Sequence[CodeRef], text: str | None) -> str | None:
    if text:
        return text
    for coding in codings:
        if coding.display:
            return coding.display
    return None


def finite_number(value: Any) -> float | None:
    """``value`` as a finite float, or None: FHIR decimals are unbounded (10**400, 1e400) and must not become inf."""
    try:
        number = float(value)
    except (OverflowError, ValueError, TypeError):
        return None
    return number if math.isfinite(number) else None


def parse_fhir_datetime(value: Any) -> datetime | None:
    """A FHIR date/dateTime/instant as an aware datetime (partial dates at their start, UTC when no zone)."""
    if not isinstance(value, str) or not value:
        return None
    match = _FHIR_DATE.match(value)
    if match:
        year, month, day = match.group(1), match.group(2) or "01", match.group(3) or "01"
        try:
            return datetime(int(year), int(month), int(day), tzinfo=UTC)
        except ValueError:
            return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _parse_date(value: Any) -> date | None:
    parsed = parse_fhir_datetime(value)
    return parsed.date() if parsed is not None else None


def observation_time(resource: Mapping[str, Any]) -> datetime | None:
    """clinical-rules.md section 1: effectiveDateTime, else effectivePeriod.end, else .start, else issued."""
    effective = parse_fhir_datetime(resource.get("effectiveDateTime"))
    if effective is not None:
        return effective
    period = resource.get("effectivePeriod")
    if isinstance(period, dict):
        for key in ("end", "start"):
            moment = parse_fhir_datetime(period.get(key))
            if moment is not None:
                return moment
    return parse_fhir_datetime(resource.get("issued"))


def _reference(value: Any) -> str | None:
    if isinstance(value, dict) and isinstance(value.get("reference"), str):
        ref: str = value["reference"]
        return ref
    return None


def _belongs_to_patient(resource: Mapping[str, Any], aliases: set[str]) -> bool:
    """False when the resource names a different patient; a resource without subject came from a patient query."""
    ref = _reference(resource.get("subject")) or _reference(resource.get("patient"))
    if ref is None:
        return True
    if ref in aliases:
        return True
    # An absolute reference (https://ehr/fhir/Patient/123) to the same patient.
    return any(ref.endswith("/" + alias) for alias in aliases if alias.startswith("Patient/"))


def _status(resource: Mapping[str, Any]) -> str:
    status = resource.get("status")
    return status if isinstance(status, str) else "unknown"


def _rid(resource: Mapping[str, Any]) -> str:
    rid = resource.get("id")
    return rid if isinstance(rid, str) else "(no id)"


# --- the extractor ---------------------------------------------------------------------------------------------


class _Extractor:
    def __init__(
        self,
        terminology: TerminologyService,
        patient_aliases: set[str],
        medications: Mapping[str, Mapping[str, Any]],
        fetch_medication: Callable[[str], Mapping[str, Any] | None] | None,
    ) -> None:
        self.terminology = terminology
        self.aliases = patient_aliases
        self.medications = medications
        self.fetch_medication = fetch_medication
        self.notes: list[str] = []
        self.foreign = 0
        self.unreadable_medications = 0

    def mine(self, resources: Iterable[dict[str, Any]], resource_type: str) -> Iterable[dict[str, Any]]:
        for resource in resources:
            if resource.get("resourceType") != resource_type:
                continue
            if not _belongs_to_patient(resource, self.aliases):
                self.foreign += 1
                continue
            yield resource

    # Observations ---------------------------------------------------------------------------------------------

    def labs(self, resources: Iterable[dict[str, Any]]) -> list[LabResult]:
        results: list[LabResult] = []
        for resource in self.mine(resources, "Observation"):
            results.extend(self._observation(resource))
        return results

    def _observation(self, resource: dict[str, Any]) -> list[LabResult]:
        found: list[LabResult] = []
        status = _status(resource)
        when = observation_time(resource)
        concept = _codeable(resource.get("code"))
        if concept is not None:
            lab = self._lab(resource, resource, concept, status, when)
            if lab is not None:
                found.append(lab)
        # Panels (an AUDIT-C panel, say) carry their items as components: each is read like an Observation.
        components = resource.get("component")
        if isinstance(components, list):
            for component in components:
                if isinstance(component, dict) and (part := _codeable(component.get("code"))) is not None:
                    lab = self._lab(resource, component, part, status, when)
                    if lab is not None:
                        found.append(lab)
        return found

    def _lab(
        self,
        resource: Mapping[str, Any],
        element: Mapping[str, Any],
        concept: tuple[list[CodeRef], str | None],
        status: str,
        when: datetime | None,
    ) -> LabResult | None:
        codings, text = concept
        match = self.terminology.classify_observation(codings, text)
        lab = _lab_concept(match.concept) if match is not None else None
        if match is None or lab is None:
            return None
        evidence = Evidence(
            resource_type="Observation",
            resource_id=_rid(resource),
            code=_code_string(codings),
            display=_display(codings, text),
            date=when,
            note=match.matched_by,
        )
        if when is None:
            return LabResult(
                lab,
                status,
                None,
                None,
                evidence,
                unusable_reason="no effective time or issued date",
            )
        if lab in AUDITC_ITEMS:
            return self._auditc(lab, element, status, when, evidence)
        return self._quantity_lab(lab, resource, element, status, when, evidence)

    def _auditc(
        self, concept: LabConcept, element: Mapping[str, Any], status: str, when: datetime, evidence: Evidence
    ) -> LabResult:
        answer = _codeable(element.get("valueCodeableConcept"))
        codings, text = answer if answer is not None else ([], None)
        score = element.get("valueInteger")
        score = score if isinstance(score, int) and not isinstance(score, bool) else None
        if text is None and isinstance(element.get("valueString"), str):
            text = element["valueString"]
        band = self.terminology.auditc_band(concept, codings, text, score)
        shown = _display(codings, text) or (str(score) if score is not None else None)
        evidence = _with(evidence, value=shown)
        if band is None:
            return LabResult(concept, status, when, None, evidence, unusable_reason="AUDIT-C answer not recognised")
        return LabResult(concept, status, when, None, evidence, answer_band=band)

    def _quantity_lab(
        self,
        concept: LabConcept,
        resource: Mapping[str, Any],
        element: Mapping[str, Any],
        status: str,
        when: datetime,
        evidence: Evidence,
    ) -> LabResult:
        raw_quantity = element.get("valueQuantity")
        if isinstance(raw_quantity, dict):
            quantity = _quantity(raw_quantity)
            if quantity is None:
                return LabResult(
                    concept,
                    status,
                    when,
                    None,
                    evidence,
                    unusable_reason="valueQuantity is not a valid Quantity",
                )
            if quantity.value is None:
                return LabResult(concept, status, when, None, evidence, unusable_reason="valueQuantity has no value")
            finite = finite_number(quantity.value)
            if finite is None:
                return LabResult(concept, status, when, None, evidence, unusable_reason="value is not a finite number")
            number = finite
            comparator = quantity.comparator
            units = [u for u in (quantity.code, quantity.unit) if u]
            evidence = _with(evidence, value=_shown_number(comparator, number), unit=quantity.unit or quantity.code)
        elif isinstance(element.get("valueString"), str):
            text_value = element["valueString"]
            evidence = _with(evidence, value=text_value[:40])
            parsed = _NUMBER_WITH_COMPARATOR.match(text_value)
            if parsed is None:
                return LabResult(concept, status, when, None, evidence, unusable_reason="valueString is not a number")
            if concept not in _TEXT_VALUE_CONCEPTS:
                # A magnesium or creatinine value without a unit could be mg/dL or mmol/L (a 2.4-fold difference):
                # never guess.
                return LabResult(
                    concept, status, when, None, evidence, unusable_reason="value sent as text without a unit"
                )
            finite = finite_number(parsed.group(2))
            if finite is None:
                return LabResult(concept, status, when, None, evidence, unusable_reason="value is not a finite number")
            comparator, number = parsed.group(1), finite
            units = [_EGFR_CANONICAL_UNIT] if concept == LabConcept.EGFR else []
        elif isinstance(element.get("valueInteger"), int) and not isinstance(element.get("valueInteger"), bool):
            finite = finite_number(element["valueInteger"])
            if finite is None:
                return LabResult(concept, status, when, None, evidence, unusable_reason="value is not a finite number")
            number, comparator, units = finite, None, []
            evidence = _with(evidence, value=str(element["valueInteger"])[:40])
        else:
            reason = "no value"
            if isinstance(element.get("dataAbsentReason"), dict):
                reason = "no value (dataAbsentReason given)"
            return LabResult(concept, status, when, None, evidence, unusable_reason=reason)

        value, problem = self._convert(number, units, concept)
        if problem is not None:
            return LabResult(concept, status, when, None, evidence, comparator=comparator, unusable_reason=problem)
        low, high = (None, None)
        if concept == LabConcept.IONIZED_MAGNESIUM:
            low, high = self._mmol_reference_range(resource, element)
        return LabResult(
            concept,
            status,
            when,
            value,
            evidence,
            comparator=comparator,
            reference_low=low,
            reference_high=high,
        )

    def _convert(self, number: float, units: Sequence[str], concept: LabConcept) -> tuple[float | None, str | None]:
        if not units:
            if concept == LabConcept.ALCOHOL_DRINKS_PER_DAY:
                return number, None  # a count: drinks per day has no unit to misread
            return None, "no unit"
        last_error = ""
        for unit in units:  # UCUM code first, then the human unit (clinical-rules.md section 2)
            try:
                return self.terminology.convert(number, unit, concept).value, None
            except TerminologyError as exc:
                last_error = str(exc)
        if concept == LabConcept.ALCOHOL_DRINKS_PER_DAY:
            return number, None
        return None, last_error or f"unit {units[0]!r} not recognised"

    def _mmol_reference_range(
        self, resource: Mapping[str, Any], element: Mapping[str, Any]
    ) -> tuple[float | None, float | None]:
        # clinical-rules.md section 2: use the Observation's interval only when both bounds are in mmol/L.
        ranges = element.get("referenceRange") or resource.get("referenceRange")
        if not isinstance(ranges, list) or not ranges or not isinstance(ranges[0], dict):
            return None, None
        bounds: list[float] = []
        for key in ("low", "high"):
            raw = ranges[0].get(key)
            if not isinstance(raw, dict):
                return None, None
            quantity = _quantity(raw)
            if quantity is None:
                return None, None
            unit = (quantity.code or quantity.unit or "").lower()
            bound = finite_number(quantity.value) if quantity.value is not None else None
            if bound is None or unit != "mmol/l":
                return None, None
            bounds.append(bound)
        if bounds[0] >= bounds[1]:
            return None, None
        return bounds[0], bounds[1]

    # Medications ----------------------------------------------------------------------------------------------

    def medication_facts(
        self, resources: Iterable[dict[str, Any]], *, draft: bool = False, concerned: set[str] | None = None
    ) -> list[MedicationFact]:
        facts: list[MedicationFact] = []
        for resource_type in ("MedicationStatement", "MedicationRequest"):
            for resource in self.mine(resources, resource_type):
                fact = self._medication(resource, draft=draft, concerned=concerned or set())
                if fact is not None:
                    facts.append(fact)
        return facts

    def _medication_concept(
        self, resource: Mapping[str, Any]
    ) -> tuple[list[CodeRef], str | None, list[tuple[list[CodeRef], str | None]], str | None, list[str]]:
        """Codings, text, ingredient concepts, a note on what could not be read, and the Medication's dose form."""
        raw_concept = resource.get("medicationCodeableConcept")
        concept = _codeable(raw_concept)
        if concept is not None:
            return concept[0], concept[1], [], None, []
        if raw_concept is not None:
            return [], None, [], "medicationCodeableConcept is not a valid CodeableConcept", []
        reference = resource.get("medicationReference")
        ref = _reference(reference)
        display = reference.get("display") if isinstance(reference, dict) else None
        medication = self._resolve_medication(resource, ref)
        if medication is None:
            if isinstance(display, str) and display:
                return [], display, [], f"{ref or 'medication'} not available; classified by its display text", []
            return [], None, [], f"{ref} could not be read" if ref else "no medication given", []
        code = _codeable(medication.get("code")) or ([], None)
        ingredients: list[tuple[list[CodeRef], str | None]] = []
        for item in medication.get("ingredient") or ():
            if isinstance(item, dict) and (part := _codeable(item.get("itemCodeableConcept"))) is not None:
                ingredients.append(part)
        text = code[1] or (display if isinstance(display, str) else None)
        form = _codeable(medication.get("form")) or ([], None)
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
        key = ref.split("/_history")[0]
        key = "Medication/" + key.rsplit("Medication/", 1)[-1] if "Medication/" in key else key
        if key in self.medications:
            return self.medications[key]
        if self.fetch_medication is not None and key.startswith("Medication/"):
            return self.fetch_medication(key)
        return None

    def _medication(self, resource: dict[str, Any], *, draft: bool, concerned: set[str]) -> MedicationFact | None:
        codings, text, ingredients, note, form_names = self._medication_concept(resource)
        if not codings and not text and not ingredients:
            # Which drug this is cannot be read: it might be a diuretic or a PPI. Counting it as "none of these"
            # would understate the score, so the medication list is treated as incomplete (each drug component
            # becomes [0, 1], as when the list could not be retrieved).
            self.unreadable_medications += 1
            self.notes.append(f"{resource['resourceType']}/{_rid(resource)}: {note or 'medication not readable'}")
            return None
        classification = self.terminology.classify_medication(codings, text, ingredients)
        self.notes.extend(f"{resource['resourceType']}/{_rid(resource)}: {n}" for n in classification.notes)
        if not classification.ingredients:
            return None
        resource_type = resource["resourceType"]
        ref = f"{resource_type}/{_rid(resource)}"
        period = resource.get("effectivePeriod")
        period_end = parse_fhir_datetime(period.get("end")) if isinstance(period, dict) else None
        display = _display(codings, text) or ", ".join(i.name for i in classification.ingredients)
        matched_by = "; ".join(i.matched_by for i in classification.ingredients)
        return MedicationFact(
            ingredients=tuple(i.name for i in classification.ingredients),
            classes=classification.classes,
            resource_type=resource_type,
            resource_id=_rid(resource),
            status=_status(resource),
            evidence=Evidence(
                resource_type=resource_type,
                resource_id=_rid(resource),
                code=_code_string(codings),
                display=display,
                date=parse_fhir_datetime(resource.get("authoredOn") or resource.get("dateAsserted")),
                note=note or matched_by,
            ),
            display=display,
            period_end=period_end,
            is_draft=draft,
            is_concerned=ref in concerned,
            matched_by=matched_by,
            ingredient_classes=tuple((i.name, i.classes) for i in classification.ingredients),
            parenteral=self._parenteral(resource, codings, text, form_names),
        )

    def _parenteral(
        self, resource: Mapping[str, Any], codings: list[CodeRef], text: str | None, form_names: list[str]
    ) -> bool:
        dosages = resource.get("dosageInstruction" if resource["resourceType"] == "MedicationRequest" else "dosage")
        route: list[CodeRef] = []
        route_texts: list[str] = []
        for dosage in dosages if isinstance(dosages, list) else ():
            concept = _codeable(dosage.get("route")) if isinstance(dosage, dict) else None
            if concept is not None:
                route.extend(concept[0])
                route_texts.extend([concept[1]] if concept[1] else [])
        product_text = " ".join(name for name in (text, *form_names) if name) or None
        return self.terminology.is_parenteral(codings, product_text, route, " ".join(route_texts) or None)

    # Conditions and orders -----------------------------------------------------------------------------------

    def conditions(self, resources: Iterable[dict[str, Any]]) -> list[ConditionFact]:
        facts: list[ConditionFact] = []
        for resource in self.mine(resources, "Condition"):
            concept = _codeable(resource.get("code"))
            if concept is None:
                continue
            matched = _condition_concept(self.terminology.classify_condition(concept[0], concept[1]))
            if matched is None:
                continue
            facts.append(
                ConditionFact(
                    concept=matched,
                    clinical_status=_first_code(resource.get("clinicalStatus")),
                    verification_status=_first_code(resource.get("verificationStatus")),
                    evidence=Evidence(
                        resource_type="Condition",
                        resource_id=_rid(resource),
                        code=_code_string(concept[0]),
                        display=_display(*concept),
                        date=parse_fhir_datetime(resource.get("onsetDateTime") or resource.get("recordedDate")),
                    ),
                )
            )
        return facts

    def orders(self, resources: Iterable[dict[str, Any]], *, draft: bool = False) -> list[OrderFact]:
        facts: list[OrderFact] = []
        for resource in self.mine(resources, "ServiceRequest"):
            concept = _codeable(resource.get("code"))
            if concept is None:
                continue
            match = self.terminology.classify_service_request(concept[0], concept[1])
            matched = _lab_concept(match.concept) if match is not None else None
            if matched is None:
                continue
            facts.append(
                OrderFact(
                    concept=matched,
                    status=_status(resource),
                    is_draft=draft,
                    evidence=Evidence(
                        resource_type="ServiceRequest",
                        resource_id=_rid(resource),
                        code=_code_string(concept[0]),
                        display=_display(*concept),
                        date=parse_fhir_datetime(resource.get("authoredOn")),
                    ),
                )
            )
        return facts


def _lab_concept(name: str) -> LabConcept | None:
    # Terminology assigns the concepts from its value sets; one outside the vocabulary is a concept no rule reads.
    try:
        return LabConcept(name)
    except ValueError:
        return None


def _condition_concept(name: str | None) -> ConditionConcept | None:
    try:
        return ConditionConcept(name) if name is not None else None
    except ValueError:
        return None


def _first_code(value: Any) -> str | None:
    concept = _codeable(value)
    if concept is None:
        return None
    for coding in concept[0]:
        if coding.code:
            return coding.code
    return None


def _shown_number(comparator: str | None, number: float) -> str:
    text = f"{number:g}"
    return f"{comparator}{text}" if comparator else text


def _with(evidence: Evidence, **changes: Any) -> Evidence:
    return replace(evidence, **changes)


def patient_facts(patient: Mapping[str, Any]) -> PatientFacts:
    """Birth date and administrative gender, as the eGFR equation needs them."""
    gender = patient.get("gender")
    return PatientFacts(
        birth_date=_parse_date(patient.get("birthDate")),
        gender=gender if isinstance(gender, str) else None,
    )


def extract_facts(
    data: ResolvedData,
    *,
    patient_id: str,
    encounter_id: str | None,
    hook: Hook,
    terminology: TerminologyService,
    drafts: DraftOrders | None = None,
    patient_aliases: Iterable[str] = (),
    fetch_medication: Callable[[str], Mapping[str, Any] | None] | None = None,
) -> Facts:
    """Turn one request's resolved data (and draft orders) into the engine's facts."""
    aliases = {f"Patient/{patient_id}", *patient_aliases}
    everything = [r for item in data.keys.values() for r in item.resources]
    medications = {
        f"Medication/{r['id']}": r
        for r in everything
        if r.get("resourceType") == "Medication" and isinstance(r.get("id"), str)
    }
    if drafts is not None:
        medications.update(
            {f"Medication/{r['id']}": r for r in drafts.resources if r.get("resourceType") == "Medication"}
        )
    extractor = _Extractor(terminology, aliases, medications, fetch_medication)

    patient_resources = data.resources("patient")
    patient = patient_facts(patient_resources[0]) if patient_resources else PatientFacts()
    labs = extractor.labs(data.resources("observations"))
    meds = extractor.medication_facts([*data.resources("medicationStatements"), *data.resources("medicationRequests")])
    conditions = extractor.conditions(data.resources("conditions"))
    orders = extractor.orders(data.resources("serviceRequests"))
    if drafts is not None:
        meds.extend(extractor.medication_facts(drafts.resources, draft=True, concerned=drafts.concerned))
        orders.extend(extractor.orders(drafts.resources, draft=True))

    notes: list[str] = []
    for key, item in data.keys.items():
        if item.origin == "failed":
            notes.append(f"{key}: could not be obtained ({item.error})")
        elif item.note and item.note.startswith("incomplete"):
            notes.append(f"{key}: {item.note}")
    if extractor.foreign:
        notes.append(f"{extractor.foreign} resource(s) of another patient ignored")
    notes.extend(extractor.notes)
    if drafts is not None:
        notes.extend(drafts.notes)

    return Facts(
        patient=patient,
        labs=tuple(labs),
        medications=tuple(meds),
        conditions=tuple(conditions),
        orders=tuple(orders),
        medications_known=(
            data.known("medicationStatements")
            and data.known("medicationRequests")
            and extractor.unreadable_medications == 0
        ),
        labs_known=data.known("observations"),
        conditions_known=data.known("conditions"),
        orders_known=data.known("serviceRequests"),
        data_notes=tuple(dict.fromkeys(notes)),
        hook=hook,
        patient_id=patient_id,
        encounter_id=encounter_id,
    )

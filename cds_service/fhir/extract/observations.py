"""Observations -> lab results in the engine's canonical units (clinical-rules.md sections 1 and 2).

Real data is messy: every problem becomes a result marked unusable with its reason, never a crash and never a
silent "normal". A value sent as text is read only where its unit is fixed by definition (eGFR, drinks per day).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from cds_service.engine.facts import Evidence, LabResult
from cds_service.engine.vocabulary import AUDITC_ITEMS, LabConcept
from cds_service.errors import TerminologyError
from cds_service.fhir.extract.datatypes import (
    Concept,
    code_string,
    display_of,
    finite_number,
    parse_fhir_datetime,
    read_codeable_concept,
    read_quantity,
    resource_id,
    status_of,
)
from cds_service.fhir.extract.patient import PatientScope
from cds_service.interfaces import TerminologyService
from terminology import CodeRef
from terminology.valuesets import LOINC, canonical_system

_NUMBER_WITH_COMPARATOR = re.compile(r"^\s*(<=|>=|<|>)?\s*(-?\d+(?:\.\d+)?)\s*$")
# Concepts whose unit is fixed by definition, so a value sent as text (">60") can still be read.
_TEXT_VALUE_CONCEPTS = frozenset({LabConcept.EGFR, LabConcept.ALCOHOL_DRINKS_PER_DAY})
_EGFR_CANONICAL_UNIT = "mL/min/{1.73_m2}"
_LOINC_SHAPE = re.compile(r"^\d{1,7}-\d$")


def loinc_codes(codings: Sequence[CodeRef]) -> tuple[str, ...]:
    """The LOINC codes among an Observation's codings (a LOINC-shaped code without a system counts, as terminology
    reads it): which eGFR counts at equal times depends on its code (clinical-rules.md section 3)."""
    found: list[str] = []
    for coding in codings:
        code = (coding.code or "").strip()
        system = canonical_system(coding.system)
        if code and (system == LOINC or (system is None and _LOINC_SHAPE.match(code))):
            found.append(code)
    return tuple(dict.fromkeys(found))


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


def lab_concept(name: str) -> LabConcept | None:
    """The vocabulary's lab concept of a terminology concept name; None for one no rule reads."""
    # Terminology assigns the concepts from its value sets; one outside the vocabulary is a concept no rule reads.
    try:
        return LabConcept(name)
    except ValueError:
        return None


def with_value(evidence: Evidence, value: str | None, unit: str | None) -> Evidence:
    """``evidence`` with the value (and unit) as the EHR showed it: ``dataclasses.replace(evidence, value=, unit=)``."""
    # Built directly: replace() inspects the dataclass's fields on every call, twice per Observation on the hook
    # path (performance). tests/unit/fhir test that every other field is carried over.
    return Evidence(
        resource_type=evidence.resource_type,
        resource_id=evidence.resource_id,
        code=evidence.code,
        display=evidence.display,
        value=value,
        unit=unit,
        date=evidence.date,
        note=evidence.note,
    )


class ObservationReader:
    """Reads this patient's Observations (and their components) into lab results."""

    def __init__(self, terminology: TerminologyService, scope: PatientScope) -> None:
        self.terminology = terminology
        self.scope = scope

    def labs(self, resources: Iterable[dict[str, Any]]) -> list[LabResult]:
        """The lab results of the Observations the rules read, in input order."""
        results: list[LabResult] = []
        for resource in self.scope.mine(resources, "Observation"):
            results.extend(self._observation(resource))
        return results

    def _observation(self, resource: dict[str, Any]) -> list[LabResult]:
        found: list[LabResult] = []
        status = status_of(resource)
        when = observation_time(resource)
        concept = read_codeable_concept(resource.get("code"))
        if concept is not None:
            lab = self._lab(resource, resource, concept, status, when)
            if lab is not None:
                found.append(lab)
        # Panels (an AUDIT-C panel, say) carry their items as components: each is read like an Observation.
        components = resource.get("component")
        if isinstance(components, list):
            for component in components:
                if isinstance(component, dict) and (part := read_codeable_concept(component.get("code"))) is not None:
                    lab = self._lab(resource, component, part, status, when)
                    if lab is not None:
                        found.append(lab)
        return found

    def _lab(
        self,
        resource: Mapping[str, Any],
        element: Mapping[str, Any],
        concept: Concept,
        status: str,
        when: datetime | None,
    ) -> LabResult | None:
        codings, text = concept
        match = self.terminology.classify_observation(codings, text)
        lab = lab_concept(match.concept) if match is not None else None
        if match is None or lab is None:
            return None
        evidence = Evidence(
            resource_type="Observation",
            resource_id=resource_id(resource),
            code=code_string(codings),
            display=display_of(codings, text),
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
        return self._quantity_lab(lab, resource, element, status, when, evidence, loinc_codes(codings))

    def _auditc(
        self, concept: LabConcept, element: Mapping[str, Any], status: str, when: datetime, evidence: Evidence
    ) -> LabResult:
        answer = read_codeable_concept(element.get("valueCodeableConcept"))
        codings, text = answer if answer is not None else ([], None)
        score = element.get("valueInteger")
        score = score if isinstance(score, int) and not isinstance(score, bool) else None
        if text is None and isinstance(element.get("valueString"), str):
            text = element["valueString"]
        band = self.terminology.auditc_band(concept, codings, text, score)
        shown = display_of(codings, text) or (str(score) if score is not None else None)
        evidence = with_value(evidence, shown, evidence.unit)
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
        loinc: tuple[str, ...],
    ) -> LabResult:
        def unusable(reason: str, shown: Evidence) -> LabResult:
            # A result the rules cannot use, kept with what was shown of it and why (the card names it).
            return LabResult(concept, status, when, None, shown, unusable_reason=reason, loinc_codes=loinc)

        raw_quantity = element.get("valueQuantity")
        if isinstance(raw_quantity, dict):
            quantity = read_quantity(raw_quantity)
            if quantity is None:
                return unusable("valueQuantity is not a valid Quantity", evidence)
            if quantity.value is None:
                return unusable("valueQuantity has no value", evidence)
            finite = finite_number(quantity.value)
            if finite is None:
                return unusable("value is not a finite number", evidence)
            number = finite
            comparator = quantity.comparator
            units = [u for u in (quantity.code, quantity.unit) if u]
            evidence = with_value(evidence, _shown_number(comparator, number), quantity.unit or quantity.code)
        elif isinstance(element.get("valueString"), str):
            text_value = element["valueString"]
            evidence = with_value(evidence, text_value[:40], evidence.unit)
            parsed = _NUMBER_WITH_COMPARATOR.match(text_value)
            if parsed is None:
                return unusable("valueString is not a number", evidence)
            if concept not in _TEXT_VALUE_CONCEPTS:
                # A magnesium or creatinine value without a unit could be mg/dL or mmol/L (a 2.4-fold difference):
                # never guess.
                return unusable("value sent as text without a unit", evidence)
            finite = finite_number(parsed.group(2))
            if finite is None:
                return unusable("value is not a finite number", evidence)
            comparator, number = parsed.group(1), finite
            units = [_EGFR_CANONICAL_UNIT] if concept == LabConcept.EGFR else []
        elif isinstance(element.get("valueInteger"), int) and not isinstance(element.get("valueInteger"), bool):
            finite = finite_number(element["valueInteger"])
            if finite is None:
                return unusable("value is not a finite number", evidence)
            number, comparator, units = finite, None, []
            evidence = with_value(evidence, str(element["valueInteger"])[:40], evidence.unit)
        else:
            reason = "no value"
            if isinstance(element.get("dataAbsentReason"), dict):
                reason = "no value (dataAbsentReason given)"
            return unusable(reason, evidence)

        value, problem = self._convert(number, units, concept)
        if problem is not None:
            return LabResult(
                concept, status, when, None, evidence, comparator=comparator, unusable_reason=problem, loinc_codes=loinc
            )
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
            loinc_codes=loinc,
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
            quantity = read_quantity(raw)
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


def _shown_number(comparator: str | None, number: float) -> str:
    text = f"{number:g}"
    return f"{comparator}{text}" if comparator else text

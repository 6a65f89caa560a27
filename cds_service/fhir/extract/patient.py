"""Whose data this is: the patient in context, and the resources that name another patient (set aside, counted)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from cds_service.engine.facts import PatientFacts
from cds_service.fhir.extract.datatypes import latest_fhir_date, parse_fhir_date, parse_fhir_datetime
from cds_service.fhir.references import belongs_to_patient


class PatientScope:
    """The references that name the patient in context, and how many resources named someone else."""

    def __init__(self, patient_id: str, aliases: Iterable[str] = ()) -> None:
        self.aliases = {f"Patient/{patient_id}", *aliases}
        self.foreign = 0

    def mine(self, resources: Iterable[dict[str, Any]], resource_type: str) -> Iterator[dict[str, Any]]:
        """The resources of ``resource_type`` that belong to this patient (the others are counted, not used)."""
        for resource in resources:
            if resource.get("resourceType") != resource_type:
                continue
            if not belongs_to_patient(resource, self.aliases):
                self.foreign += 1
                continue
            yield resource


def patient_facts(patient: Mapping[str, Any]) -> PatientFacts:
    """Birth date, administrative gender and whether the patient has died (clinical-rules.md sections 0 and 3)."""
    gender = patient.get("gender")
    birth = patient.get("birthDate")
    return PatientFacts(
        birth_date=parse_fhir_date(birth),
        gender=gender if isinstance(gender, str) else None,
        deceased=is_deceased(patient),
        birth_date_latest=latest_fhir_date(birth),
        deceased_at=parse_fhir_datetime(patient.get("deceasedDateTime")),
    )


def is_deceased(patient: Mapping[str, Any]) -> bool:
    """Patient.deceasedBoolean true, or a Patient.deceasedDateTime present (section 0)."""
    # Section 0 says "present": a deceasedDateTime counts whatever its value, even one we cannot parse.
    if patient.get("deceasedBoolean") is True:
        return True
    when = patient.get("deceasedDateTime")
    return isinstance(when, str) and when.strip() != ""

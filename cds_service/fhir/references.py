"""FHIR references as plain data: which patient a resource names, which Medication a medication points at.

Shared by prefetch (which Medications to fetch) and extraction (which resources are this patient's, which Medication
a MedicationRequest means). Parsing is strict: only a FHIR id may end up in a path we read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# A FHIR id (R4 "id" datatype): the only thing that may follow "Medication/" in a path we read.
_FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_MEDICATION = "Medication/"


def reference_of(value: Any) -> str | None:
    """``Reference.reference`` of a FHIR Reference, if it is a string."""
    if isinstance(value, dict) and isinstance(value.get("reference"), str):
        ref: str = value["reference"]
        return ref
    return None


def belongs_to_patient(resource: Mapping[str, Any], aliases: set[str]) -> bool:
    """False when the resource names a different patient; a resource without subject came from a patient query."""
    ref = reference_of(resource.get("subject")) or reference_of(resource.get("patient"))
    if ref is None:
        return True
    if ref in aliases:
        return True
    # An absolute reference (https://ehr/fhir/Patient/123) to the same patient.
    return any(ref.endswith("/" + alias) for alias in aliases if alias.startswith("Patient/"))


def medication_key(reference: str) -> str | None:
    """``Medication/<id>`` for a reference to a Medication (relative, versioned or absolute), else None.

    ``#id`` (a contained Medication) is not a key: it is resolved inside the resource that holds it. The id must be a
    FHIR id, so that nothing but a Medication read can be made of it (no path or query injection).
    """
    path = reference.split("/_history", 1)[0]
    if _MEDICATION not in path:
        return None
    medication_id = path.rsplit(_MEDICATION, 1)[1]
    return _MEDICATION + medication_id if _FHIR_ID.match(medication_id) else None


def medication_reference(resource: Mapping[str, Any]) -> str | None:
    """The ``medicationReference`` of a MedicationRequest or MedicationStatement, if any."""
    return reference_of(resource.get("medicationReference"))

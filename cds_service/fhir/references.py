"""FHIR references as plain data: which patient a resource names, which Medication a medication points at.

Shared by prefetch (which Medications to fetch) and extraction (which resources are this patient's, which Medication
a MedicationRequest means). Parsing is strict: only a FHIR id may end up in a path we read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# A FHIR id (R4 "id" datatype): the only thing that may follow "Medication/" in a path we read.
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
# Medication/<id>, optionally versioned, relative or at the end of an absolute URL (a FHIR "literal reference").
_MEDICATION_REFERENCE = re.compile(
    r"(?:https?://[^/?#]+(?:/[^/?#;]+)*/)?"  # the server's base, for an absolute reference
    r"Medication/([^/?#]+)"
    r"(?:/_history/[^/?#]+)?"
)
_MEDICATION = "Medication/"


def is_fhir_id(value: str) -> bool:
    """True for a FHIR id that is a name, not a path: the R4 "id" characters, and not only dots (``.``, ``..``)."""
    return _FHIR_ID.fullmatch(value) is not None and set(value) != {"."}


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

    ``#id`` (a contained Medication) is not a key: it is resolved inside the resource that holds it. The whole
    reference must have the shape of a literal reference and the id must be a FHIR id that is not a dot segment, so
    that nothing but a Medication read can be made of it (``Medication/..`` would read the FHIR base,
    ``Medication/../../admin/x`` another path; no query, matrix parameter or escape gets through either).
    """
    match = _MEDICATION_REFERENCE.fullmatch(reference)
    if match is None or not is_fhir_id(match.group(1)):
        return None
    return _MEDICATION + match.group(1)


def medication_reference(resource: Mapping[str, Any]) -> str | None:
    """The ``medicationReference`` of a MedicationRequest or MedicationStatement, if any."""
    return reference_of(resource.get("medicationReference"))

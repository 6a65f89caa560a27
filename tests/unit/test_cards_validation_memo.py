"""Suggestion resources are validated per shape (references aside): an invalid one must still fail every time."""

from __future__ import annotations

from typing import Any

import pytest
from fhir.resources.R4B.medicationrequest import MedicationRequest

from cds_service.cards.suggestions import CardBuildError, _validate


def _draft(status: str | None, patient: str = "Patient/p1") -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "intent": "order",
        "medicationCodeableConcept": {"text": "Magnesium citrate"},
        "subject": {"reference": patient},
    }
    if status is not None:
        resource["status"] = status
    return resource


def test_invalid_suggestion_fails_every_time() -> None:
    # FHIR R4 MedicationRequest.status is required (cardinality 1..1): the model rejects a resource without it.
    for _ in range(2):
        with pytest.raises(CardBuildError):
            _validate(MedicationRequest, _draft(None))


def test_valid_shape_passes_for_other_patients() -> None:
    _validate(MedicationRequest, _draft("draft", "Patient/p1"))
    _validate(MedicationRequest, _draft("draft", "Patient/another-patient"))


def test_empty_reference_is_still_validated() -> None:
    # An empty string is not a FHIR string: not a plain reference, so the whole resource goes to the model.
    with pytest.raises(CardBuildError):
        _validate(MedicationRequest, _draft("draft", ""))

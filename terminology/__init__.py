"""Value sets and code recognition for the codes real EHRs send (see docs/terminology.md)."""

from __future__ import annotations

from terminology.core import Terminology, default_terminology, load_terminology
from terminology.model import (
    CodeRef,
    ConvertedQuantity,
    IngredientMatch,
    LabMatch,
    MedicationClassification,
    UnitNotRecognised,
)
from terminology.remote import FhirTerminologyLookup, RemoteLookup, RxNavLookup
from terminology.valuesets import AUDITC_CONCEPTS, DIURETIC_CLASSES, DRUG_CLASSES, LAB_CONCEPTS

__all__ = [
    "AUDITC_CONCEPTS",
    "DIURETIC_CLASSES",
    "DRUG_CLASSES",
    "LAB_CONCEPTS",
    "CodeRef",
    "ConvertedQuantity",
    "FhirTerminologyLookup",
    "IngredientMatch",
    "LabMatch",
    "MedicationClassification",
    "RemoteLookup",
    "RxNavLookup",
    "Terminology",
    "UnitNotRecognised",
    "default_terminology",
    "load_terminology",
]

"""The engine's inputs: facts already classified and normalised by ``cds_service.fhir.extract``.

The engine never sees FHIR JSON; every value here is in its canonical unit and every fact points at the
resource it came from (``Evidence``) so that cards can explain themselves. Concepts, drug classes and hooks are the
values of :mod:`cds_service.engine.vocabulary`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from cds_service.engine.vocabulary import ConditionConcept, DrugClass, Hook, LabConcept, MagnesiumProductKind


@dataclass(frozen=True)
class Evidence:
    """Where a fact came from: the resource, its code, and the value as the EHR showed it."""

    resource_type: str
    resource_id: str
    code: str | None = None  # "system|code"
    display: str | None = None
    value: str | None = None
    unit: str | None = None
    date: datetime | None = None
    note: str | None = None


@dataclass(frozen=True)
class PatientFacts:
    """Demographics the equations and the scope (clinical-rules.md section 0) need."""

    birth_date: date | None = None
    gender: str | None = None
    # Patient.deceasedBoolean true or Patient.deceasedDateTime present (section 0).
    deceased: bool = False
    # The last day a partial birthDate ("2008", "2008-12") may stand for; the birth date itself when complete.
    birth_date_latest: date | None = None
    # Patient.deceasedDateTime when it could be read (a death after `now` leaves the patient alive at `now`).
    deceased_at: datetime | None = None


@dataclass(frozen=True)
class LabResult:
    """One Observation, classified into a concept, with its value already in the canonical unit."""

    concept: LabConcept
    status: str
    effective: datetime | None
    value: float | None
    evidence: Evidence
    comparator: str | None = None
    answer_band: str | None = None
    reference_low: float | None = None
    reference_high: float | None = None
    unusable_reason: str | None = None
    # The LOINC codes of Observation.code (``98980-6``): which eGFR counts at equal times (section 3).
    loinc_codes: tuple[str, ...] = ()


@dataclass(frozen=True)
class MedicationFact:
    """One MedicationStatement or MedicationRequest, by ingredient and class."""

    ingredients: tuple[str, ...]
    classes: frozenset[str]  # DrugClass values, as terminology assigned them
    resource_type: str
    resource_id: str
    status: str
    evidence: Evidence
    display: str = ""
    period_end: datetime | None = None
    is_draft: bool = False
    is_concerned: bool = False
    matched_by: str = ""
    # Each ingredient's own classes (a combination product: which ingredient is the diuretic), from terminology.
    ingredient_classes: tuple[tuple[str, frozenset[str]], ...] = ()
    # A magnesium product's kind (section 5): oral supplement, laxative/antacid or parenteral; None for any other drug.
    product_kind: MagnesiumProductKind | None = None
    # A magnesium product's salt class (mg-salt-organic / -inorganic / -unspecified); None for any other drug.
    salt_class: DrugClass | None = None
    # Why terminology gave the product its kind (the clause of section 5), for the evidence.
    product_rule: str = ""


@dataclass(frozen=True)
class ConditionFact:
    """One Condition of a concept the rules use."""

    concept: ConditionConcept
    clinical_status: str | None
    verification_status: str | None
    evidence: Evidence


@dataclass(frozen=True)
class OrderFact:
    """One ServiceRequest (existing or draft) for a test the rules may recommend."""

    concept: LabConcept
    status: str
    evidence: Evidence
    is_draft: bool = False


@dataclass(frozen=True)
class Facts:
    """Everything the engine knows about one patient for one hook call."""

    patient: PatientFacts = field(default_factory=PatientFacts)
    labs: tuple[LabResult, ...] = ()
    medications: tuple[MedicationFact, ...] = ()
    conditions: tuple[ConditionFact, ...] = ()
    orders: tuple[OrderFact, ...] = ()
    medications_known: bool = True
    labs_known: bool = True
    conditions_known: bool = True
    orders_known: bool = True
    data_notes: tuple[str, ...] = ()
    hook: Hook = Hook.PATIENT_VIEW
    patient_id: str | None = None
    encounter_id: str | None = None

"""The engine's inputs: facts already classified and normalised by ``cds_service.fhir.extract``.

The engine never sees FHIR JSON; every value here is in its canonical unit and every fact points at the
resource it came from (``Evidence``) so that cards can explain themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

# Lab concepts the extractor may emit (LabResult.concept).
SERUM_MAGNESIUM = "serum-magnesium"
IONIZED_MAGNESIUM = "ionized-magnesium"
URINE_MAGNESIUM = "urine-magnesium"
URINE_CREATININE = "urine-creatinine"
SERUM_CREATININE = "serum-creatinine"
EGFR = "egfr"
ALCOHOL_DRINKS_PER_DAY = "alcohol-drinks-per-day"
AUDITC_FREQUENCY = "auditc-frequency"
AUDITC_TYPICAL_DRINKS = "auditc-typical-drinks"

# Medication classes (MedicationFact.classes), assigned by the terminology package.
LOOP_DIURETIC = "loop-diuretic"
THIAZIDE_DIURETIC = "thiazide-diuretic"
POTASSIUM_SPARING_DIURETIC = "potassium-sparing-diuretic"
CARBONIC_ANHYDRASE_INHIBITOR = "carbonic-anhydrase-inhibitor"
PROTON_PUMP_INHIBITOR = "proton-pump-inhibitor"
MG_WASTING_OTHER = "mg-wasting-other"
MG_SALT_ORGANIC = "mg-salt-organic"
MG_SALT_INORGANIC = "mg-salt-inorganic"
# A magnesium supplement whose salt the order does not name ("Magnesium 250 mg"): a supplement for every safety rule.
MG_SALT_UNSPECIFIED = "mg-salt-unspecified"
INTERACTS_TETRACYCLINE = "interacts-tetracycline"
INTERACTS_FLUOROQUINOLONE = "interacts-fluoroquinolone"
INTERACTS_BISPHOSPHONATE = "interacts-bisphosphonate"
INTERACTS_LEVOTHYROXINE = "interacts-levothyroxine"
INTERACTS_DOLUTEGRAVIR = "interacts-integrase-inhibitor"  # the class of dolutegravir and bictegravir
INTERACTS_GABAPENTIN = "interacts-gabapentin"

DIURETIC_CLASSES = frozenset(
    {LOOP_DIURETIC, THIAZIDE_DIURETIC, POTASSIUM_SPARING_DIURETIC, CARBONIC_ANHYDRASE_INHIBITOR}
)
MG_SUPPLEMENT_CLASSES = frozenset({MG_SALT_ORGANIC, MG_SALT_INORGANIC, MG_SALT_UNSPECIFIED})
INTERACTING_CLASSES = (
    INTERACTS_TETRACYCLINE,
    INTERACTS_FLUOROQUINOLONE,
    INTERACTS_BISPHOSPHONATE,
    INTERACTS_LEVOTHYROXINE,
    INTERACTS_DOLUTEGRAVIR,
    INTERACTS_GABAPENTIN,
)

# Condition concepts.
ALCOHOL_USE_DISORDER = "alcohol-use-disorder"

# Hooks.
PATIENT_VIEW = "patient-view"
ORDER_SELECT = "order-select"
ORDER_SIGN = "order-sign"


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
    """Demographics the equations need."""

    birth_date: date | None = None
    gender: str | None = None


@dataclass(frozen=True)
class LabResult:
    """One Observation, classified into a concept, with its value already in the canonical unit."""

    concept: str
    status: str
    effective: datetime | None
    value: float | None
    evidence: Evidence
    comparator: str | None = None
    answer_band: str | None = None
    reference_low: float | None = None
    reference_high: float | None = None
    unusable_reason: str | None = None


@dataclass(frozen=True)
class MedicationFact:
    """One MedicationStatement or MedicationRequest, by ingredient and class."""

    ingredients: tuple[str, ...]
    classes: frozenset[str]
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
    # Given intravenously, intramuscularly or subcutaneously (route or dose form); oral-supplement advice skips it.
    parenteral: bool = False


@dataclass(frozen=True)
class ConditionFact:
    """One Condition of a concept the rules use."""

    concept: str
    clinical_status: str | None
    verification_status: str | None
    evidence: Evidence


@dataclass(frozen=True)
class OrderFact:
    """One ServiceRequest (existing or draft) for a test the rules may recommend."""

    concept: str
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
    hook: str = PATIENT_VIEW
    patient_id: str | None = None
    encounter_id: str | None = None

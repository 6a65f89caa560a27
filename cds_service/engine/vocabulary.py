"""The clinical vocabulary, defined once: every code, category and class name the rules and the cards use.

Each is a ``StrEnum`` (its members are the strings of clinical-rules.md, so they compare equal to, and serialise
as, those strings). The terminology package assigns the drug classes and lab concepts; the engine reads them; the
cards, the audit log and the CLI show them. Nothing else spells these strings out.
"""

from __future__ import annotations

from enum import StrEnum

# The version of clinical-rules.md this engine implements (section 11 lists what changed); every assessment names it.
RULES_VERSION = "2026.12"


class Hook(StrEnum):
    """The CDS Hooks this service answers (hook library: patient-view, order-select, order-sign)."""

    PATIENT_VIEW = "patient-view"
    ORDER_SELECT = "order-select"
    ORDER_SIGN = "order-sign"


ORDER_HOOKS = frozenset({Hook.ORDER_SELECT, Hook.ORDER_SIGN})


class LabConcept(StrEnum):
    """What an Observation (or a ServiceRequest for a test) is, once terminology has read its code."""

    SERUM_MAGNESIUM = "serum-magnesium"
    IONIZED_MAGNESIUM = "ionized-magnesium"
    URINE_MAGNESIUM = "urine-magnesium"
    URINE_CREATININE = "urine-creatinine"
    SERUM_CREATININE = "serum-creatinine"
    EGFR = "egfr"
    ALCOHOL_DRINKS_PER_DAY = "alcohol-drinks-per-day"
    AUDITC_FREQUENCY = "auditc-frequency"
    AUDITC_TYPICAL_DRINKS = "auditc-typical-drinks"


# The two AUDIT-C items: answered with a band (a coded answer), not a quantity.
AUDITC_ITEMS = frozenset({LabConcept.AUDITC_FREQUENCY, LabConcept.AUDITC_TYPICAL_DRINKS})


class ConditionConcept(StrEnum):
    """Condition concepts the rules use."""

    ALCOHOL_USE_DISORDER = "alcohol-use-disorder"


class DrugClass(StrEnum):
    """Drug classes a medication's ingredients carry (assigned by the terminology value sets)."""

    LOOP_DIURETIC = "loop-diuretic"
    THIAZIDE_DIURETIC = "thiazide-diuretic"
    POTASSIUM_SPARING_DIURETIC = "potassium-sparing-diuretic"
    CARBONIC_ANHYDRASE_INHIBITOR = "carbonic-anhydrase-inhibitor"
    PROTON_PUMP_INHIBITOR = "proton-pump-inhibitor"
    MG_WASTING_OTHER = "mg-wasting-other"
    MG_SALT_ORGANIC = "mg-salt-organic"
    MG_SALT_INORGANIC = "mg-salt-inorganic"
    # A magnesium product whose salt the order does not name ("Magnesium 250 mg").
    MG_SALT_UNSPECIFIED = "mg-salt-unspecified"
    INTERACTS_TETRACYCLINE = "interacts-tetracycline"
    INTERACTS_FLUOROQUINOLONE = "interacts-fluoroquinolone"
    INTERACTS_BISPHOSPHONATE = "interacts-bisphosphonate"
    INTERACTS_LEVOTHYROXINE = "interacts-levothyroxine"
    # Dolutegravir and bictegravir: the same spacing (section 7.3), so one class.
    INTERACTS_INTEGRASE_INHIBITOR = "interacts-integrase-inhibitor"
    INTERACTS_GABAPENTIN = "interacts-gabapentin"
    INTERACTS_ELTROMBOPAG = "interacts-eltrombopag"


# The MDS diuretic component [FAN21]: loop, thiazide and thiazide-like, potassium-sparing, carbonic anhydrase
# inhibitors (clinical-rules.md section 4).
DIURETIC_CLASSES = frozenset(
    {
        DrugClass.LOOP_DIURETIC,
        DrugClass.THIAZIDE_DIURETIC,
        DrugClass.POTASSIUM_SPARING_DIURETIC,
        DrugClass.CARBONIC_ANHYDRASE_INHIBITOR,
    }
)
MG_SALT_CLASSES = frozenset({DrugClass.MG_SALT_ORGANIC, DrugClass.MG_SALT_INORGANIC, DrugClass.MG_SALT_UNSPECIFIED})
# Drugs whose absorption oral magnesium lowers, in the order the spacing notes list them (section 7.3).
INTERACTING_CLASSES = (
    DrugClass.INTERACTS_TETRACYCLINE,
    DrugClass.INTERACTS_FLUOROQUINOLONE,
    DrugClass.INTERACTS_BISPHOSPHONATE,
    DrugClass.INTERACTS_LEVOTHYROXINE,
    DrugClass.INTERACTS_INTEGRASE_INHIBITOR,
    DrugClass.INTERACTS_GABAPENTIN,
    DrugClass.INTERACTS_ELTROMBOPAG,
)


class MagnesiumProductKind(StrEnum):
    """What a magnesium-containing medication is (section 5); terminology.products decides it."""

    # Oral tablets, capsules, powders, chewables taken for magnesium: the supplement rules apply.
    ORAL_SUPPLEMENT = "oral-supplement"
    # Oral products whose magnesium is a laxative or antacid: not a supplement, but oral magnesium for safety.
    LAXATIVE_ANTACID = "laxative-antacid"
    # Intravenous or intramuscular magnesium: treatment of deficiency, never deleted by an order card.
    PARENTERAL = "parenteral"


class MagnesiumCategory(StrEnum):
    """Serum (and, of these, low/normal/high/unknown: ionized) magnesium categories (section 2)."""

    SEVERE_LOW = "severe-low"
    LOW = "low"
    LOW_NORMAL = "low-normal"
    NORMAL = "normal"
    HIGH = "high"
    SEVERE_HIGH = "severe-high"  # version 2: the symptomatic range [YU16]
    UNKNOWN = "unknown"


# Hypermagnesemia, of either severity (sections 7.1, 7.2 and 8).
HIGH_CATEGORIES = frozenset({MagnesiumCategory.HIGH, MagnesiumCategory.SEVERE_HIGH})
# Hypomagnesemia, of either severity (sections 6 and 7.1).
LOW_CATEGORIES = frozenset({MagnesiumCategory.LOW, MagnesiumCategory.SEVERE_LOW})
# The categories an ionized result can have (section 2): the serum severities do not apply to it.
IONIZED_CATEGORIES = frozenset(
    {MagnesiumCategory.LOW, MagnesiumCategory.NORMAL, MagnesiumCategory.HIGH, MagnesiumCategory.UNKNOWN}
)


class Scope(StrEnum):
    """Whom the rules speak about (section 0)."""

    ADULT = "adult"
    PEDIATRIC = "pediatric"  # below 18 years: only the urgent cards, without doses
    DECEASED = "deceased"  # no cards at all


class EgfrGap(StrEnum):
    """Why no eGFR could be computed from a creatinine on file (section 3; the check-renal-function summary)."""

    CREATININE_UNUSABLE = "creatinine-unusable"
    EGFR_UNUSABLE = "egfr-unusable"  # the newest reported eGFR cannot be read, and no creatinine is newer
    SEX_UNKNOWN = "sex-unknown"
    BIRTH_DATE_UNKNOWN = "birth-date-unknown"
    UNDER_ADULT_AGE = "under-adult-age"  # the patient was under 18 when the creatinine was drawn (section 0)


class IonizedReference(StrEnum):
    """Where the ionized magnesium reference interval came from (section 2)."""

    OBSERVATION = "observation"  # the Observation's own referenceRange, both bounds in mmol/L
    DEFAULT = "default"  # the configured interval [GRE96]


class FemgInterpretation(StrEnum):
    """What a fractional excretion of magnesium says (section 6) [TUC20]."""

    RENAL_WASTING = "renal-wasting"
    EXTRARENAL = "extrarenal"
    INDETERMINATE = "indeterminate"
    NOT_APPLICABLE = "not-applicable"


class AlcoholMethod(StrEnum):
    """Which source decided heavy drinking (section 4, in order of preference)."""

    DRINKS_PER_DAY = "74013-4"
    AUDIT_C = "audit-c"
    CONDITION = "condition"
    NONE = "none"


class Deficiency(StrEnum):
    """The deficiency assessment (section 7.1)."""

    EXCESS = "excess"
    LIKELY = "likely"
    POSSIBLE = "possible"
    UNLIKELY = "unlikely"
    UNKNOWN = "unknown"


class EgfrSource(StrEnum):
    """How the eGFR that counts was obtained (section 3)."""

    OBSERVATION = "observation"
    CKD_EPI_2021 = "ckd-epi-2021"
    NONE = "none"


class MdsGroup(StrEnum):
    """The MDS group of a score interval (section 4)."""

    LOW = "low"
    MODERATE = "moderate"
    HIGH = "high"
    INDETERMINATE = "indeterminate"


class MdsComponentName(StrEnum):
    """The MDS components (section 4) [FAN21]."""

    DIURETIC = "diuretic"
    PROTON_PUMP_INHIBITOR = "proton-pump-inhibitor"
    EGFR = "egfr"
    HEAVY_DRINKING = "heavy-drinking"


class Indicator(StrEnum):
    """CDS Hooks card indicators, in increasing urgency."""

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class RecommendationCode(StrEnum):
    """Recommendation codes (sections 7 and 8): one card each, named in the card's extension."""

    URGENT_EVALUATION = "urgent-evaluation"
    TEST_SERUM_MG = "test-serum-mg"
    TEST_IONIZED_MG = "test-ionized-mg"
    CHECK_RENAL_FUNCTION = "check-renal-function"
    SUPPLEMENT_RENAL_CAUTION = "supplement-renal-caution"
    SUPPLEMENT_ORGANIC = "supplement-organic"
    SWITCH_TO_ORGANIC = "switch-to-organic"
    STOP_SUPPLEMENT = "stop-supplement"
    EVALUATE_HYPERMAGNESEMIA = "evaluate-hypermagnesemia"
    PERSISTENT_DEFICIENCY = "persistent-deficiency"
    ORDER_DEPLETES_MG = "order-depletes-mg"
    ORDER_SUPPLEMENT_CONTRAINDICATED = "order-supplement-contraindicated"
    ORDER_PARENTERAL_MG_MONITOR = "order-parenteral-mg-monitor"
    ORDER_SPACING = "order-spacing"


# The only patient-view cards a child gets (section 0), without doses.
PEDIATRIC_CODES = frozenset(
    {
        RecommendationCode.URGENT_EVALUATION,
        RecommendationCode.EVALUATE_HYPERMAGNESEMIA,
        RecommendationCode.STOP_SUPPLEMENT,
    }
)
# The cards whose detail carries the PPI and diuretic cause notes for a likely deficiency (section 7.2).
CAUSE_NOTE_CODES = frozenset(
    {
        RecommendationCode.URGENT_EVALUATION,
        RecommendationCode.SUPPLEMENT_ORGANIC,
        RecommendationCode.PERSISTENT_DEFICIENCY,
        RecommendationCode.SWITCH_TO_ORGANIC,
        RecommendationCode.SUPPLEMENT_RENAL_CAUTION,
    }
)


class Qualifier(StrEnum):
    """Flags a recommendation carries for its card's wording: what the rule could not rule out."""

    ORDERS_UNKNOWN = "orders-unknown"
    MEDICATIONS_UNKNOWN = "medications-unknown"
    EGFR_BELOW_30_NOT_EXCLUDED = "egfr-below-30-not-excluded"
    # A possible deficiency's test-ionized-mg card offers no supplement because of the kidneys (section 7.2).
    EGFR_BELOW_30 = "egfr-below-30"
    EGFR_UNKNOWN = "egfr-unknown"
    # A child: the adult rules do not apply; the detail names the age's upper intake (section 0) [IOM97].
    PEDIATRIC = "pediatric"
    # Parenteral magnesium is current: evaluate-hypermagnesemia adds its monitoring advice (section 7.2).
    PARENTERAL_MAGNESIUM_CURRENT = "parenteral-magnesium-current"
    # A PPI draft: the magnesium risk comes with long-term use (section 8) [FDA11].
    LONG_TERM_PPI = "long-term-ppi"
    # check-renal-function: a creatinine is already ordered, so no second one is suggested.
    CREATININE_ORDERED = "creatinine-ordered"

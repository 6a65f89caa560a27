"""The words of the cards (clinical-rules.md sections 7 and 8): summaries, details, sources, texts per code.

The engine decides; this module only words the decision. EHR text goes through ``cds_service.cards.markdown``.
"""

from __future__ import annotations

from cds_service.cards.markdown import escape_markdown, plain_text
from cds_service.engine.assessment import Assessment
from cds_service.engine.facts import Evidence, MedicationFact
from cds_service.engine.magnesium import MagnesiumResult
from cds_service.engine.medications import product_kind
from cds_service.engine.recommend.figures import egfr_figure, mds_figure
from cds_service.engine.recommend.types import CauseNote, CreateMedicationRequest, Recommendation, SpacingAdvice
from cds_service.engine.scope import pediatric_upper_intake
from cds_service.engine.vocabulary import (
    HIGH_CATEGORIES,
    Deficiency,
    DrugClass,
    EgfrGap,
    EgfrSource,
    FemgInterpretation,
    LabConcept,
    MagnesiumCategory,
    MagnesiumProductKind,
    MdsComponentName,
    Qualifier,
    RecommendationCode,
)

SUMMARY_MAX_CHARS = 139  # CDS Hooks: summary "<140 characters"
DRUG_NAME_MAX_CHARS = 40  # leaves room for the key figure in a summary

TEST_TEXT = {
    LabConcept.SERUM_MAGNESIUM: "Serum magnesium",
    LabConcept.IONIZED_MAGNESIUM: "Ionized magnesium",
    LabConcept.SERUM_CREATININE: "Serum creatinine (for eGFR)",
}

# (label, DOI url) per source tag of clinical-rules.md.
SOURCES = {
    "FAN21": ("Fan L et al. Magnesium Depletion Score. J Nutr 2021", "https://doi.org/10.1093/jn/nxab138"),
    "INK21": ("Inker LA et al. CKD-EPI 2021. N Engl J Med 2021", "https://doi.org/10.1056/NEJMoa2102953"),
    "COS16": (
        "Costello RB et al. Serum magnesium reference interval. Adv Nutr 2016",
        "https://doi.org/10.3945/an.116.012765",
    ),
    "PIC20": (
        "Pickering G et al. Magnesium status and stress. Nutrients 2020",
        "https://doi.org/10.3390/nu12123672",
    ),
    "OPA22": (
        "Opankovic A et al. Ionized magnesium. Dose Response 2022",
        "https://doi.org/10.1177/15593258221116741",
    ),
    "FIO21": (
        "Fiorentini D et al. Magnesium: biochemistry and nutrition. Nutrients 2021",
        "https://doi.org/10.3390/nu13041136",
    ),
    "PAP26": (
        "Papagiannidou A et al. Hypomagnesemia update. Curr Nutr Rep 2026",
        "https://doi.org/10.1007/s13668-026-00745-5",
    ),
    "LU00": (
        "Lu JF, Nightingale CH. Magnesium sulfate in eclampsia and pre-eclampsia. Clin Pharmacokinet 2000",
        "https://doi.org/10.2165/00003088-200038040-00002",
    ),
    "IOM97": (
        "Institute of Medicine. Dietary Reference Intakes: calcium, phosphorus, magnesium. 1997",
        "https://doi.org/10.17226/5776",
    ),
}
# Cited as bracketed tags in the text only: no DOI of theirs could be verified, so no link is made up (YU16 is an
# UpToDate topic, FDA11 a Drug Safety Communication, TUC20 a JAMA clinical-challenge page).
CODE_SOURCES: dict[RecommendationCode, tuple[str, ...]] = {
    RecommendationCode.URGENT_EVALUATION: ("PAP26",),
    RecommendationCode.TEST_SERUM_MG: ("FAN21", "PAP26"),
    RecommendationCode.TEST_IONIZED_MG: ("COS16", "OPA22", "FAN21"),
    RecommendationCode.CHECK_RENAL_FUNCTION: ("INK21", "PIC20"),
    RecommendationCode.SUPPLEMENT_RENAL_CAUTION: ("INK21", "PAP26"),
    RecommendationCode.SUPPLEMENT_ORGANIC: ("PIC20", "FIO21", "COS16"),
    RecommendationCode.SWITCH_TO_ORGANIC: ("FIO21",),
    RecommendationCode.STOP_SUPPLEMENT: ("PAP26",),
    RecommendationCode.EVALUATE_HYPERMAGNESEMIA: ("LU00", "PAP26"),
    RecommendationCode.PERSISTENT_DEFICIENCY: ("PIC20", "PAP26"),
    RecommendationCode.ORDER_DEPLETES_MG: ("FAN21", "PAP26"),
    RecommendationCode.ORDER_SUPPLEMENT_CONTRAINDICATED: ("INK21", "PAP26"),
    RecommendationCode.ORDER_PARENTERAL_MG_MONITOR: ("LU00", "INK21"),
    RecommendationCode.ORDER_SPACING: ("PAP26",),
}

# Section 7.3: the spacing depends on the ingredient (the product labels differ), the class is the fallback.
SPACING_BY_INGREDIENT = {
    "doxycycline": "take doxycycline and magnesium 2-3 hours apart",
    "minocycline": "take minocycline and magnesium 2-3 hours apart",
    "tetracycline": "take tetracycline and magnesium 2-3 hours apart",
    "ciprofloxacin": "take ciprofloxacin 2 hours before or 6 hours after magnesium",
    "levofloxacin": "take levofloxacin 2 hours before or 2 hours after magnesium",
    "moxifloxacin": "take moxifloxacin 4 hours before or 8 hours after magnesium",
    "alendronate": (
        "take alendronate first, at least 30 minutes before magnesium (the label's fasting rule); in practice "
        "magnesium later in the day"
    ),
    "risedronate": (
        "take risedronate first, at least 30 minutes before magnesium (the label's fasting rule); in practice "
        "magnesium later in the day"
    ),
    "ibandronate": "take oral ibandronate at least 60 minutes before magnesium",
    "levothyroxine": "take levothyroxine and magnesium 4 hours apart",
    "dolutegravir": "take dolutegravir 2 hours before or 6 hours after magnesium",
    "bictegravir": "take bictegravir 2 hours before or 6 hours after magnesium",
    "eltrombopag": "take eltrombopag 2 hours before or 4 hours after magnesium",
    "gabapentin": "take gabapentin at least 2 hours after magnesium",
}
SPACING_BY_CLASS = {
    DrugClass.INTERACTS_TETRACYCLINE: "take the tetracycline and magnesium 2-3 hours apart",
    # The fluoroquinolones differ (ciprofloxacin 2 h before / 6 h after, moxifloxacin 4 h / 8 h): the widest.
    DrugClass.INTERACTS_FLUOROQUINOLONE: "take the fluoroquinolone 4 hours before or 8 hours after magnesium",
    DrugClass.INTERACTS_BISPHOSPHONATE: "take the bisphosphonate first, at least 60 minutes before magnesium",
    DrugClass.INTERACTS_LEVOTHYROXINE: "take levothyroxine and magnesium 4 hours apart",
    DrugClass.INTERACTS_INTEGRASE_INHIBITOR: "take the integrase inhibitor 2 hours before or 6 hours after magnesium",
    DrugClass.INTERACTS_ELTROMBOPAG: "take eltrombopag 2 hours before or 4 hours after magnesium",
    DrugClass.INTERACTS_GABAPENTIN: "take gabapentin at least 2 hours after magnesium",
}


def spacing_text(advice: SpacingAdvice) -> str:
    """Section 7.3's spacing advice for one interacting ingredient (the class's when the ingredient is unlisted)."""
    by_ingredient = SPACING_BY_INGREDIENT.get(advice.ingredient.lower())
    return by_ingredient or SPACING_BY_CLASS.get(advice.interaction_class, "space the doses")


QUALIFIER_TEXT = {
    Qualifier.ORDERS_UNKNOWN: "Existing orders could not be checked; this test may already be ordered.",
    Qualifier.MEDICATIONS_UNKNOWN: "The medication list could not be retrieved; check for a current magnesium salt.",
    Qualifier.EGFR_BELOW_30_NOT_EXCLUDED: (
        "The reported eGFR does not exclude a value below 30 mL/min/1.73 m2: oral magnesium only under specialist "
        "supervision until it does."
    ),
    Qualifier.EGFR_UNKNOWN: "Renal function unknown: check creatinine before any supplement.",
    Qualifier.PARENTERAL_MAGNESIUM_CURRENT: (
        "Parenteral magnesium is current: monitor reflexes, respiration and urine output per protocol [LU00]."
    ),
    Qualifier.LONG_TERM_PPI: (
        "The magnesium risk of a proton pump inhibitor comes with long-term use; recheck magnesium if it is "
        "continued [FDA11]."
    ),
    Qualifier.CREATININE_ORDERED: "A creatinine is already ordered; no second one is suggested.",
}

ACTION_TEXT = {
    RecommendationCode.URGENT_EVALUATION: (
        "Severe hypomagnesemia. Assess symptoms and ECG, check potassium and calcium, and replace magnesium "
        "per local protocol (IV may be needed)."
    ),
    RecommendationCode.TEST_SERUM_MG: "The magnesium depletion risk warrants a serum magnesium measurement.",
    RecommendationCode.TEST_IONIZED_MG: (
        "Serum magnesium may miss a chronic latent deficiency; ionized magnesium is the better marker."
    ),
    RecommendationCode.CHECK_RENAL_FUNCTION: (
        "Renal function is unknown: an eGFR is needed before oral magnesium is started."
    ),
    RecommendationCode.SUPPLEMENT_RENAL_CAUTION: (
        "Oral magnesium below eGFR 30 mL/min/1.73 m2 only under specialist supervision, at a reduced dose with "
        "serum magnesium monitoring."
    ),
    RecommendationCode.SUPPLEMENT_ORGANIC: (
        "Consider an organic magnesium salt (better absorbed than oxide). Trial doses are "
        "250-400 mg elemental magnesium per day; 350 mg/day is the upper level for supplements "
        "without supervision."
    ),
    RecommendationCode.SWITCH_TO_ORGANIC: (
        "Inorganic magnesium salts such as oxide are poorly absorbed; organic salts such as citrate have "
        "better bioavailability [FIO21]."
    ),
    RecommendationCode.STOP_SUPPLEMENT: (
        "Serum magnesium is high while oral magnesium (a supplement, laxative or antacid) is taken: stop it."
    ),
    RecommendationCode.EVALUATE_HYPERMAGNESEMIA: (
        "Serum magnesium is high without oral magnesium: evaluate the cause (renal function, magnesium given "
        "parenterally) and recheck serum magnesium."
    ),
    RecommendationCode.PERSISTENT_DEFICIENCY: (
        "Magnesium stays low on an oral supplement: check adherence and dose, and review the causes (the drugs "
        "of the depletion score, gastrointestinal loss); no second supplement is drafted."
    ),
    RecommendationCode.ORDER_DEPLETES_MG: (
        "This order lowers magnesium (diuretic, proton pump inhibitor or magnesium-wasting drug)."
    ),
    RecommendationCode.ORDER_SUPPLEMENT_CONTRAINDICATED: (
        "Oral magnesium (a supplement, laxative or antacid) is contraindicated with eGFR below 30 or a high serum "
        "magnesium."
    ),
    RecommendationCode.ORDER_PARENTERAL_MG_MONITOR: (
        "Parenteral magnesium with reduced renal function or a high serum magnesium: reduce the dose in renal "
        "impairment, and monitor serum magnesium, reflexes and respiration."
    ),
    RecommendationCode.ORDER_SPACING: (
        "Magnesium binds the interacting drug in the gut and lowers its absorption: space the doses."
    ),
}

COMPONENT_TEXT = {
    MdsComponentName.DIURETIC: "Diuretic",
    MdsComponentName.PROTON_PUMP_INHIBITOR: "Proton pump inhibitor",
    MdsComponentName.EGFR: "eGFR",
    MdsComponentName.HEAVY_DRINKING: "Heavy drinking",
}
EGFR_SOURCE_TEXT = {
    EgfrSource.CKD_EPI_2021: "computed with CKD-EPI 2021 from the newest creatinine",
    EgfrSource.OBSERVATION: "as reported by the laboratory",
    EgfrSource.NONE: "no usable creatinine or eGFR result",
}
# Why the creatinine on file gave no eGFR (check-renal-function's summary, section 7.2).
EGFR_GAP_TEXT = {
    EgfrGap.SEX_UNKNOWN: "sex not recorded as male or female",
    EgfrGap.BIRTH_DATE_UNKNOWN: "birth date missing",
    EgfrGap.CREATININE_UNUSABLE: "newest creatinine unreadable",
    EgfrGap.EGFR_UNUSABLE: "newest eGFR unreadable",
    EgfrGap.UNDER_ADULT_AGE: "creatinine drawn before age 18",
}
PRODUCT_KIND_TEXT = {
    MagnesiumProductKind.ORAL_SUPPLEMENT: "oral supplement",
    MagnesiumProductKind.LAXATIVE_ANTACID: "laxative or antacid",
    MagnesiumProductKind.PARENTERAL: "parenteral",
}
CAUSE_CLASS_TEXT = {
    DrugClass.LOOP_DIURETIC: "a loop diuretic",
    DrugClass.THIAZIDE_DIURETIC: "a thiazide diuretic",
}


# --- summaries -----------------------------------------------------------------------------------------------


def magnesium_value(result: MagnesiumResult) -> str:
    """A magnesium value in mmol/L, then as the laboratory reported it when that was another unit (section 2):
    "0.78 mmol/L (1.9 mg/dL)"."""
    text = f"{result.comparator or ''}{result.value_mmol_l:.2f} mmol/L"
    unit = result.reported_unit
    if result.reported_value and unit and unit.strip().lower() != "mmol/l":
        text += f" ({plain_text(result.reported_value, 20)} {plain_text(unit, 20)})"
    return text


def _mg_figure(assessment: Assessment) -> str:
    serum, ionized = assessment.serum_mg, assessment.ionized_mg
    # The figure that drives the deficiency rules (section 7.1): an abnormal serum first, then ionized.
    abnormal = {MagnesiumCategory.SEVERE_LOW, MagnesiumCategory.LOW, *HIGH_CATEGORIES}
    if serum.value_mmol_l is not None and serum.category in abnormal:
        return f"serum Mg {magnesium_value(serum)} ({serum.category})"
    if ionized.value_mmol_l is not None and ionized.category != MagnesiumCategory.UNKNOWN:
        return f"ionized Mg {magnesium_value(ionized)} ({ionized.category})"
    if serum.value_mmol_l is not None:
        return f"serum Mg {magnesium_value(serum)} ({serum.category})"
    if ionized.value_mmol_l is not None:
        return f"ionized Mg {magnesium_value(ionized)} ({ionized.category})"
    return "no recent magnesium result"


def card_summary(rec: Recommendation, assessment: Assessment) -> str:
    """The card's summary (< 140 characters): the key figure and the action."""
    a = assessment
    mds = mds_figure(a)
    mg = _mg_figure(a)
    drug = plain_text(rec.figure("drug") or "", DRUG_NAME_MAX_CHARS)
    egfr = egfr_figure(a.egfr.value, a.egfr.comparator)
    dose = _dose(rec)
    code = rec.code
    if code == RecommendationCode.URGENT_EVALUATION:
        text = f"Severe hypomagnesemia, {mg}: assess symptoms and ECG now"
    elif code == RecommendationCode.TEST_SERUM_MG:
        if a.mds.min >= 2:
            text = f"MDS {mds}, no recent serum magnesium result: check serum magnesium"
        else:
            others = plain_text(", ".join(a.other_risk_drugs), DRUG_NAME_MAX_CHARS)
            text = f"Magnesium-wasting drug ({others}), no recent serum magnesium: check serum magnesium"
    elif code == RecommendationCode.TEST_IONIZED_MG and dose is not None:
        text = f"{mg}: check ionized magnesium, or start an organic magnesium salt {dose} mg/day"
    elif code == RecommendationCode.TEST_IONIZED_MG:
        text = f"MDS {mds}, {mg}: check ionized magnesium"
    elif code == RecommendationCode.CHECK_RENAL_FUNCTION:
        gap = a.egfr.gap
        if Qualifier.CREATININE_ORDERED in rec.qualifiers:
            text = f"Magnesium deficiency {a.deficiency}, renal function unknown: creatinine ordered, await it"
        elif not rec.suggestions and gap is not None:
            reason = EGFR_GAP_TEXT.get(gap, str(gap))
            text = f"Magnesium deficiency {a.deficiency}, eGFR not computable from the creatinine ({reason})"
        else:
            text = f"Magnesium deficiency {a.deficiency}, renal function unknown: check creatinine first"
    elif code == RecommendationCode.SUPPLEMENT_RENAL_CAUTION:
        text = f"Magnesium deficiency {a.deficiency}, eGFR {egfr}: oral magnesium only under specialist supervision"
    elif code == RecommendationCode.SUPPLEMENT_ORGANIC:
        text = f"Magnesium deficiency {a.deficiency}, {mg}: consider organic magnesium {dose} mg/day"
    elif code == RecommendationCode.SWITCH_TO_ORGANIC and rec.concerned_draft is not None:
        text = f"Order {drug}: magnesium citrate is better absorbed; consider switching"
    elif code == RecommendationCode.SWITCH_TO_ORGANIC:
        text = f"Takes {drug}, deficiency {a.deficiency}: consider switching to magnesium citrate"
    elif code == RecommendationCode.STOP_SUPPLEMENT:
        text = f"{mg} while taking {drug}: stop oral magnesium"
    elif (
        code == RecommendationCode.EVALUATE_HYPERMAGNESEMIA and Qualifier.PARENTERAL_MAGNESIUM_CURRENT in rec.qualifiers
    ):
        text = f"{mg} on parenteral magnesium, eGFR {egfr}: monitor per protocol"
    elif code == RecommendationCode.EVALUATE_HYPERMAGNESEMIA:
        text = f"Hypermagnesemia, {mg}, eGFR {egfr}: evaluate the cause and recheck"
    elif code == RecommendationCode.PERSISTENT_DEFICIENCY:
        text = f"{mg} despite {drug}: check adherence, dose and causes"
    elif code == RecommendationCode.ORDER_DEPLETES_MG:
        tail = ": check serum magnesium" if a.serum_mg.category == MagnesiumCategory.UNKNOWN else ""
        text = f"Order {drug} lowers magnesium; MDS {mds}, {mg}{tail}"
    elif code == RecommendationCode.ORDER_SUPPLEMENT_CONTRAINDICATED:
        reason = f"eGFR {egfr}" if a.egfr.below_30 is not False and a.egfr.value is not None else mg
        text = f"Order {drug}: oral magnesium contraindicated ({reason})"
    elif code == RecommendationCode.ORDER_PARENTERAL_MG_MONITOR:
        reason = f"eGFR {egfr}" if a.egfr.below_30 is not False and a.egfr.value is not None else mg
        text = f"Order {drug} ({reason}): reduce the dose, monitor Mg, reflexes, respiration"
    elif code == RecommendationCode.ORDER_SPACING:
        text = f"Order {drug}: space magnesium and interacting drug doses"
    else:
        text = f"Magnesium: {code}"
    return text if len(text) <= SUMMARY_MAX_CHARS else text[: SUMMARY_MAX_CHARS - 3].rstrip() + "..."


def _dose(rec: Recommendation) -> int | None:
    for suggestion in rec.suggestions:
        for action in suggestion.actions:
            if isinstance(action, CreateMedicationRequest):
                return action.elemental_mg_per_day
    return None


# --- detail ------------------------------------------------------------------------------------------------


def _evidence_text(e: Evidence) -> str:
    parts = [f"{escape_markdown(e.resource_type)}/{escape_markdown(e.resource_id)}"]
    if e.code:
        parts.append(f"code {escape_markdown(e.code)}")
    if e.display:
        parts.append(escape_markdown(e.display))
    if e.value:
        parts.append(f"value {escape_markdown(e.value)}" + (f" {escape_markdown(e.unit)}" if e.unit else ""))
    if e.date is not None:
        parts.append(e.date.date().isoformat())
    if e.note:
        parts.append(f"({escape_markdown(e.note)})")
    return ", ".join(parts)


def pediatric_text(age_years: int | None) -> str:
    """Section 0's words for a child: the adult rules do not apply; the age's upper intake [IOM97]."""
    limit = pediatric_upper_intake(age_years)
    if age_years is None or age_years < 0:
        age = "for this child"
    else:
        age = "under 1 year" if age_years < 1 else f"at {age_years} years"
    if limit is None:
        return (
            f"The patient is a child ({age}): the adult rules (score, eGFR equation, doses) do not apply. Below 1 "
            "year no upper intake of supplemental magnesium is established: magnesium only under specialist care "
            "[IOM97]."
        )
    return (
        f"The patient is a child ({age}): the adult rules (score, eGFR equation, doses) do not apply. The tolerable "
        f"upper intake of supplemental magnesium {age} is {limit} mg/day [IOM97]."
    )


def _qualifier_text(qualifier: Qualifier, a: Assessment) -> str:
    if qualifier == Qualifier.PEDIATRIC:
        return pediatric_text(a.age_years)
    if qualifier == Qualifier.EGFR_BELOW_30:
        return f"eGFR {egfr_figure(a.egfr.value, a.egfr.comparator)}: oral magnesium only under specialist supervision."
    return QUALIFIER_TEXT.get(qualifier, "")


def _medication_name(drug: MedicationFact) -> str:
    return drug.display or ", ".join(drug.ingredients) or f"{drug.resource_type}/{drug.resource_id}"


def _cause_text(cause: CauseNote) -> str:
    """One cause note of section 7.2: the PPI [FDA11], or the diuretic by ingredient (and product when it differs)."""
    product = _medication_name(cause.drug)
    named = escape_markdown(cause.ingredient)
    if product.strip().lower() != cause.ingredient.strip().lower():
        named += f" ({escape_markdown(product)})"
    if cause.drug_class == DrugClass.PROTON_PUMP_INHIBITOR:
        return (
            f"{named}: long-term proton pump inhibitor use can cause hypomagnesemia that supplements alone may not "
            "correct; review whether it is still needed [FDA11]."
        )
    return f"{named}, {CAUSE_CLASS_TEXT.get(cause.drug_class, 'a diuretic')}: review it as a cause of magnesium loss."


def femg_line(a: Assessment) -> str | None:
    """Section 7.2's FEMg line on every card of a likely deficiency, when FEMg is not not-applicable [TUC20]."""
    femg = a.femg
    if a.deficiency != Deficiency.LIKELY or femg.percent is None:
        return None
    if femg.interpretation == FemgInterpretation.NOT_APPLICABLE:
        return None
    return f"FEMg {femg.percent} % ({femg.interpretation}) [TUC20]"


def egfr_text(a: Assessment) -> str:
    """The eGFR as the cards show it: unrounded as reported, and "computed 22, laboratory reported 81" when the
    computed value counts and the laboratory reported one the same day (section 3)."""
    egfr = a.egfr
    if egfr.value is None:
        return "unknown"
    value = f"{egfr_figure(egfr.value, egfr.comparator)} mL/min/1.73 m2"
    if egfr.source == EgfrSource.CKD_EPI_2021 and egfr.reported_same_day is not None:
        reported = egfr_figure(egfr.reported_same_day, egfr.reported_same_day_comparator)
        return f"computed {egfr_figure(egfr.value, None)}, laboratory reported {reported} (mL/min/1.73 m2)"
    return value


def card_detail(rec: Recommendation, a: Assessment, tags: tuple[str, ...]) -> str:
    """The card's markdown detail: why, the evidence that decided it, what was unknown, the sources."""
    lines: list[str] = [ACTION_TEXT.get(rec.code, "")]
    if rec.concerned_draft is not None:
        draft = rec.concerned_draft
        lines.append(f"\n**Order concerned:** {escape_markdown(rec.figure('drug') or draft.resource_id)}")
    lines += [q for q in (_qualifier_text(x, a) for x in rec.qualifiers) if q]
    dose = _dose(rec)
    if rec.code == RecommendationCode.TEST_IONIZED_MG and dose is not None:
        # Section 7.2: a possible deficiency's one card offers the organic salts as alternatives to the test.
        lines.append(
            f"Alternatively start an organic magnesium salt (citrate, glycinate or lactate), {dose} mg elemental "
            "magnesium a day in divided doses: better absorbed than oxide [FIO21]; trial doses 250-400 mg/day "
            "[PIC20]. Accept at most one suggestion."
        )
    if rec.code == RecommendationCode.CHECK_RENAL_FUNCTION and a.egfr.gap is not None:
        reason = EGFR_GAP_TEXT.get(a.egfr.gap, str(a.egfr.gap))
        if rec.suggestions:
            lines.append(f"No eGFR from the results on file: {reason}; a new creatinine gives one.")
        else:
            lines.append(f"The creatinine on file gives no eGFR: {reason}. Complete the record to compute it.")
    if rec.products:
        lines.append("\n**Current magnesium products**")
        for drug in rec.products:
            kind = product_kind(drug)
            shown = f" ({PRODUCT_KIND_TEXT[kind]})" if kind is not None else ""
            lines.append(f"- {escape_markdown(_medication_name(drug))}{shown}")
    femg = femg_line(a)
    if femg is not None:
        lines.append(f"\n{femg}")
    if rec.causes:
        lines.append("\n**Causes to review**")
        lines += [f"- {_cause_text(c)}" for c in rec.causes]
    if rec.spacing:
        lines.append("\n**Spacing**")
        for advice in rec.spacing:
            lines.append(f"- {escape_markdown(_medication_name(advice.drug))}: {spacing_text(advice)}")

    lines.append(f"\n**Magnesium Depletion Score** [FAN21]: {mds_figure(a)} ({a.mds.group})")
    for c in a.mds.components:
        pts = f"{c.points[0]}" if c.points[0] == c.points[1] else f"{c.points[0]}-{c.points[1]}"
        ev = "; ".join(_evidence_text(e) for e in c.evidence)
        lines.append(f"- {COMPONENT_TEXT.get(c.name, c.name)}: {pts} ({c.basis})" + (f": {ev}" if ev else ""))

    egfr = a.egfr
    lines.append(f"\n**eGFR**: {egfr_text(a)}, {EGFR_SOURCE_TEXT.get(egfr.source, egfr.source)}")
    if egfr.age_years is not None:
        lines.append(f"- age {egfr.age_years} years at the creatinine")
    lines += [f"- {_evidence_text(e)}" for e in egfr.evidence]

    lines.append("\n**Magnesium results**")
    lines.append(f"- Serum: {_mg_line(a.serum_mg)}")
    if a.serum_mg.evidence is not None:
        lines.append(f"  - {_evidence_text(a.serum_mg.evidence)}")
    ion = a.ionized_mg
    ion_ref = f"reference {ion.reference_low}-{ion.reference_high} mmol/L ({ion.reference_source})"
    lines.append(f"- Ionized: {_mg_line(ion)}, {ion_ref}")
    if ion.evidence is not None:
        lines.append(f"  - {_evidence_text(ion.evidence)}")
    if a.femg.percent is not None and femg is None:
        lines.append(f"- FEMg: {a.femg.percent} % ({a.femg.interpretation})")
    lines.append(f"- Deficiency assessment: {a.deficiency}")
    if a.other_risk_drugs:
        lines.append(f"- Other magnesium-wasting drugs: {escape_markdown(', '.join(a.other_risk_drugs))}")

    unknowns = [f"- {escape_markdown(n)}" for n in a.notes]
    if unknowns:
        lines.append("\n**Not known or not used**")
        lines += unknowns
    if tags:
        lines.append("\n**Sources**")
        lines += [f"- [{t}] {SOURCES[t][0]}: {SOURCES[t][1]}" for t in tags]
    return "\n".join(line for line in lines if line)


def _mg_line(result: MagnesiumResult) -> str:
    if result.value_mmol_l is None:
        return result.category
    return f"{escape_markdown(magnesium_value(result), 80)} ({result.category})"

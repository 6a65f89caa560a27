"""The words of the cards (clinical-rules.md sections 7 and 8): summaries, details, sources, texts per code.

The engine decides; this module only words the decision. EHR text goes through ``cds_service.cards.markdown``.
"""

from __future__ import annotations

from cds_service.cards.markdown import escape_markdown, plain_text
from cds_service.engine.assessment import Assessment
from cds_service.engine.facts import Evidence
from cds_service.engine.recommend.figures import mds_figure
from cds_service.engine.recommend.types import CreateMedicationRequest, Recommendation
from cds_service.engine.vocabulary import (
    DrugClass,
    EgfrSource,
    LabConcept,
    MagnesiumCategory,
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
}
CODE_SOURCES: dict[RecommendationCode, tuple[str, ...]] = {
    RecommendationCode.URGENT_EVALUATION: ("PAP26",),
    RecommendationCode.TEST_SERUM_MG: ("FAN21", "PAP26"),
    RecommendationCode.TEST_IONIZED_MG: ("COS16", "OPA22", "FAN21"),
    RecommendationCode.CHECK_RENAL_FUNCTION: ("INK21", "PIC20"),
    RecommendationCode.SUPPLEMENT_RENAL_CAUTION: ("INK21", "PAP26"),
    RecommendationCode.SUPPLEMENT_ORGANIC: ("PIC20", "FIO21", "COS16"),
    RecommendationCode.SWITCH_TO_ORGANIC: ("FIO21",),
    RecommendationCode.STOP_SUPPLEMENT: ("PAP26",),
    RecommendationCode.ORDER_DEPLETES_MG: ("FAN21", "PAP26"),
    RecommendationCode.ORDER_SUPPLEMENT_CONTRAINDICATED: ("INK21", "PAP26"),
    RecommendationCode.ORDER_SPACING: ("PAP26",),
}

SPACING_TEXT = {
    DrugClass.INTERACTS_TETRACYCLINE: "take the tetracycline and magnesium 2-3 hours apart",
    DrugClass.INTERACTS_FLUOROQUINOLONE: "take the fluoroquinolone 2 hours before or 6 hours after magnesium",
    DrugClass.INTERACTS_BISPHOSPHONATE: "take the bisphosphonate and magnesium 4 hours apart",
    DrugClass.INTERACTS_LEVOTHYROXINE: "take levothyroxine and magnesium 4 hours apart",
    DrugClass.INTERACTS_INTEGRASE_INHIBITOR: "take the integrase inhibitor 2 hours before or 6 hours after magnesium",
    DrugClass.INTERACTS_ELTROMBOPAG: "take eltrombopag 2 hours before or 4 hours after magnesium",
    DrugClass.INTERACTS_GABAPENTIN: "take gabapentin 2 hours after magnesium",
}

QUALIFIER_TEXT = {
    Qualifier.ORDERS_UNKNOWN: "Existing orders could not be checked; this test may already be ordered.",
    Qualifier.MEDICATIONS_UNKNOWN: "The medication list could not be retrieved; check for a current magnesium salt.",
    Qualifier.EGFR_BELOW_30_NOT_EXCLUDED: "The reported eGFR does not exclude a value below 30 mL/min/1.73 m2.",
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
        "Renal function is unknown; check creatinine (eGFR) before starting oral magnesium."
    ),
    RecommendationCode.SUPPLEMENT_RENAL_CAUTION: (
        "Oral magnesium is contraindicated below eGFR 30 mL/min/1.73 m2 without specialist supervision."
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
        "Serum magnesium is high while a magnesium supplement is taken: stop the supplement."
    ),
    RecommendationCode.ORDER_DEPLETES_MG: (
        "This order lowers magnesium (diuretic, proton pump inhibitor or magnesium-wasting drug)."
    ),
    RecommendationCode.ORDER_SUPPLEMENT_CONTRAINDICATED: (
        "A magnesium supplement is contraindicated with eGFR below 30 or a high serum magnesium."
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


# --- summaries -----------------------------------------------------------------------------------------------


def _mg_figure(assessment: Assessment) -> str:
    serum, ionized = assessment.serum_mg, assessment.ionized_mg
    # The figure that drives the deficiency rules (section 6): an abnormal serum first, then ionized.
    if serum.value_mmol_l is not None and serum.category in (
        MagnesiumCategory.SEVERE_LOW,
        MagnesiumCategory.LOW,
        MagnesiumCategory.HIGH,
    ):
        return f"serum Mg {serum.comparator or ''}{serum.value_mmol_l:.2f} mmol/L ({serum.category})"
    if ionized.value_mmol_l is not None and ionized.category != MagnesiumCategory.UNKNOWN:
        return f"ionized Mg {ionized.comparator or ''}{ionized.value_mmol_l:.2f} mmol/L ({ionized.category})"
    if serum.value_mmol_l is not None:
        return f"serum Mg {serum.comparator or ''}{serum.value_mmol_l:.2f} mmol/L ({serum.category})"
    if ionized.value_mmol_l is not None:
        return f"ionized Mg {ionized.comparator or ''}{ionized.value_mmol_l:.2f} mmol/L ({ionized.category})"
    return "no recent magnesium result"


def card_summary(rec: Recommendation, assessment: Assessment) -> str:
    """The card's summary (< 140 characters): the key figure and the action."""
    a = assessment
    mds = mds_figure(a)
    mg = _mg_figure(a)
    drug = plain_text(rec.figure("drug") or "", DRUG_NAME_MAX_CHARS)
    egfr = f"{a.egfr.comparator or ''}{a.egfr.value}" if a.egfr.value is not None else "unknown"
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
    elif code == RecommendationCode.TEST_IONIZED_MG:
        text = f"MDS {mds}, {mg}: check ionized magnesium"
    elif code == RecommendationCode.CHECK_RENAL_FUNCTION:
        text = f"Magnesium deficiency {a.deficiency}, renal function unknown: check creatinine first"
    elif code == RecommendationCode.SUPPLEMENT_RENAL_CAUTION:
        text = f"Magnesium deficiency {a.deficiency}, eGFR {egfr}: oral magnesium contraindicated below 30"
    elif code == RecommendationCode.SUPPLEMENT_ORGANIC:
        text = f"Magnesium deficiency {a.deficiency}, {mg}: consider organic magnesium {dose} mg/day"
    elif code == RecommendationCode.SWITCH_TO_ORGANIC and rec.concerned_draft is not None:
        text = f"Order {drug}: magnesium citrate is better absorbed; consider switching"
    elif code == RecommendationCode.SWITCH_TO_ORGANIC:
        text = f"Takes {drug}, deficiency {a.deficiency}: consider switching to magnesium citrate"
    elif code == RecommendationCode.STOP_SUPPLEMENT:
        text = f"{mg} while taking {drug}: stop the magnesium supplement"
    elif code == RecommendationCode.ORDER_DEPLETES_MG:
        tail = ": check serum magnesium" if a.serum_mg.category == MagnesiumCategory.UNKNOWN else ""
        text = f"Order {drug} lowers magnesium; MDS {mds}, {mg}{tail}"
    elif code == RecommendationCode.ORDER_SUPPLEMENT_CONTRAINDICATED:
        reason = f"eGFR {egfr}" if a.egfr.below_30 is not False and a.egfr.value is not None else mg
        text = f"Order {drug}: magnesium supplement contraindicated ({reason})"
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


def card_detail(rec: Recommendation, a: Assessment, tags: tuple[str, ...]) -> str:
    """The card's markdown detail: why, the evidence that decided it, what was unknown, the sources."""
    lines: list[str] = [ACTION_TEXT.get(rec.code, "")]
    if rec.concerned_draft is not None:
        draft = rec.concerned_draft
        lines.append(f"\n**Order concerned:** {escape_markdown(rec.figure('drug') or draft.resource_id)}")
    lines += [q for q in (QUALIFIER_TEXT.get(x, "") for x in rec.qualifiers) if q]
    if rec.spacing:
        lines.append("\n**Spacing**")
        for advice in rec.spacing:
            name = advice.drug.display or ", ".join(advice.drug.ingredients)
            lines.append(f"- {escape_markdown(name)}: {SPACING_TEXT.get(advice.interaction_class, '')}")

    lines.append(f"\n**Magnesium Depletion Score** [FAN21]: {mds_figure(a)} ({a.mds.group})")
    for c in a.mds.components:
        pts = f"{c.points[0]}" if c.points[0] == c.points[1] else f"{c.points[0]}-{c.points[1]}"
        ev = "; ".join(_evidence_text(e) for e in c.evidence)
        lines.append(f"- {COMPONENT_TEXT.get(c.name, c.name)}: {pts} ({c.basis})" + (f": {ev}" if ev else ""))

    egfr = a.egfr
    egfr_value = f"{egfr.comparator or ''}{egfr.value} mL/min/1.73 m2" if egfr.value is not None else "unknown"
    lines.append(f"\n**eGFR**: {egfr_value}, {EGFR_SOURCE_TEXT.get(egfr.source, egfr.source)}")
    if egfr.age_years is not None:
        lines.append(f"- age {egfr.age_years} years at the creatinine")
    lines += [f"- {_evidence_text(e)}" for e in egfr.evidence]

    lines.append("\n**Magnesium results**")
    lines.append(f"- Serum: {_mg_line(a.serum_mg.value_mmol_l, a.serum_mg.comparator, a.serum_mg.category)}")
    if a.serum_mg.evidence is not None:
        lines.append(f"  - {_evidence_text(a.serum_mg.evidence)}")
    ion = a.ionized_mg
    ion_ref = f"reference {ion.reference_low}-{ion.reference_high} mmol/L ({ion.reference_source})"
    lines.append(f"- Ionized: {_mg_line(ion.value_mmol_l, ion.comparator, ion.category)}, {ion_ref}")
    if ion.evidence is not None:
        lines.append(f"  - {_evidence_text(ion.evidence)}")
    if a.femg.percent is not None:
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


def _mg_line(value: float | None, comparator: str | None, category: MagnesiumCategory) -> str:
    if value is None:
        return category
    return f"{comparator or ''}{value:.2f} mmol/L ({category})"

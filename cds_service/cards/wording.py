"""The words of the cards (clinical-rules.md sections 7 and 8): summaries, details, sources, texts per code.

The engine decides; this module only words the decision. EHR text goes through ``cds_service.cards.markdown``.
"""

from __future__ import annotations

import re

from cds_service.cards.values import (
    egfr_gap_text,
    egfr_summary,
    egfr_value_text,
    magnesium_figure,
    summary_text,
)
from cds_service.engine.assessment import Assessment
from cds_service.engine.recommend.figures import mds_figure
from cds_service.engine.recommend.types import CreateMedicationRequest, Recommendation, SpacingAdvice
from cds_service.engine.scope import pediatric_upper_intake
from cds_service.engine.settings import ClinicalSettings
from cds_service.engine.vocabulary import (
    HIGH_CATEGORIES,
    DrugClass,
    LabConcept,
    MagnesiumCategory,
    Qualifier,
    RecommendationCode,
)

SUMMARY_MAX_CHARS = 139  # CDS Hooks: summary "<140 characters"

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
# UpToDate topic, FDA11 a Drug Safety Communication, TUC20 a JAMA clinical-challenge page, GRE96 has none found).
# LU00's DOI (10.2165/00003088-200038040-00002) is the one PubMed lists for PMID 10803454; IOM97's (10.17226/5776)
# is the one the National Academies Press prints in the report's suggested citation.
UNLINKED_SOURCES = frozenset({"YU16", "FDA11", "TUC20", "GRE96"})
_TAG = re.compile(r"\[([A-Z]{2,5}\d{2})\]")


def cited_tags(text: str) -> tuple[str, ...]:
    """The source tags ("FAN21") a text cites, in the order they first appear."""
    return tuple(dict.fromkeys(_TAG.findall(text)))


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

# One sentence per card: why it is shown and what to do, with the sources it rests on (section 7.4).
WHY_TEXT = {
    RecommendationCode.URGENT_EVALUATION: (
        "Serum magnesium below 0.50 mmol/L is severe hypomagnesemia [PAP26]: assess symptoms and the ECG, check "
        "potassium and calcium, and replace magnesium per local protocol (IV may be needed)."
    ),
    RecommendationCode.TEST_SERUM_MG: (
        "The magnesium depletion risk [FAN21] or a magnesium-wasting drug [PAP26] calls for a serum magnesium, and "
        "none usable is on file."
    ),
    RecommendationCode.TEST_IONIZED_MG: (
        "Serum magnesium may miss a chronic latent deficiency below 0.85 mmol/L [COS16]; ionized magnesium is the "
        "better marker [OPA22]."
    ),
    RecommendationCode.CHECK_RENAL_FUNCTION: (
        "Magnesium deficiency is likely but renal function is unknown: an eGFR [INK21] is needed before oral "
        "magnesium is started."
    ),
    RecommendationCode.SUPPLEMENT_RENAL_CAUTION: (
        "Magnesium deficiency is likely, but below eGFR 30 mL/min/1.73 m2 oral magnesium accumulates: only under "
        "specialist supervision, at a reduced dose with serum monitoring [PAP26]."
    ),
    RecommendationCode.SUPPLEMENT_ORGANIC: (
        "Magnesium deficiency is likely and no magnesium is taken: consider an organic salt, better absorbed than "
        "oxide [FIO21]; trial doses 250-400 mg elemental magnesium a day [PIC20], 350 mg/day the upper level "
        "without supervision [IOM97]."
    ),
    RecommendationCode.SWITCH_TO_ORGANIC: (
        "Inorganic magnesium salts such as oxide are poorly absorbed; an organic salt such as citrate has better "
        "bioavailability [FIO21]."
    ),
    RecommendationCode.STOP_SUPPLEMENT: (
        "Serum magnesium is high while oral magnesium (a supplement, laxative or antacid) is taken: stop it and "
        "recheck [PAP26]."
    ),
    RecommendationCode.EVALUATE_HYPERMAGNESEMIA: (
        "Serum magnesium is high without oral magnesium: evaluate the cause (renal function, parenteral magnesium) "
        "and recheck [PAP26]."
    ),
    RecommendationCode.PERSISTENT_DEFICIENCY: (
        "Magnesium stays low on an oral supplement: check adherence and dose, and review the causes (the drugs of "
        "the depletion score [FAN21], gastrointestinal loss); no second supplement is drafted [PAP26]."
    ),
    RecommendationCode.ORDER_DEPLETES_MG: (
        "This drug lowers magnesium (a diuretic, proton pump inhibitor or magnesium-wasting drug) [FAN21] [PAP26]."
    ),
    RecommendationCode.ORDER_SUPPLEMENT_CONTRAINDICATED: (
        "Oral magnesium (a supplement, laxative or antacid) accumulates with eGFR below 30 or a high serum "
        "magnesium: remove the order [PAP26]."
    ),
    RecommendationCode.ORDER_PARENTERAL_MG_MONITOR: (
        "Parenteral magnesium with reduced renal function or a high serum magnesium: reduce the dose in renal "
        "impairment, and monitor serum magnesium, reflexes and respiration [LU00]."
    ),
    RecommendationCode.ORDER_SPACING: (
        "Oral magnesium binds the interacting drug in the gut and lowers its absorption: space the doses."
    ),
}
# An order card's switch: the draft is replaced, not a current medication.
ORDER_SWITCH_WHY = (
    "Inorganic magnesium salts such as oxide are poorly absorbed: replace the order with magnesium citrate, which "
    "has better bioavailability [FIO21]."
)


def why_text(rec: Recommendation) -> str:
    """The one sentence that says why the card is shown (section 7.4)."""
    if rec.code == RecommendationCode.SWITCH_TO_ORGANIC and rec.concerned_draft is not None:
        return ORDER_SWITCH_WHY
    return WHY_TEXT[rec.code]


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


def qualifier_text(qualifier: Qualifier, a: Assessment) -> str:
    """The note a qualifier adds to a card."""
    if qualifier == Qualifier.PEDIATRIC:
        return pediatric_text(a.age_years)
    if qualifier == Qualifier.EGFR_BELOW_30:
        return f"eGFR {egfr_value_text(a.egfr)}: oral magnesium only under specialist supervision."
    return QUALIFIER_TEXT.get(qualifier, "")


# --- summaries -----------------------------------------------------------------------------------------------


def mg_figure(a: Assessment) -> str:
    """The magnesium figure of a summary: the result that drives the deficiency rules (section 7.1), an abnormal
    serum first, then ionized; an unreadable result is named as such, never as "no recent result"."""
    serum, ionized = a.serum_mg, a.ionized_mg
    abnormal = {MagnesiumCategory.SEVERE_LOW, MagnesiumCategory.LOW, *HIGH_CATEGORIES}
    serum_text = magnesium_figure("serum Mg", serum, summary_text)
    ionized_text = magnesium_figure("ionized Mg", ionized, summary_text)
    if serum.value_mmol_l is not None and serum.category in abnormal:
        return serum_text or ""
    if ionized.value_mmol_l is not None and ionized.category != MagnesiumCategory.UNKNOWN:
        return ionized_text or ""
    return serum_text or ionized_text or "no recent magnesium result"


def serum_figure(a: Assessment, settings: ClinicalSettings) -> str:
    """The serum figure of test-serum-mg: why no serum value counts (none, too old, unreadable)."""
    unreadable = magnesium_figure("serum Mg", a.serum_mg, summary_text)
    if unreadable is not None:
        return unreadable
    return f"no serum magnesium in {settings.magnesium_window_days} days"


def card_summary(rec: Recommendation, a: Assessment, settings: ClinicalSettings) -> str:
    """The card's summary (< 140 characters): the key figure with its unit, "preliminary" when the deciding result
    is, and the action (section 7.4)."""
    mds = f"MDS {mds_figure(a)}"
    mg = mg_figure(a)
    drug = summary_text(rec.figure("drug") or "")
    egfr = egfr_summary(a.egfr)
    dose = _dose(rec)
    code = rec.code
    if code == RecommendationCode.URGENT_EVALUATION:
        text = f"Severe hypomagnesemia, {mg}: assess symptoms and ECG now"
    elif code == RecommendationCode.TEST_SERUM_MG:
        if a.mds.min >= 2:
            text = f"{mds}, {serum_figure(a, settings)}: check serum magnesium"
        else:
            others = summary_text(", ".join(a.other_risk_drugs))
            text = f"Magnesium-wasting drug ({others}), {serum_figure(a, settings)}: check serum magnesium"
    elif code == RecommendationCode.TEST_IONIZED_MG and dose is not None:
        text = f"{mg}: check ionized magnesium, or start an organic magnesium salt {dose} mg/day"
    elif code == RecommendationCode.TEST_IONIZED_MG:
        text = f"{mds}, {mg}: check ionized magnesium"
    elif code == RecommendationCode.CHECK_RENAL_FUNCTION:
        gap = egfr_gap_text(a.egfr)
        if Qualifier.CREATININE_ORDERED in rec.qualifiers:
            text = f"{mg}, renal function unknown: creatinine ordered, await it"
        elif not rec.suggestions and gap is not None:
            text = f"{mg}, eGFR not computable from the creatinine ({gap})"
        else:
            text = f"{mg}, renal function unknown: check creatinine first"
    elif code == RecommendationCode.SUPPLEMENT_RENAL_CAUTION:
        text = f"{mg}, {egfr}: oral magnesium only under specialist supervision"
    elif code == RecommendationCode.SUPPLEMENT_ORGANIC:
        text = f"{mg}: consider organic magnesium {dose} mg/day"
    elif code == RecommendationCode.SWITCH_TO_ORGANIC and rec.concerned_draft is not None:
        text = f"Order {drug}: magnesium citrate is better absorbed; consider switching"
    elif code == RecommendationCode.SWITCH_TO_ORGANIC:
        text = f"Takes {drug}, {mg}: consider switching to magnesium citrate"
    elif code == RecommendationCode.STOP_SUPPLEMENT:
        text = f"{mg} while taking {drug}: stop oral magnesium"
    elif (
        code == RecommendationCode.EVALUATE_HYPERMAGNESEMIA and Qualifier.PARENTERAL_MAGNESIUM_CURRENT in rec.qualifiers
    ):
        text = f"{mg} on parenteral magnesium, {egfr}: monitor per protocol"
    elif code == RecommendationCode.EVALUATE_HYPERMAGNESEMIA:
        text = f"Hypermagnesemia, {mg}, {egfr}: evaluate the cause and recheck"
    elif code == RecommendationCode.PERSISTENT_DEFICIENCY:
        text = f"{mg} despite {drug}: check adherence, dose and causes"
    elif code == RecommendationCode.ORDER_DEPLETES_MG:
        tail = ": check serum magnesium" if a.serum_mg.category == MagnesiumCategory.UNKNOWN else ""
        text = f"Order {drug} lowers magnesium; {mds}, {mg}{tail}"
    elif code == RecommendationCode.ORDER_SUPPLEMENT_CONTRAINDICATED:
        reason = egfr if a.egfr.below_30 is not False and a.egfr.value is not None else mg
        text = f"Order {drug}: oral magnesium contraindicated ({reason})"
    elif code == RecommendationCode.ORDER_PARENTERAL_MG_MONITOR:
        reason = egfr if a.egfr.below_30 is not False and a.egfr.value is not None else mg
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

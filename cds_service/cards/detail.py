"""A card's detail (clinical-rules.md section 7.4): one sentence of why, at most six short lines of the evidence that
decided this card, then the notes (what the rule could not rule out, the causes and the spacing of 7.2-7.3).

Only the evidence relevant to the card's code is shown, without resource ids or code-system URLs: a clinician reads
it in seconds. The complete evidence, every component with the resource it came from, stays in the audit record and
in ``mgcds evaluate`` (``assessment_to_dict``). Every EHR text is made inert (``values.detail_text``).
"""

from __future__ import annotations

import re

from cds_service.cards.markdown import escape_markdown
from cds_service.cards.values import (
    EGFR_UNIT,
    date_text,
    detail_text,
    egfr_gap_text,
    egfr_value_text,
    evidence_value,
    magnesium_figure,
    medication_name,
)
from cds_service.cards.wording import qualifier_text, spacing_text, why_text
from cds_service.engine.assessment import Assessment
from cds_service.engine.egfr import EgfrResult
from cds_service.engine.facts import Facts
from cds_service.engine.medications import product_kind, salt_class
from cds_service.engine.recommend.figures import egfr_shown, mds_figure
from cds_service.engine.recommend.types import CauseNote, CreateMedicationRequest, Recommendation
from cds_service.engine.vocabulary import (
    DIURETIC_CLASSES,
    AlcoholMethod,
    Deficiency,
    DrugClass,
    EgfrSource,
    FemgInterpretation,
    IonizedReference,
    MagnesiumCategory,
    MagnesiumProductKind,
    MdsComponentName,
    RecommendationCode,
)

MAX_EVIDENCE_LINES = 6  # section 7.4
MAX_NOTES_SHOWN = 2  # data notes named in a card's "Not known" line; the rest are in the audit record
NOTE_MAX_CHARS = 110
_RESOURCE_ID = re.compile(r"\b([A-Z][A-Za-z]+)/[^\s:]{1,64}:")
_READING_NOTE = re.compile(r"decides|clinical-rules\.md section 5")
DETAIL_MAX_CHARS = 900  # section 7.4: what the tests hold every card of the test data to

COMPONENT_TEXT = {
    MdsComponentName.DIURETIC: "diuretic",
    MdsComponentName.PROTON_PUMP_INHIBITOR: "PPI",
    MdsComponentName.EGFR: "eGFR",
    MdsComponentName.HEAVY_DRINKING: "heavy drinking",
}
ALCOHOL_METHOD_TEXT = {
    AlcoholMethod.DRINKS_PER_DAY: "drinks per day",
    AlcoholMethod.AUDIT_C: "AUDIT-C",
    AlcoholMethod.CONDITION: "alcohol use disorder",
}
PRODUCT_KIND_TEXT = {
    MagnesiumProductKind.ORAL_SUPPLEMENT: "oral supplement",
    MagnesiumProductKind.LAXATIVE_ANTACID: "laxative or antacid",
    MagnesiumProductKind.PARENTERAL: "parenteral",
}
SALT_CLASS_TEXT = {
    DrugClass.MG_SALT_ORGANIC: "organic salt",
    DrugClass.MG_SALT_INORGANIC: "inorganic salt",
    DrugClass.MG_SALT_UNSPECIFIED: "salt not named",
}
CAUSE_CLASS_TEXT = {
    DrugClass.LOOP_DIURETIC: "a loop diuretic",
    DrugClass.THIAZIDE_DIURETIC: "a thiazide diuretic",
}
# What the rules could not know, as a card names it (the assessment's availability notes say it at length).
AVAILABILITY_TEXT = (
    ("medications_known", "the complete medication list"),
    ("labs_known", "laboratory results (not retrieved)"),
    ("conditions_known", "conditions (not retrieved)"),
)


# --- evidence lines -------------------------------------------------------------------------------------------


def serum_line(a: Assessment) -> str:
    """The serum magnesium: value with unit and date, unreadable, or none in the window."""
    shown = magnesium_figure("Serum Mg", a.serum_mg, detail_text, dated=True)
    if shown is not None:
        return shown
    if a.serum_mg.stale is not None:
        return f"Serum Mg: none recent (newest {date_text(a.serum_mg.stale.date)}, too old to use)"
    return "Serum Mg: no result"


def ionized_line(a: Assessment, *, always: bool = False) -> str | None:
    """The ionized magnesium with its reference interval; when absent, a line only if ``always``."""
    ion = a.ionized_mg
    shown = magnesium_figure("Ionized Mg", ion, detail_text, dated=True)
    if shown is not None and ion.value_mmol_l is not None:
        source = "laboratory" if ion.reference_source == IonizedReference.OBSERVATION else "default [GRE96]"
        return f"{shown}; reference {ion.reference_low}-{ion.reference_high} mmol/L ({source})"
    if shown is not None:
        return shown
    return "Ionized Mg: no result" if always else None


def egfr_line(egfr: EgfrResult) -> str:
    """The eGFR that counts and how it was obtained (section 3), with the laboratory's value of the same day."""
    preliminary = ", preliminary" if egfr.preliminary else ""
    if egfr.value is None:
        gap = egfr_gap_text(egfr)
        return f"eGFR unknown: {gap}" if gap else "eGFR unknown: no creatinine or eGFR result"
    value = f"eGFR {egfr_value_text(egfr)} {EGFR_UNIT}"
    evidence = egfr.evidence[0] if egfr.evidence else None
    when = date_text(evidence.date if evidence is not None else None)
    if egfr.source == EgfrSource.CKD_EPI_2021:
        creatinine = evidence_value(evidence) if evidence is not None else "creatinine"
        age = f", age {egfr.age_years}" if egfr.age_years is not None else ""
        how = f"CKD-EPI 2021 [INK21] from creatinine {creatinine} of {when}{age}{preliminary}"
        if egfr.reported_same_day is not None:
            # Section 3: both values when the laboratory reported an eGFR the same day ("computed 22, ...").
            reported = egfr_shown(egfr.reported_same_day, egfr.reported_same_day_comparator)
            return f"eGFR computed {egfr_value_text(egfr)}, laboratory reported {reported} ({EGFR_UNIT}); {how}"
        return f"{value}, computed with {how}"
    return f"{value}, laboratory-reported, {when}{preliminary}"


def mds_line(a: Assessment) -> str:
    """The score with its components' points [FAN21]: "MDS 3/5 (high) [FAN21]: diuretic 1, PPI 0, ..."."""
    parts = []
    for c in a.mds.components:
        points = f"{c.points[0]}" if c.points[0] == c.points[1] else f"{c.points[0]}-{c.points[1]} (unknown)"
        if c.name == MdsComponentName.HEAVY_DRINKING and a.alcohol.method in ALCOHOL_METHOD_TEXT:
            points += f" ({ALCOHOL_METHOD_TEXT[a.alcohol.method]})"
        parts.append(f"{COMPONENT_TEXT.get(c.name, c.name)} {points}")
    return f"MDS {mds_figure(a)} ({a.mds.group}) [FAN21]: " + ", ".join(parts)


def risk_drugs_line(a: Assessment) -> str | None:
    """The current drugs that score or waste magnesium, by name."""
    scoring = DIURETIC_CLASSES | {DrugClass.PROTON_PUMP_INHIBITOR}
    names = [medication_name(m) for m in a.current_medications if m.classes & scoring]
    names += [detail_text(name) for name in a.other_risk_drugs]
    names = list(dict.fromkeys(names))
    if not names:
        return None
    shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
    return f"Drugs: {shown}" + (" [PAP26]" if a.other_risk_drugs else "")


def _data_note(note: str) -> str:
    # "MedicationRequest/mr-1: medicationCodeableConcept is not ..." -> "MedicationRequest: ...": no resource ids in a
    # card (section 7.4); the audit record keeps the note whole.
    return escape_markdown(_RESOURCE_ID.sub(r"\1:", note), NOTE_MAX_CHARS)


def unknown_line(facts: Facts) -> str | None:
    """What could not be retrieved or read (the score line already names its unknown components)."""
    missing = [text for flag, text in AVAILABILITY_TEXT if not getattr(facts, flag)]
    parts = list(missing)
    # The product-kind readings of section 5 ("... the product code decides") say how a product was read, not what
    # is unknown: they stay in the audit record.
    found = [n for n in facts.data_notes if not _READING_NOTE.search(n)]
    parts += [_data_note(n) for n in found[:MAX_NOTES_SHOWN]]
    if len(found) > MAX_NOTES_SHOWN:
        parts.append(f"{len(found) - MAX_NOTES_SHOWN} more in the audit record")
    return "Not known: " + "; ".join(parts) if parts else None


def products_line(rec: Recommendation) -> str | None:
    """The magnesium products a card names (stop-supplement: each current one), with their kind and salt."""
    if not rec.products:
        return None
    shown = []
    for drug in rec.products:
        kind, salt = product_kind(drug), salt_class(drug)
        what = [PRODUCT_KIND_TEXT[kind]] if kind is not None else []
        if salt is not None and kind == MagnesiumProductKind.ORAL_SUPPLEMENT:
            what.append(SALT_CLASS_TEXT[salt])
        shown.append(medication_name(drug) + (f" ({', '.join(what)})" if what else ""))
    return "Current magnesium: " + "; ".join(shown)


def femg_line(a: Assessment) -> str | None:
    """Section 7.2's FEMg line on every card of a likely deficiency, when FEMg is not not-applicable [TUC20]."""
    femg = a.femg
    if a.deficiency != Deficiency.LIKELY or femg.percent is None:
        return None
    if femg.interpretation == FemgInterpretation.NOT_APPLICABLE:
        return None
    return f"FEMg {femg.percent} % ({femg.interpretation}) [TUC20]"


def order_line(rec: Recommendation) -> str | None:
    """The draft order an order-entry card concerns."""
    draft = rec.concerned_draft
    return f"Order: {medication_name(draft)}" if draft is not None else None


def partners_line(rec: Recommendation) -> str | None:
    """The drugs an order's spacing card is about (other than the draft itself)."""
    partners = [medication_name(s.drug) for s in rec.spacing if s.drug is not rec.concerned_draft]
    partners = list(dict.fromkeys(partners))
    return "Interacting: " + ", ".join(partners) if partners else None


def _mg_lines(a: Assessment) -> list[str | None]:
    return [serum_line(a), ionized_line(a)]


def evidence_lines(rec: Recommendation, a: Assessment, facts: Facts) -> list[str]:
    """At most six short lines of the evidence that decided this card (section 7.4)."""
    code = rec.code
    egfr = egfr_line(a.egfr)
    lines: list[str | None]
    if code == RecommendationCode.URGENT_EVALUATION:
        lines = [*_mg_lines(a), egfr, femg_line(a)]
    elif code in (RecommendationCode.EVALUATE_HYPERMAGNESEMIA, RecommendationCode.STOP_SUPPLEMENT):
        lines = [serum_line(a), products_line(rec), egfr]
    elif code == RecommendationCode.TEST_SERUM_MG:
        lines = [serum_line(a), mds_line(a), risk_drugs_line(a), egfr]
    elif code == RecommendationCode.TEST_IONIZED_MG:
        lines = [serum_line(a), ionized_line(a, always=True), egfr]
        if a.serum_mg.category == MagnesiumCategory.NORMAL:
            lines.append(mds_line(a))  # a normal serum gets the test for its score (section 7.2)
    elif code in (
        RecommendationCode.CHECK_RENAL_FUNCTION,
        RecommendationCode.SUPPLEMENT_RENAL_CAUTION,
        RecommendationCode.SUPPLEMENT_ORGANIC,
    ):
        lines = [*_mg_lines(a), egfr, femg_line(a)]
    elif code in (RecommendationCode.SWITCH_TO_ORGANIC, RecommendationCode.PERSISTENT_DEFICIENCY):
        if rec.concerned_draft is not None:
            lines = [order_line(rec), *_mg_lines(a), egfr]
        else:
            lines = [products_line(rec), *_mg_lines(a), egfr, femg_line(a)]
    elif code == RecommendationCode.ORDER_DEPLETES_MG:
        lines = [order_line(rec), serum_line(a), mds_line(a), egfr]
    elif code == RecommendationCode.ORDER_SPACING:
        lines = [order_line(rec), partners_line(rec)]
    else:  # order-supplement-contraindicated, order-parenteral-mg-monitor
        lines = [order_line(rec), egfr, serum_line(a)]
    kept = [line for line in lines if line]
    unknown = unknown_line(facts)
    if unknown is None:
        return kept[:MAX_EVIDENCE_LINES]
    return [*kept[: MAX_EVIDENCE_LINES - 1], unknown]  # what was unknown matters to every card (section 7.4)


# --- notes ----------------------------------------------------------------------------------------------------


def cause_text(cause: CauseNote) -> str:
    """One cause note of section 7.2: the PPI [FDA11], or the diuretic by ingredient (and product when it differs)."""
    product = medication_name(cause.drug)
    named = detail_text(cause.ingredient)
    if product.strip().lower() != named.strip().lower():
        named += f" ({product})"
    if cause.drug_class == DrugClass.PROTON_PUMP_INHIBITOR:
        return (
            f"Cause to review: {named}: long-term proton pump inhibitor use can cause hypomagnesemia that "
            "supplements alone may not correct; review whether it is still needed [FDA11]."
        )
    return f"Cause to review: {named}, {CAUSE_CLASS_TEXT.get(cause.drug_class, 'a diuretic')}."


def _dose(rec: Recommendation) -> int | None:
    for suggestion in rec.suggestions:
        for action in suggestion.actions:
            if isinstance(action, CreateMedicationRequest):
                return action.elemental_mg_per_day
    return None


def notes(rec: Recommendation, a: Assessment, uncoded_salts: tuple[str, ...] = ()) -> list[str]:
    """The notes after the evidence: qualifiers, the alternative salts, the renal gap, causes and spacing."""
    out = [text for text in (qualifier_text(q, a) for q in rec.qualifiers) if text]
    dose = _dose(rec)
    if rec.code == RecommendationCode.TEST_IONIZED_MG and dose is not None:
        # Section 7.2: a possible deficiency's one card offers the organic salts as alternatives to the test.
        out.append(
            f"Alternatively start an organic magnesium salt (citrate, glycinate or lactate), {dose} mg elemental "
            "magnesium a day in divided doses: better absorbed than oxide [FIO21]; trial doses 250-400 mg/day "
            "[PIC20]. Accept at most one suggestion."
        )
    if rec.code == RecommendationCode.CHECK_RENAL_FUNCTION and a.egfr.gap is not None:
        reason = egfr_gap_text(a.egfr)
        if rec.suggestions:
            out.append(f"No eGFR from the results on file ({reason}): a new creatinine gives one.")
        else:
            out.append(f"The creatinine on file gives no eGFR ({reason}): complete the record to compute it.")
    if uncoded_salts:
        names = ", ".join(uncoded_salts)
        out.append(f"No verified RxNorm code for {names}: its draft carries text only and is offered last.")
    out += [cause_text(c) for c in rec.causes]
    spacing: dict[str, None] = {}
    for advice in rec.spacing:
        text = spacing_text(advice)
        if not advice.ingredient or advice.ingredient.lower() not in text:
            text = f"{medication_name(advice.drug)}: {text}"
        spacing.setdefault(text, None)
    if spacing:
        out.append("Spacing: " + "; ".join(spacing) + ".")
    return out


def card_detail(rec: Recommendation, a: Assessment, facts: Facts, uncoded_salts: tuple[str, ...] = ()) -> str:
    """The card's markdown detail: why, the evidence that decided it (a list), then the notes."""
    blocks = [why_text(rec)]
    lines = evidence_lines(rec, a, facts)
    if lines:
        blocks.append("\n".join(f"- {line}" for line in lines))
    blocks += notes(rec, a, uncoded_salts)
    return "\n\n".join(blocks)

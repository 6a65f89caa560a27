"""Recommendations -> CDS Hooks 2.0 cards (clinical-rules.md sections 7 and 8).

The engine decides; this module only words the decision. Every FHIR resource in a suggestion is validated
with ``fhir.resources.R4B`` before it leaves (an invalid one is our bug: ``CardBuildError``). Text that comes
from the EHR (drug names, displays, values, notes) is escaped so it cannot inject markup into the card.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

from fhir.resources.R4B.medicationrequest import MedicationRequest
from fhir.resources.R4B.servicerequest import ServiceRequest

from cds_service.engine.assessment import Assessment
from cds_service.engine.facts import Evidence, Facts
from cds_service.engine.recommend import types as r
from cds_service.engine.vocabulary import (
    DrugClass,
    EgfrSource,
    LabConcept,
    MagnesiumCategory,
    MdsComponentName,
    Qualifier,
    RecommendationCode,
)
from cds_service.vocabulary import CardExtension

SOURCE_LABEL = "MgCDS magnesium decision support"
OVERRIDE_REASON_SYSTEM = "https://mgcds.example.org/fhir/CodeSystem/override-reason"
OVERRIDE_REASONS = (
    ("already-addressed", "Already addressed"),
    ("recent-result-elsewhere", "Recent result available elsewhere"),
    ("patient-declined", "Patient declined"),
    ("not-clinically-relevant", "Not clinically relevant for this patient"),
)
SUMMARY_MAX_CHARS = 139  # CDS Hooks: summary "<140 characters"
DRUG_NAME_MAX_CHARS = 40  # leaves room for the key figure in a summary

LOINC_SYSTEM = "http://loinc.org"
SNOMED_SYSTEM = "http://snomed.info/sct"
UCUM_SYSTEM = "http://unitsofmeasure.org"
ORAL_ROUTE = ("26643006", "Oral route")  # SNOMED CT

# Displays only for LOINC codes whose display we are sure of; others carry text only.
LOINC_DISPLAYS = {
    "19123-9": "Magnesium [Mass/volume] in Serum or Plasma",
    "2601-3": "Magnesium [Moles/volume] in Serum or Plasma",
    "2160-0": "Creatinine [Mass/volume] in Serum or Plasma",
}
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
CODE_SOURCES: dict[str, tuple[str, ...]] = {
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
    DrugClass.INTERACTS_DOLUTEGRAVIR: "take dolutegravir 2 hours before or 6 hours after magnesium",
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

_MARKDOWN_SPECIALS = re.compile(r"([\\`*_{}\[\]()#+\-.!|~])")
_WHITESPACE = re.compile(r"\s+")


class CardBuildError(RuntimeError):
    """A card we built is invalid: a programming error, never the caller's fault."""


# Input text (drug names, displays, ids, notes) is shown at most this long: a multi-megabyte display from the EHR
# must not be echoed into every card (issue 6 item 4, huge strings).
MAX_INPUT_TEXT_CHARS = 300


def _printable(text: str) -> str:
    # Most text is printable already: skip the per-character pass then (performance; same result).
    return text if text.isprintable() else "".join(ch if ch.isprintable() else " " for ch in text)


def escape_markdown(text: str, limit: int = MAX_INPUT_TEXT_CHARS) -> str:
    """Make input text inert in markdown and HTML: one line, at most ``limit`` characters, markdown specials
    escaped, <>& as entities."""
    # Only a bounded prefix is examined: a multi-megabyte input must not cost a pass over all of it.
    flat = _WHITESPACE.sub(" ", _printable(text[: limit * 4])).strip()
    if len(flat) > limit or len(text) > limit * 4:
        flat = flat[: limit - 3].rstrip() + "..."
    escaped = _MARKDOWN_SPECIALS.sub(r"\\\1", flat)
    return escaped.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def plain_text(text: str, limit: int) -> str:
    """Input text for a plain-text summary: one line, no markup characters, at most ``limit`` characters."""
    # Only a bounded prefix is examined: a multi-megabyte input must not cost a pass over all of it.
    flat = _WHITESPACE.sub(" ", _printable(text[: limit * 4])).strip()
    flat = re.sub(r"[<>*_`\[\]#|~\\]", "", flat)
    return flat if len(flat) <= limit and len(text) <= limit * 4 else flat[: limit - 3].rstrip() + "..."


def build_cards(
    recommendations: Sequence[r.Recommendation],
    assessment: Assessment,
    facts: Facts,
    *,
    source_url: str,
    id_factory: Callable[[], str],
) -> list[dict[str, Any]]:
    """One CDS Hooks card per recommendation, suggestions validated as FHIR R4."""
    cards = [_card(rec, assessment, facts, source_url, id_factory) for rec in recommendations]
    for card in cards:
        _require_no_empty(card, "card")
    return cards


def _card(
    rec: r.Recommendation,
    assessment: Assessment,
    facts: Facts,
    source_url: str,
    id_factory: Callable[[], str],
) -> dict[str, Any]:
    tags = CODE_SOURCES.get(rec.code, ())
    card: dict[str, Any] = {
        "uuid": id_factory(),
        "summary": _summary(rec, assessment),
        "indicator": rec.indicator.value,
        "detail": _detail(rec, assessment, tags),
        "source": {"label": SOURCE_LABEL, "url": source_url},
        "overrideReasons": [
            {"system": OVERRIDE_REASON_SYSTEM, "code": code, "display": display} for code, display in OVERRIDE_REASONS
        ],
        "extension": {CardExtension.RECOMMENDATION.value: rec.code.value},
    }
    if rec.draft_reference is not None:
        # Order hooks: which draft the card is about (the EHR, the audit log and a reviewer can tell them apart).
        card["extension"][CardExtension.DRAFT_ORDER.value] = rec.draft_reference
    links = [{"label": SOURCES[t][0], "url": SOURCES[t][1], "type": "absolute"} for t in tags]
    if links:
        card["links"] = links
    suggestions = [_suggestion(s, facts, id_factory) for s in rec.suggestions]
    suggestions = [s for s in suggestions if s["actions"]]
    if suggestions:
        card["suggestions"] = suggestions
        card["selectionBehavior"] = "at-most-one"
    return card


# --- summaries -----------------------------------------------------------------------------------------


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


def _summary(rec: r.Recommendation, assessment: Assessment) -> str:
    a = assessment
    mds = _mds_text(a)
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


def _mds_text(a: Assessment) -> str:
    return f"{a.mds.min}/5" if a.mds.min == a.mds.max else f"{a.mds.min}-{a.mds.max}/5"


def _dose(rec: r.Recommendation) -> int | None:
    for suggestion in rec.suggestions:
        for action in suggestion.actions:
            if isinstance(action, r.CreateMedicationRequest):
                return action.elemental_mg_per_day
    return None


# --- detail --------------------------------------------------------------------------------------------


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


def _detail(rec: r.Recommendation, a: Assessment, tags: tuple[str, ...]) -> str:
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

    lines.append(f"\n**Magnesium Depletion Score** [FAN21]: {_mds_text(a)} ({a.mds.group})")
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


def _mg_line(value: float | None, comparator: str | None, category: str) -> str:
    if value is None:
        return category
    return f"{comparator or ''}{value:.2f} mmol/L ({category})"


# --- suggestions ---------------------------------------------------------------------------------------


def _suggestion(spec: r.SuggestionSpec, facts: Facts, id_factory: Callable[[], str]) -> dict[str, Any]:
    actions = [a for a in (_action(x, facts) for x in spec.actions) if a is not None]
    return {"uuid": id_factory(), "label": _suggestion_label(spec), "actions": actions}


def _suggestion_label(spec: r.SuggestionSpec) -> str:
    for action in spec.actions:
        if isinstance(action, r.CreateServiceRequest):
            return f"Order {TEST_TEXT.get(action.test, action.test).lower()}"
    creates = [a for a in spec.actions if isinstance(a, r.CreateMedicationRequest)]
    deletes = [a for a in spec.actions if isinstance(a, r.DeleteDraft)]
    if creates and deletes:
        return f"Replace the order with {creates[0].salt}"
    if creates:
        return f"Start {creates[0].salt}, {creates[0].elemental_mg_per_day} mg elemental magnesium per day"
    return "Remove the draft order"


def _action(action: r.Action, facts: Facts) -> dict[str, Any] | None:
    if isinstance(action, r.DeleteDraft):
        return {
            "type": "delete",
            "description": "Remove the draft order",
            "resourceId": f"{action.resource_type}/{action.resource_id}",
        }
    if facts.patient_id is None:
        return None  # a create without a subject is invalid FHIR: offer nothing rather than something broken
    if isinstance(action, r.CreateServiceRequest):
        resource = service_request(action, facts.patient_id, facts.encounter_id)
        return {
            "type": "create",
            "description": _suggestion_label(r.SuggestionSpec("", (action,))),
            "resource": resource,
        }
    resource = medication_request(action, facts.patient_id, facts.encounter_id)
    return {"type": "create", "description": f"Draft order for {action.salt}", "resource": resource}


def _context(patient_id: str, encounter_id: str | None) -> dict[str, Any]:
    context: dict[str, Any] = {"subject": {"reference": f"Patient/{patient_id}"}}
    if encounter_id:
        context["encounter"] = {"reference": f"Encounter/{encounter_id}"}
    return context


def service_request(action: r.CreateServiceRequest, patient_id: str, encounter_id: str | None) -> dict[str, Any]:
    """A draft ServiceRequest for a LOINC-coded test, validated as FHIR R4."""
    coding: dict[str, Any] = {"system": LOINC_SYSTEM, "code": action.loinc}
    if action.loinc in LOINC_DISPLAYS:
        coding["display"] = LOINC_DISPLAYS[action.loinc]
    resource: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "status": "draft",
        "intent": "order",
        "code": {"coding": [coding], "text": TEST_TEXT.get(action.test, action.test)},
        **_context(patient_id, encounter_id),
    }
    _validate(ServiceRequest, resource)
    return resource


def medication_request(action: r.CreateMedicationRequest, patient_id: str, encounter_id: str | None) -> dict[str, Any]:
    """A draft MedicationRequest for a magnesium salt at the elemental daily dose in divided doses."""
    per_dose = action.elemental_mg_per_day / action.doses_per_day
    per_dose_value: int | float = int(per_dose) if per_dose.is_integer() else round(per_dose, 1)
    text = (
        f"{per_dose_value} mg elemental magnesium as {action.salt} by mouth "
        f"{action.doses_per_day} times a day "
        f"({action.elemental_mg_per_day} mg elemental magnesium per day in divided doses)"
    )
    resource: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "status": "draft",
        "intent": "order",
        # No RxNorm code: we only send codes we are sure of; the salt name is unambiguous text.
        "medicationCodeableConcept": {"text": action.salt.capitalize()},
        **_context(patient_id, encounter_id),
        "dosageInstruction": [
            {
                "text": text,
                "timing": {"repeat": {"frequency": action.doses_per_day, "period": 1, "periodUnit": "d"}},
                "route": {"coding": [{"system": SNOMED_SYSTEM, "code": ORAL_ROUTE[0], "display": ORAL_ROUTE[1]}]},
                "doseAndRate": [
                    {
                        "doseQuantity": {
                            "value": per_dose_value,
                            "unit": "mg elemental magnesium",
                            "system": UCUM_SYSTEM,
                            "code": "mg",
                        }
                    }
                ],
            }
        ],
    }
    _validate(MedicationRequest, resource)
    return resource


def _validate(model: Any, resource: dict[str, Any]) -> None:
    # Performance: validating a suggestion with its fhir.resources model costs about 0.3 ms, and suggestions differ
    # between patients only in their subject and encounter references. When those are plain strings (always valid
    # FHIR strings) the rest, the suggestion's shape, is validated once and remembered; anything else every time.
    shape = _shape(resource)
    if shape is None:
        _validate_now(model, resource)
    else:
        _validate_shape(model, shape)


def _plain_reference(value: Any) -> bool:
    reference = value.get("reference") if isinstance(value, dict) and value.keys() == {"reference"} else None
    return isinstance(reference, str) and reference != "" and reference.isprintable() and reference.strip() == reference


def _shape(resource: dict[str, Any]) -> str | None:
    """The resource as canonical JSON with placeholder references, or None when a reference is not plain."""
    shape = dict(resource)
    for key, placeholder in (("subject", "Patient/p"), ("encounter", "Encounter/e")):
        if key in shape:
            if not _plain_reference(shape[key]):
                return None
            shape[key] = {"reference": placeholder}
    return json.dumps(shape, sort_keys=True)


@lru_cache(maxsize=256)
def _validate_shape(model: Any, shape: str) -> None:
    # lru_cache remembers only successes: an invalid shape raises again on every call.
    _validate_now(model, json.loads(shape))


def _validate_now(model: Any, resource: dict[str, Any]) -> None:
    try:
        model.model_validate(resource)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise CardBuildError(f"invalid {resource.get('resourceType')} built for a suggestion: {exc}") from exc


def _require_no_empty(value: Any, where: str) -> None:
    """CDS Hooks forbids null and empty values; finding one is our bug."""
    if value is None or value == "" or value == [] or value == {}:
        raise CardBuildError(f"empty value at {where}")
    if isinstance(value, dict):
        for key, item in value.items():
            _require_no_empty(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _require_no_empty(item, f"{where}[{index}]")

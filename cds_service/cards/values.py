"""How a card shows a value: magnesium in mmol/L with the laboratory's unit (section 2), an eGFR as reported but
shortened, dates, medication names.

Every text that comes from the EHR (a reported value or unit, a drug name) passes through ``inert``: ``plain_text``
for a summary (plain text), ``escape_markdown`` for a detail (markdown).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import partial

from cds_service.cards.markdown import escape_markdown, plain_text
from cds_service.engine.egfr import EgfrResult
from cds_service.engine.facts import Evidence, MedicationFact
from cds_service.engine.magnesium import MagnesiumResult
from cds_service.engine.recommend.figures import egfr_shown
from cds_service.engine.vocabulary import EgfrGap, MagnesiumCategory

Inert = Callable[[str], str]
DRUG_NAME_MAX_CHARS = 40  # leaves room for the key figure in a summary
DETAIL_NAME_MAX_CHARS = 60  # a drug name in a detail line: long enough to tell products apart, short enough to read
REPORTED_MAX_CHARS = 20  # a value or unit as the laboratory reported it

summary_text: Inert = partial(plain_text, limit=DRUG_NAME_MAX_CHARS)
detail_text: Inert = partial(escape_markdown, limit=DETAIL_NAME_MAX_CHARS)
EGFR_UNIT = "mL/min/1.73 m2"

# Why the creatinine on file gave no eGFR (check-renal-function's summary and detail, section 7.2).
EGFR_GAP_TEXT = {
    EgfrGap.SEX_UNKNOWN: "sex not recorded as male or female",
    EgfrGap.BIRTH_DATE_UNKNOWN: "birth date missing",
    EgfrGap.CREATININE_UNUSABLE: "newest creatinine unreadable",
    EgfrGap.EGFR_UNUSABLE: "newest eGFR unreadable",
    EgfrGap.UNDER_ADULT_AGE: "creatinine drawn before age 18",
}


def date_text(when: datetime | None) -> str:
    """A result's date as a card shows it (the day is what a clinician compares)."""
    return when.date().isoformat() if when is not None else "date unknown"


def reported(text: str | None, inert: Inert) -> str:
    """A value or unit exactly as the laboratory reported it, made inert and bounded."""
    return inert(text[: REPORTED_MAX_CHARS * 4]) if text else ""


def magnesium_value(result: MagnesiumResult, inert: Inert = summary_text) -> str:
    """A magnesium value in mmol/L, then as the laboratory reported it when that was another unit (section 2):
    "0.78 mmol/L (1.9 mg/dL)"."""
    text = f"{result.comparator or ''}{result.value_mmol_l:.2f} mmol/L"
    unit = result.reported_unit
    if result.reported_value and unit and unit.strip().lower() != "mmol/l":
        text += f" ({reported(result.reported_value, inert)} {reported(unit, inert)})"
    return text


def unreadable_reason(result: MagnesiumResult, inert: Inert) -> str:
    """Why a magnesium result could not be read: its unit when it had one ("unit ug/mL"), else the reason."""
    if result.reported_unit:
        return f"unit {reported(result.reported_unit, inert)}"
    return inert((result.unusable_reason or "no value")[:60])


def magnesium_figure(label: str, result: MagnesiumResult, inert: Inert, *, dated: bool = False) -> str | None:
    """ "serum Mg 0.78 mmol/L (1.9 mg/dL, low-normal, preliminary)", "serum Mg result unreadable (unit ug/mL)",
    or None when there is no result at all."""
    when = f", {date_text(result.effective)}" if dated else ""
    preliminary = ", preliminary" if result.preliminary else ""
    if result.value_mmol_l is not None:
        value = magnesium_value(result, inert)
        category = str(result.category)
        if value.endswith(")"):  # "0.78 mmol/L (1.9 mg/dL)": the category joins the parenthesis
            return f"{label} {value[:-1]}, {category}{preliminary}){when}"
        return f"{label} {value} ({category}{preliminary}){when}"
    if result.evidence is not None:
        return f"{label} result unreadable ({unreadable_reason(result, inert)}{preliminary}){when}"
    return None


def egfr_value_text(egfr: EgfrResult) -> str:
    """The eGFR that counts as shown: "29.9" (shortened, never across a threshold), ">60", "unknown"."""
    return egfr_shown(egfr.value, egfr.comparator)


def egfr_summary(egfr: EgfrResult) -> str:
    """The eGFR figure of a summary: "eGFR 24", "eGFR 24 preliminary", "eGFR unknown"."""
    return f"eGFR {egfr_value_text(egfr)}" + (" preliminary" if egfr.preliminary and egfr.value is not None else "")


def egfr_gap_text(egfr: EgfrResult) -> str | None:
    """Why no eGFR could be had from the creatinine or eGFR on file, if that is the reason it is unknown."""
    return EGFR_GAP_TEXT.get(egfr.gap) if egfr.gap is not None else None


def medication_name(drug: MedicationFact, inert: Inert = detail_text) -> str:
    """A medication as the EHR names it (its display, else its ingredients), made inert."""
    return inert(drug.display or ", ".join(drug.ingredients) or drug.resource_type)


def evidence_value(evidence: Evidence, inert: Inert = detail_text) -> str:
    """ "0.9 mg/dL": a result's value and unit as the laboratory reported them."""
    value = reported(evidence.value, inert)
    unit = reported(evidence.unit, inert)
    return f"{value} {unit}".strip() or "value unknown"


def is_unknown(result: MagnesiumResult) -> bool:
    """No usable value (absent, stale or unreadable)."""
    return result.category == MagnesiumCategory.UNKNOWN and result.value_mmol_l is None

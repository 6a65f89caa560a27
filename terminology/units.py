"""Unit conversion to each lab concept's canonical unit (clinical-rules.md sections 2 and 3).

Factors, from clinical-rules.md: magnesium mg/dL x 0.4114, mg/L x 0.04114, mEq/L x 0.5 (Mg is divalent), creatinine
umol/L / 88.4 and mmol/L x 1000 / 88.4 (version 2: by the Quantity's unit, never by the code). Units are matched
case-insensitively after removing spaces; the micro sign (U+00B5) and Greek mu (U+03BC) both read as "u". A unit we
do not list is never guessed.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from terminology.model import ConvertedQuantity, UnitNotRecognised

MG_DL_TO_MMOL_L = 0.4114  # clinical-rules.md section 2
MG_L_TO_MMOL_L = 0.04114  # clinical-rules.md section 2
MEQ_L_TO_MMOL_L = 0.5  # clinical-rules.md section 2: magnesium carries two charges
CREATININE_UMOL_L_PER_MG_DL = 88.4  # clinical-rules.md section 3

MAGNESIUM_UNIT = "mmol/L"
CREATININE_UNIT = "mg/dL"
EGFR_UNIT = "mL/min/{1.73_m2}"
DRINKS_UNIT = "/d"

_MAGNESIUM: Mapping[str, float] = {
    "mmol/l": 1.0,
    "mg/dl": MG_DL_TO_MMOL_L,
    "mg/l": MG_L_TO_MMOL_L,
    "meq/l": MEQ_L_TO_MMOL_L,
}
_CREATININE: Mapping[str, float] = {
    "mg/dl": 1.0,
    "umol/l": 1.0 / CREATININE_UMOL_L_PER_MG_DL,
    # clinical-rules.md section 3 (version 2): mmol/L x 1000 / 88.4 (urine creatinine is often reported in mmol/L).
    "mmol/l": 1000.0 / CREATININE_UMOL_L_PER_MG_DL,
}
# eGFR: real systems send the per-1.73 m2 unit in several spellings and, often, plain mL/min for the same
# normalised value (Synthea does); clinical-rules.md section 3 accepts both as-is.
_EGFR: Mapping[str, float] = {
    "ml/min/{1.73_m2}": 1.0,
    "ml/min/1.73m2": 1.0,
    "ml/min/1.73_m2": 1.0,
    "ml/min/1.73m^2": 1.0,
    "ml/min/{1.73m2}": 1.0,
    "ml/min/1.73": 1.0,
    "ml/min/1.73sqm": 1.0,
    "ml/min/1.73m²": 1.0,
    "ml/min": 1.0,
}
_DRINKS: Mapping[str, float] = {
    "/d": 1.0,
    "{drinks}/d": 1.0,
    "{drink}/d": 1.0,
    "drinks/d": 1.0,
    "drinks/day": 1.0,
    "{drinks}/day": 1.0,
    "/day": 1.0,
}

UNIT_TABLES: Mapping[str, tuple[str, Mapping[str, float]]] = MappingProxyType(
    {
        "serum-magnesium": (MAGNESIUM_UNIT, _MAGNESIUM),
        "ionized-magnesium": (MAGNESIUM_UNIT, _MAGNESIUM),
        "urine-magnesium": (MAGNESIUM_UNIT, _MAGNESIUM),
        "serum-creatinine": (CREATININE_UNIT, _CREATININE),
        "urine-creatinine": (CREATININE_UNIT, _CREATININE),
        "egfr": (EGFR_UNIT, _EGFR),
        "alcohol-drinks-per-day": (DRINKS_UNIT, _DRINKS),
    }
)


def normalise_unit(unit: str) -> str:
    """Lower-case, without spaces, with micro sign and Greek mu read as 'u'."""
    return unit.strip().replace(" ", "").replace("\u00b5", "u").replace("\u03bc", "u").lower()


def convert(value: float, unit: str | None, concept: str) -> ConvertedQuantity:
    """``value`` in ``unit`` converted to the canonical unit of ``concept``; else UnitNotRecognised."""
    if concept not in UNIT_TABLES:
        raise UnitNotRecognised(unit, concept)
    canonical, table = UNIT_TABLES[concept]
    if unit is None or not unit.strip():
        raise UnitNotRecognised(unit, concept)
    factor = table.get(normalise_unit(unit))
    if factor is None:
        raise UnitNotRecognised(unit, concept)
    return ConvertedQuantity(
        value=value * factor, unit=canonical, original_value=value, original_unit=unit, factor=factor
    )

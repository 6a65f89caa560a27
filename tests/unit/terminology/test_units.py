"""Unit conversion: expected values from clinical-rules.md sections 2-3 and hand calculations."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

import pytest

from terminology import Terminology, UnitNotRecognised


def half_up(value: float, places: str = "0.01") -> Decimal:
    """Round the way clinical-rules.md section 2 says the engine rounds."""
    return Decimal(str(value)).quantize(Decimal(places), rounding=ROUND_HALF_UP)


# value, unit, expected mmol/L after rounding, source
MAGNESIUM_EXAMPLES = [
    (1.7, "mg/dL", "0.70", "clinical-rules.md section 2 example"),
    (2.0, "mg/dL", "0.82", "clinical-rules.md section 2 example"),
    (1.2, "mg/dL", "0.49", "clinical-rules.md section 2 example"),
    (1.7, "mg/dl", "0.70", "same, lower-case variant"),
    (1.7, "MG/DL", "0.70", "same, upper-case variant"),
    (17.0, "mg/L", "0.70", "hand: 17 x 0.04114 = 0.69938"),
    (1.6, "mEq/L", "0.80", "hand: 1.6 x 0.5"),
    (1.6, "meq/L", "0.80", "hand: 1.6 x 0.5"),
    (0.75, "mmol/L", "0.75", "identity"),
    (0.75, "mmol/l", "0.75", "identity, lower-case"),
]


@pytest.mark.parametrize(("value", "unit", "expected", "source"), MAGNESIUM_EXAMPLES)
def test_magnesium_converts_to_mmol_per_litre(
    term: Terminology, value: float, unit: str, expected: str, source: str
) -> None:
    converted = term.convert(value, unit, "serum-magnesium")
    assert converted.unit == "mmol/L"
    assert half_up(converted.value) == Decimal(expected), source
    assert converted.original_value == value
    assert converted.original_unit == unit


def test_conversion_is_not_rounded(term: Terminology) -> None:
    # 1.7 x 0.4114 = 0.69938 (hand calculation); the engine rounds, not the terminology.
    assert term.convert(1.7, "mg/dL", "serum-magnesium").value == pytest.approx(0.69938, abs=1e-12)


@pytest.mark.parametrize("unit", ["umol/L", "µmol/L", "μmol/L", "umol/l", "UMOL/L"])
def test_creatinine_micromol_divides_by_88_4(term: Terminology, unit: str) -> None:
    # clinical-rules.md section 3: divide by 88.4; hand: 97.24 / 88.4 = 1.1
    converted = term.convert(97.24, unit, "serum-creatinine")
    assert converted.unit == "mg/dL"
    assert converted.value == pytest.approx(1.1, abs=1e-9)


@pytest.mark.parametrize("unit", ["mmol/L", "mmol/l", "MMOL/L"])
def test_creatinine_millimol_times_1000_divided_by_88_4(term: Terminology, unit: str) -> None:
    # clinical-rules.md version 2 section 3: mmol/L x 1000 / 88.4; hand: 0.0884 x 1000 = 88.4; 88.4 / 88.4 = 1.0
    converted = term.convert(0.0884, unit, "serum-creatinine")
    assert converted.unit == "mg/dL"
    assert converted.value == pytest.approx(1.0, abs=1e-9)


def test_creatinine_mg_per_dl_is_identity(term: Terminology) -> None:
    assert term.convert(1.1, "mg/dL", "serum-creatinine").value == pytest.approx(1.1)


@pytest.mark.parametrize("unit", ["mL/min/{1.73_m2}", "mL/min/1.73m2", "ml/min/1.73 m2", "mL/min"])
def test_egfr_units_accepted_as_is(term: Terminology, unit: str) -> None:
    converted = term.convert(72.0, unit, "egfr")
    assert (converted.value, converted.unit, converted.factor) == (72.0, "mL/min/{1.73_m2}", 1.0)


@pytest.mark.parametrize(
    ("unit", "concept"),
    [
        ("g/L", "serum-magnesium"),
        ("g/L", "serum-creatinine"),
        ("mg/dL", "egfr"),
        ("%", "ionized-magnesium"),
    ],
)
def test_unlisted_unit_is_refused_with_unit_and_concept_named(term: Terminology, unit: str, concept: str) -> None:
    with pytest.raises(UnitNotRecognised) as caught:
        term.convert(1.0, unit, concept)
    assert unit in str(caught.value)
    assert concept in str(caught.value)


@pytest.mark.parametrize("unit", [None, "", "  "])
def test_missing_unit_is_refused_never_guessed(term: Terminology, unit: str | None) -> None:
    with pytest.raises(UnitNotRecognised, match="no unit"):
        term.convert(0.8, unit, "serum-magnesium")


def test_unknown_concept_is_refused(term: Terminology) -> None:
    with pytest.raises(UnitNotRecognised, match="potassium"):
        term.convert(4.0, "mmol/L", "potassium")

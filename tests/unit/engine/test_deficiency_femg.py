"""Deficiency rules in order (section 7.1) and FEMg (section 6), clinical-rules.md version 2."""

from __future__ import annotations

import pytest

from cds_service.engine.deficiency import assess_deficiency
from cds_service.engine.egfr import EgfrResult
from cds_service.engine.femg import assess_femg, femg_percent
from cds_service.engine.settings import ClinicalSettings
from tests.unit.engine.builders import NOW, facts, lab


@pytest.mark.parametrize(
    ("serum", "ionized", "expected"),
    [
        ("high", "low", "excess"),  # rule 1 first
        ("high", "unknown", "excess"),
        ("severe-high", "unknown", "excess"),  # version 2: rule 1 covers severe-high too
        ("severe-high", "low", "excess"),
        ("severe-low", "normal", "likely"),  # rule 2 before rule 3
        ("low", "unknown", "likely"),
        ("normal", "low", "likely"),
        ("unknown", "low", "likely"),
        ("low-normal", "normal", "unlikely"),  # rule 3 before rule 4
        ("unknown", "normal", "unlikely"),
        ("low-normal", "unknown", "possible"),
        ("low-normal", "high", "possible"),
        ("normal", "unknown", "unlikely"),
        ("unknown", "unknown", "unknown"),
        ("unknown", "high", "unknown"),
    ],
)
def test_deficiency_rules_in_order(serum: str, ionized: str, expected: str) -> None:
    assert assess_deficiency(serum, ionized) == expected


def test_femg_formula_by_hand() -> None:
    # U_Mg 2.0 mmol/L, S_Cr 1.0 mg/dL, S_Mg 0.6 mmol/L, U_Cr 100 mg/dL:
    # (2.0 x 1.0) / (0.7 x 0.6 x 100) x 100 = 2 / 42 x 100 = 4.7619 %
    assert femg_percent(2.0, 1.0, 0.6, 100.0) == pytest.approx(4.7619, abs=1e-4)


SETTINGS = ClinicalSettings()
# Section 6 (version 2): FEMg is interpreted only from eGFR 60; these are the eGFRs the rows below use.
EGFR_75 = EgfrResult(75, None, "observation")
EGFR_60 = EgfrResult(60, None, "observation")
EGFR_59_6 = EgfrResult(59.6, None, "observation")
EGFR_OVER_60 = EgfrResult(60, ">", "observation")
EGFR_UNDER_90 = EgfrResult(90, "<", "observation")
EGFR_UNKNOWN = EgfrResult(None, None, "none")


def _femg_labs(urine_mg: float, serum_days_apart: float = 1) -> tuple[object, ...]:
    return (
        lab("urine-magnesium", urine_mg, days_ago=3),
        lab("urine-creatinine", 100.0, days_ago=3),
        lab("serum-magnesium", 0.6, days_ago=3 - serum_days_apart),
        lab("serum-creatinine", 1.0, days_ago=3),
    )


@pytest.mark.parametrize(
    ("urine_mg", "category", "percent", "interpretation"),
    [
        (2.0, "low", 4.8, "renal-wasting"),  # 4.76 % > 4
        (0.5, "low", 1.2, "extrarenal"),  # 0.5/42 x 100 = 1.19 % < 2
        (1.0, "severe-low", 2.4, "indeterminate"),  # 2.38 %
        (2.0, "normal", 4.8, "not-applicable"),
    ],
)
def test_femg_interpretation(urine_mg: float, category: str, percent: float, interpretation: str) -> None:
    result = assess_femg(facts(labs=_femg_labs(urine_mg)), NOW, SETTINGS, category, EGFR_75)  # type: ignore[arg-type]
    assert (result.percent, result.interpretation) == (percent, interpretation)


# FEMg 4.8 % (hand: 2 / 42 x 100 = 4.76 -> 4.8) in hypomagnesemia; section 6 (version 2): renal-wasting only with
# eGFR >= 60; eGFR < 60 or unknown -> indeterminate (FEMg rises as GFR falls).
@pytest.mark.parametrize(
    ("egfr", "interpretation", "why"),
    [
        (EGFR_60, "renal-wasting", "60 is not below 60"),
        (EGFR_59_6, "indeterminate", "reported 59.6 is below 60, unrounded"),
        (EGFR_UNKNOWN, "indeterminate", "renal function unknown"),
        (EGFR_OVER_60, "renal-wasting", ">60 is at least 60"),
        (EGFR_UNDER_90, "indeterminate", "<90 does not exclude below 60"),
    ],
)
def test_femg_is_interpreted_only_from_egfr_60(egfr: EgfrResult, interpretation: str, why: str) -> None:
    result = assess_femg(facts(labs=_femg_labs(2.0)), NOW, SETTINGS, "low", egfr)  # type: ignore[arg-type]
    assert (result.percent, result.interpretation) == (4.8, interpretation), why


def test_femg_without_hypomagnesemia_stays_not_applicable_at_any_egfr() -> None:
    result = assess_femg(facts(labs=_femg_labs(2.0)), NOW, SETTINGS, "low-normal", EGFR_UNKNOWN)  # type: ignore[arg-type]
    assert result.interpretation == "not-applicable"


def test_femg_needs_serum_within_two_days() -> None:
    labs = _femg_labs(2.0, serum_days_apart=2.5)
    result = assess_femg(facts(labs=labs), NOW, SETTINGS, "low", EGFR_75)  # type: ignore[arg-type]
    assert (result.percent, result.interpretation) == (None, "not-applicable")


def test_femg_without_inputs_is_not_applicable() -> None:
    assert assess_femg(facts(), NOW, SETTINGS, "low", EGFR_75).interpretation == "not-applicable"  # type: ignore[arg-type]

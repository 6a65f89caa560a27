"""Magnesium categories at every boundary, in mmol/L and via mg/dL, and the ionized reference range."""

from __future__ import annotations

from dataclasses import replace

import pytest

from cds_service.engine.magnesium import assess_ionized, assess_serum, round_mmol
from cds_service.engine.settings import ClinicalSettings
from tests.unit.engine.builders import MG_DL_TO_MMOL_L, NOW, facts, lab

SETTINGS = ClinicalSettings()


# Boundaries of clinical-rules.md section 2; values rounded half up to 2 decimals first.
@pytest.mark.parametrize(
    ("mmol_l", "rounded", "category"),
    [
        (0.49, 0.49, "severe-low"),
        (0.4949, 0.49, "severe-low"),
        (0.495, 0.50, "low"),  # half up
        (0.50, 0.50, "low"),
        (0.69, 0.69, "low"),
        (0.694, 0.69, "low"),
        (0.695, 0.70, "low-normal"),
        (0.70, 0.70, "low-normal"),
        (0.84, 0.84, "low-normal"),
        (0.845, 0.85, "normal"),
        (0.85, 0.85, "normal"),
        (1.05, 1.05, "normal"),
        (1.054, 1.05, "normal"),
        (1.055, 1.06, "high"),
        (1.06, 1.06, "high"),
        # version 2: severe-high from 2.00 mmol/L [YU16]
        (1.99, 1.99, "high"),
        (1.994, 1.99, "high"),
        (1.995, 2.00, "severe-high"),  # half up to 2.00
        (2.00, 2.00, "severe-high"),
        (3.5, 3.50, "severe-high"),
    ],
)
def test_serum_category_boundaries_in_mmol_l(mmol_l: float, rounded: float, category: str) -> None:
    result = assess_serum(facts(labs=(lab("serum-magnesium", mmol_l),)), NOW, SETTINGS)
    assert (result.value_mmol_l, result.category) == (rounded, category)


# mg/dL x 0.4114 by hand: 1.7 -> 0.69938; 2.0 -> 0.8228; 1.2 -> 0.49368; 1.21 -> 0.497794;
# 2.06 -> 0.847484; 2.55 -> 1.04907; 2.6 -> 1.06964 (clinical-rules.md section 2 examples first).
@pytest.mark.parametrize(
    ("mg_dl", "rounded", "category"),
    [
        (1.7, 0.70, "low-normal"),
        (2.0, 0.82, "low-normal"),
        (1.2, 0.49, "severe-low"),
        (1.21, 0.50, "low"),
        (2.06, 0.85, "normal"),
        (2.55, 1.05, "normal"),
        (2.6, 1.07, "high"),
        # [YU16]'s 4.8 mg/dL: 4.8 x 0.4114 = 1.97472 -> 1.97 (high); 4.87 x 0.4114 = 2.003518 -> 2.00 (severe-high)
        (4.8, 1.97, "high"),
        (4.87, 2.00, "severe-high"),
    ],
)
def test_serum_category_boundaries_via_mg_dl(mg_dl: float, rounded: float, category: str) -> None:
    result = assess_serum(facts(labs=(lab("serum-magnesium", mg_dl * MG_DL_TO_MMOL_L),)), NOW, SETTINGS)
    assert (result.value_mmol_l, result.category) == (rounded, category)


def test_round_mmol_is_half_up() -> None:
    assert (round_mmol(0.125), round_mmol(0.135), round_mmol(0.69938)) == (0.13, 0.14, 0.70)


@pytest.mark.parametrize(
    ("value", "comparator", "category"),
    [(0.5, "<", "severe-low"), (0.49, "<=", "severe-low"), (0.5, "<=", "unknown"), (0.7, "<", "unknown"),
     (1.05, ">", "high"), (1.05, ">=", "unknown"), (1.1, ">=", "high"),
     # version 2: a lower bound in the high range stays high (hypermagnesemia either way); from 2.00 severe-high
     (1.5, ">", "high"), (2.0, ">", "severe-high"), (2.0, ">=", "severe-high"), (1.99, ">=", "high")],
)  # fmt: skip
def test_serum_comparator_decides_category_only_when_bounded(value: float, comparator: str, category: str) -> None:
    result = assess_serum(facts(labs=(lab("serum-magnesium", value, comparator=comparator),)), NOW, SETTINGS)
    assert result.category == category


def test_unusable_newest_result_makes_serum_unknown_with_reason() -> None:
    labs = (
        lab("serum-magnesium", 0.9, days_ago=10),
        lab("serum-magnesium", None, days_ago=2, unusable="unit 'g' not recognised"),
    )
    result = assess_serum(facts(labs=labs), NOW, SETTINGS)
    assert result.category == "unknown"
    assert result.unusable_reason == "unit 'g' not recognised"


def test_ionized_default_reference_interval() -> None:
    # [GRE96] 0.44-0.59 mmol/L
    for value, category in ((0.43, "low"), (0.44, "normal"), (0.59, "normal"), (0.60, "high")):
        result = assess_ionized(facts(labs=(lab("ionized-magnesium", value),)), NOW, SETTINGS)
        assert (result.category, result.reference_source) == (category, "default")


def test_ionized_reference_range_from_observation_is_used() -> None:
    # Analyser range 0.45-0.60: 0.44 is low under both, 0.60 is normal only under the Observation's range.
    in_obs_range = lab("ionized-magnesium", 0.60, ref_low=0.45, ref_high=0.60)
    result = assess_ionized(facts(labs=(in_obs_range,)), NOW, SETTINGS)
    assert (result.category, result.reference_source) == ("normal", "observation")
    below = lab("ionized-magnesium", 0.445, ref_low=0.46, ref_high=0.60)  # rounds to 0.45 < 0.46
    assert assess_ionized(facts(labs=(below,)), NOW, SETTINGS).category == "low"


def test_ionized_half_reference_range_falls_back_to_default() -> None:
    result = assess_ionized(facts(labs=(lab("ionized-magnesium", 0.60, ref_low=0.45),)), NOW, SETTINGS)
    assert (result.category, result.reference_source) == ("high", "default")


def test_ionized_absent_is_unknown() -> None:
    assert assess_ionized(facts(), NOW, SETTINGS).category == "unknown"


# Section 1: windows and statuses.
@pytest.mark.parametrize(
    ("status", "used"),
    [("final", True), ("amended", True), ("corrected", True), ("preliminary", True),
     ("entered-in-error", False), ("cancelled", False), ("registered", False), ("unknown", False)],
)  # fmt: skip
def test_observation_status_rules(status: str, used: bool) -> None:
    result = assess_serum(facts(labs=(lab("serum-magnesium", 0.6, status=status),)), NOW, SETTINGS)
    assert (result.category == "low") is used


def test_preliminary_result_is_used_with_a_note() -> None:
    result = assess_serum(facts(labs=(lab("serum-magnesium", 0.6, status="preliminary"),)), NOW, SETTINGS)
    assert result.preliminary
    assert any("preliminary" in n for n in result.notes)


def test_magnesium_window_is_90_days_and_stale_is_reported() -> None:
    in_window = assess_serum(facts(labs=(lab("serum-magnesium", 0.6, days_ago=90),)), NOW, SETTINGS)
    assert in_window.category == "low"
    stale = assess_serum(facts(labs=(lab("serum-magnesium", 0.6, days_ago=91),)), NOW, SETTINGS)
    assert stale.category == "unknown"
    assert stale.stale is not None
    assert any("stale" in n for n in stale.notes)


def test_newest_result_wins_and_entered_in_error_is_skipped() -> None:
    labs = (
        lab("serum-magnesium", 0.9, days_ago=30),
        lab("serum-magnesium", 0.6, days_ago=10),
        lab("serum-magnesium", 0.4, days_ago=1, status="entered-in-error"),
    )
    assert assess_serum(facts(labs=labs), NOW, SETTINGS).category == "low"


def test_result_without_time_or_after_now_is_not_used() -> None:
    untimed = lab("serum-magnesium", 0.6)
    untimed = type(untimed)(**{**untimed.__dict__, "effective": None})
    assert assess_serum(facts(labs=(untimed,)), NOW, SETTINGS).category == "unknown"
    future = lab("serum-magnesium", 0.6, days_ago=-1)
    assert assess_serum(facts(labs=(future,)), NOW, SETTINGS).category == "unknown"


def test_negative_or_huge_values_do_not_crash_or_read_as_low() -> None:
    negative = assess_serum(facts(labs=(lab("serum-magnesium", -0.3),)), NOW, SETTINGS)
    assert (negative.category, negative.value_mmol_l) == ("unknown", None)
    huge = assess_serum(facts(labs=(lab("serum-magnesium", 1e300),)), NOW, SETTINGS)
    assert huge.category == "severe-high"


def test_reported_value_and_unit_travel_with_the_result_for_dual_units() -> None:
    # Section 2: cards show "0.78 mmol/L (1.9 mg/dL)": the value and unit as the laboratory reported them.
    reported = lab("serum-magnesium", 1.9 * MG_DL_TO_MMOL_L)
    reported = type(reported)(
        **{**reported.__dict__, "evidence": replace(reported.evidence, value="1.9", unit="mg/dL")}
    )
    result = assess_serum(facts(labs=(reported,)), NOW, SETTINGS)
    # 1.9 x 0.4114 = 0.78166 -> 0.78
    assert (result.value_mmol_l, result.reported_value, result.reported_unit) == (0.78, "1.9", "mg/dL")

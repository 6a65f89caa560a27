"""eGFR: CKD-EPI 2021 against the hand-evaluated table, which value counts, comparators and bands."""

from __future__ import annotations

import csv
from datetime import date
from pathlib import Path

import pytest

from cds_service.engine.egfr import (
    age_in_years,
    assess_egfr,
    ckd_epi_2021,
    egfr_points,
    is_below,
    round_half_up,
)
from cds_service.engine.settings import ClinicalSettings
from tests.unit.engine.builders import NOW, facts, lab

# See tests/data/engine/ckd_epi_2021_reference.md for why 0.01 is tight enough to catch a coefficient error.
UNROUNDED_TOLERANCE = 0.01
REFERENCE = Path(__file__).resolve().parents[2] / "data" / "engine" / "ckd_epi_2021_reference.csv"


def _rows() -> list[dict[str, str]]:
    with REFERENCE.open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("row", _rows(), ids=lambda row: row["case"])
def test_ckd_epi_2021_matches_hand_evaluated_table(row: dict[str, str]) -> None:
    value = ckd_epi_2021(float(row["scr_mg_dl"]), int(row["age_years"]), row["sex"])
    assert value == pytest.approx(float(row["expected_egfr_unrounded"]), abs=UNROUNDED_TOLERANCE)
    assert round_half_up(value) == int(row["expected_egfr"])


def test_reference_table_covers_both_sexes_and_both_sides_of_kappa() -> None:
    rows = _rows()
    for sex, kappa in (("female", 0.7), ("male", 0.9)):
        mine = [float(r["scr_mg_dl"]) for r in rows if r["sex"] == sex]
        assert any(s < kappa for s in mine)
        assert any(s > kappa for s in mine)


def test_sex_other_than_male_or_female_is_refused() -> None:
    with pytest.raises(ValueError, match="sex"):
        ckd_epi_2021(1.0, 50, "other")


@pytest.mark.parametrize(
    ("birth", "on", "age"),
    [
        (date(1966, 1, 15), date(2026, 1, 15), 60),  # birthday today
        (date(1966, 1, 16), date(2026, 1, 15), 59),  # birthday tomorrow
        (date(2000, 2, 29), date(2026, 2, 28), 25),
    ],
)
def test_age_in_whole_years(birth: date, on: date, age: int) -> None:
    assert age_in_years(birth, on) == age


@pytest.mark.parametrize(("value", "expected"), [(68.5, 69), (68.49, 68), (59.5, 60), (89.5, 90)])
def test_round_half_up(value: float, expected: int) -> None:
    assert round_half_up(value) == expected


# eGFR bands [FAN21]: < 60 -> 2, 60 to < 90 -> 1, >= 90 -> 0; comparators widen the interval.
@pytest.mark.parametrize(
    ("value", "comparator", "points"),
    [
        (59, None, (2, 2)),
        (60, None, (1, 1)),
        (89, None, (1, 1)),
        (90, None, (0, 0)),
        (15, "<", (2, 2)),
        (60, ">", (0, 1)),
        (60, ">=", (0, 1)),
        (90, ">=", (0, 0)),
        (90, ">", (0, 0)),
        (59, ">", (0, 2)),
        (60, "<", (2, 2)),
        (60, "<=", (1, 2)),
        (90, "<", (1, 2)),
        (91, "<", (0, 2)),
    ],
)
def test_egfr_band_truth_table(value: int, comparator: str | None, points: tuple[int, int]) -> None:
    assert egfr_points(value, comparator) == points


@pytest.mark.parametrize(
    ("value", "comparator", "below"),
    [(29, None, True), (30, None, False), (15, "<", True), (30, "<", True), (30, "<=", None),
     (29, "<=", True), (60, "<", None), (60, ">", False), (29, ">", None), (30, ">=", False)],
)  # fmt: skip
def test_below_30_with_comparators(value: int, comparator: str | None, below: bool | None) -> None:
    assert is_below(value, comparator, 30) is below


SETTINGS = ClinicalSettings()


def test_creatinine_after_newest_egfr_is_recomputed() -> None:
    # female born 1966-01-01, creatinine 1.0 on 2026-01-10: age 60; by hand with bc -l: 142 x 1.428571^-1.2
    # x 0.9938^60 x 1.012 = 142 x 0.651805 x 0.688556 x 1.012 = 64.495 -> 64
    f = facts(labs=(lab("egfr", 90, days_ago=10), lab("serum-creatinine", 1.0, days_ago=5)))
    result = assess_egfr(f, NOW, SETTINGS)
    assert (result.source, result.value, result.age_years) == ("ckd-epi-2021", 64, 60)


def test_creatinine_at_same_time_as_egfr_is_recomputed() -> None:
    f = facts(labs=(lab("egfr", 90, days_ago=5), lab("serum-creatinine", 1.0, days_ago=5)))
    assert assess_egfr(f, NOW, SETTINGS).source == "ckd-epi-2021"


def test_egfr_newer_than_creatinine_is_used_as_reported_with_comparator() -> None:
    f = facts(labs=(lab("serum-creatinine", 1.0, days_ago=20), lab("egfr", 60, days_ago=5, comparator=">")))
    result = assess_egfr(f, NOW, SETTINGS)
    assert (result.source, result.value, result.comparator, result.points) == ("observation", 60, ">", (0, 1))


def test_unknown_sex_falls_back_to_reported_egfr_else_none() -> None:
    with_egfr = facts(gender="unknown", labs=(lab("egfr", 45, days_ago=30), lab("serum-creatinine", 1.0)))
    assert assess_egfr(with_egfr, NOW, SETTINGS).source == "observation"
    without = facts(gender=None, labs=(lab("serum-creatinine", 1.0),))
    result = assess_egfr(without, NOW, SETTINGS)
    assert (result.source, result.value, result.points) == ("none", None, (0, 2))
    assert any("gender" in n for n in result.notes)


def test_stale_renal_results_are_absent_and_reported() -> None:
    f = facts(labs=(lab("egfr", 45, days_ago=366),))
    result = assess_egfr(f, NOW, SETTINGS)
    assert result.source == "none"
    assert len(result.stale) == 1


def test_egfr_365_days_old_is_still_in_window() -> None:
    assert assess_egfr(facts(labs=(lab("egfr", 45, days_ago=365),)), NOW, SETTINGS).value == 45

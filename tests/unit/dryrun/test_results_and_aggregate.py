"""A patient's figures and the population's counters, against values worked out by hand (written beside each)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from cds_service.dryrun.aggregate import Aggregator, per_100
from cds_service.dryrun.results import PatientResult, age_band, result_from_outcome, skipped

NOW = datetime(2026, 11, 21, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("birth_date", "band"),
    [
        ("2008-11-22", "0-17"),  # 18th birthday is tomorrow: still 17
        ("2008-11-21", "18-39"),  # 18 today
        ("1986-11-22", "18-39"),  # 39, 40 tomorrow
        ("1961-11-21", "65-79"),  # 65 today
        ("1946-11-22", "65-79"),  # 79, 80 tomorrow
        ("1946", "80+"),  # year only: counted from 1946-01-01, so 80
        ("1946-11", "80+"),  # counted from 1946-11-01: 80
        ("2026-11-21", "0-17"),  # born today: 0
        ("2027-01-01", "unknown"),  # in the future
        ("not a date", "unknown"),
        (None, "unknown"),
    ],
)
def test_age_band(birth_date: Any, band: str) -> None:
    assert age_band(birth_date, NOW) == band


def _card(code: str, indicator: str) -> dict[str, Any]:
    return {"indicator": indicator, "extension": {"org.mgcds.recommendation": code}}


def test_a_result_reads_the_assessment_and_the_cards() -> None:
    patient = {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1950-01-01"}
    assessment = {
        "mds": {"min": 1, "max": 3, "group": "indeterminate"},
        "serum_mg": {"category": "unknown", "evidence": [], "stale": [{"resource": "Observation/o1"}]},
        "ionized_mg": {"category": "low", "evidence": [{"resource": "Observation/o2"}]},
        "egfr": {"source": "ckd-epi-2021"},
        "deficiency": "likely",
        "rules_version": "2.0",
    }
    cards = [_card("check-renal-function", "info"), _card("supplement-organic", "warning")]
    result = result_from_outcome(patient, "f.json", assessment, cards, NOW)
    assert result == PatientResult(
        patient_id="p1",
        source="f.json",
        status="evaluated",
        age_band="65-79",
        sex="female",
        mds_min=1,
        mds_max=3,
        mds_group="indeterminate",
        serum_category="unknown",
        ionized_category="low",
        egfr_source="ckd-epi-2021",
        magnesium_in_window=True,  # the ionized result is in the window; the serum one only stale
        deficiency="likely",
        recommendations=("check-renal-function", "supplement-organic"),
        indicators=("info", "warning"),
        rules_version="2.0",
    )


def test_without_a_rules_version_or_a_result_in_the_window_it_says_so() -> None:
    assessment = {"serum_mg": {"evidence": [], "stale": [{"resource": "Observation/o1"}]}, "ionized_mg": {}}
    patient = {"resourceType": "Patient", "id": "p2", "deceasedDateTime": "2026-01-01"}
    result = result_from_outcome(patient, "x", assessment, [], NOW)
    assert result.rules_version == "unknown"
    assert result.magnesium_in_window is False
    assert result.deceased is True
    assert (result.sex, result.age_band, result.mds_min) == ("unknown", "unknown", None)


def _evaluated(pid: str, codes: tuple[str, ...], indicators: tuple[str, ...], **kw: Any) -> PatientResult:
    return PatientResult(
        patient_id=pid, source="s", status="evaluated", recommendations=codes, indicators=indicators, **kw
    )


def test_the_counters_of_a_small_population() -> None:
    aggregator = Aggregator()
    aggregator.add(_evaluated("a", ("test-serum-mg",), ("info",), mds_min=2, mds_max=3, mds_group="indeterminate"))
    aggregator.add(
        _evaluated(
            "b",
            ("test-serum-mg", "urgent-evaluation"),
            ("info", "critical"),
            mds_min=4,
            mds_max=4,
            mds_group="high",
            serum_category="severe-low",
            magnesium_in_window=True,
        )
    )
    aggregator.add(
        _evaluated(
            "c", (), (), mds_min=0, mds_max=0, mds_group="low", serum_category="normal", magnesium_in_window=True
        )
    )
    aggregator.add(skipped("d", "s", "cannot evaluate: no Patient"))
    aggregator.add(skipped("", "broken.json", "the file is not valid JSON"))
    summary = aggregator.summary()
    assert summary["patients"] == {
        "seen": 4,
        "evaluated": 3,
        "skipped": 1,
        "deceased": 0,
        "with_cards": 2,
        "with_cards_per_100_patients": 66.67,  # 2 of 3: 66.666... to 2 decimals
    }
    assert summary["skipped"]["files"] == 1
    assert summary["skipped"]["by_reason"] == {"cannot evaluate: no Patient": 1, "the file is not valid JSON": 1}
    assert summary["cards"]["total"] == 3
    assert summary["cards"]["per_100_patients"] == 100.0  # 3 cards over 3 patients
    assert summary["cards"]["by_recommendation"] == {
        "urgent-evaluation": {"cards": 1, "per_100_patients": 33.33, "patients": 1},
        "test-serum-mg": {"cards": 2, "per_100_patients": 66.67, "patients": 2},
    }
    assert summary["cards"]["by_indicator"]["info"] == {"cards": 2, "per_100_patients": 66.67}
    assert summary["cards"]["by_indicator"]["warning"] == {"cards": 0, "per_100_patients": 0.0}
    assert summary["mds"]["groups"] == {"low": 1, "moderate": 0, "high": 1, "indeterminate": 1}
    assert summary["mds"]["min"] == {"0": 1, "1": 0, "2": 1, "3": 0, "4": 1, "5": 0}
    assert summary["magnesium"]["serum_categories"]["severe-low"] == 1
    assert summary["magnesium"]["no_result_in_window"] == {"patients": 1, "share": 0.3333}
    assert summary["rules_version"] == "unknown"


def test_per_100_of_nobody_is_zero() -> None:
    assert per_100(0, 0) == 0.0
    assert per_100(1, 8) == 12.5

"""Labs, orders, conditions and AUDIT-C answers. Codes are the ones clinical-rules.md names."""

from __future__ import annotations

import pytest

from terminology import CodeRef, Terminology

from .conftest import LOINC, SNOMED

# clinical-rules.md sections 3, 4, 7 and the brief's lab concept list.
LAB_CODES = [
    ("19123-9", "serum-magnesium"),
    ("2601-3", "serum-magnesium"),
    ("73573-8", "ionized-magnesium"),
    ("19124-7", "urine-magnesium"),
    ("2161-8", "urine-creatinine"),
    ("2160-0", "serum-creatinine"),
    ("38483-4", "serum-creatinine"),
    ("59826-8", "serum-creatinine"),
    ("14682-9", "serum-creatinine"),
    *[
        (code, "egfr")
        for code in (
            "98979-8",
            "98980-6",
            "62238-1",
            "33914-3",
            "48642-3",
            "48643-1",
            "50044-7",
            "69405-9",
            "77147-7",
            "88293-6",
            "88294-4",
        )
    ],
    ("74013-4", "alcohol-drinks-per-day"),
    ("68518-0", "auditc-frequency"),
    ("68519-8", "auditc-typical-drinks"),
]


@pytest.mark.parametrize(("code", "concept"), LAB_CODES)
def test_observation_codes(term: Terminology, code: str, concept: str) -> None:
    match = term.classify_observation([CodeRef(LOINC, code, None)])
    assert match is not None
    assert match.concept == concept
    assert match.matched_by.startswith(f"LOINC {code}")


def test_evidence_carries_the_display(term: Terminology) -> None:
    match = term.classify_observation([CodeRef(LOINC, "38483-4", "Creatinine")])
    assert match is not None
    assert match.matched_by == "LOINC 38483-4 (Creatinine)"


def test_code_without_system_that_looks_like_loinc(term: Terminology) -> None:
    match = term.classify_observation([CodeRef(None, "2160-0", None)])
    assert match is not None
    assert match.concept == "serum-creatinine"


@pytest.mark.parametrize(
    ("text", "concept"),
    [
        ("Magnesium", "serum-magnesium"),
        ("Magnesium, serum", "serum-magnesium"),
        ("Ionized magnesium", "ionized-magnesium"),
        ("Magnesium, urine", "urine-magnesium"),
        ("Creatinine, urine", "urine-creatinine"),
        ("Creatinine", "serum-creatinine"),
        ("eGFR (CKD-EPI 2021)", "egfr"),
    ],
)
def test_observation_text_when_no_code_is_known(term: Terminology, text: str, concept: str) -> None:
    match = term.classify_observation([CodeRef("http://example.org/local-lab", "MG1", None)], text)
    assert match is not None
    assert match.concept == concept


@pytest.mark.parametrize(
    "text",
    ["Magnesium, RBC", "Creatine kinase", "Creatinine clearance, 24 hour urine", "Potassium", "", None],
)
def test_other_lab_texts_are_not_guessed(term: Terminology, text: str | None) -> None:
    assert term.classify_observation([], text) is None


@pytest.mark.parametrize(
    ("code", "concept"),
    [
        ("19123-9", "serum-magnesium"),
        ("2601-3", "serum-magnesium"),
        ("73573-8", "ionized-magnesium"),
        ("2160-0", "serum-creatinine"),
    ],
)
def test_service_request_orders(term: Terminology, code: str, concept: str) -> None:
    match = term.classify_service_request([CodeRef(LOINC, code, None)])
    assert match is not None
    assert match.concept == concept


def test_unrelated_loinc_is_nothing(term: Terminology) -> None:
    # 2823-3 potassium (a public LOINC lookup table); not one of ours.
    assert term.classify_observation([CodeRef(LOINC, "2823-3", "Potassium")]) is None


@pytest.mark.parametrize("code", ["15167005", "66590003", "7200002"])
def test_alcohol_use_disorder_codes(term: Terminology, code: str) -> None:
    assert term.classify_condition([CodeRef(SNOMED, code, None)]) == "alcohol-use-disorder"


def test_condition_text_and_unrelated_conditions(term: Terminology) -> None:
    assert term.classify_condition([], "Alcohol dependence") == "alcohol-use-disorder"
    assert term.classify_condition([], "Family history of alcoholism") is None
    # 38341003 Hypertension, as Synthea sends it.
    assert term.classify_condition([CodeRef(SNOMED, "38341003", "Hypertension")]) is None


# LOINC answer lists of 68518-0 / 68519-8 (answer code, display, MgCDS band, item score 0-4).
FREQUENCY = [
    ("LA6270-8", "Never", "never", 0),
    ("LA18926-8", "Monthly or less", "monthly-or-less", 1),
    ("LA18927-6", "2-4 times a month", "2-4-per-month", 2),
    ("LA18928-4", "2-3 times a week", "2-3-per-week", 3),
    ("LA18929-2", "4 or more times a week", "4-plus-per-week", 4),
]
TYPICAL = [
    ("LA15694-5", "1 or 2", "1-2", 0),
    ("LA15695-2", "3 or 4", "3-4", 1),
    ("LA18930-0", "5 or 6", "5-6", 2),
    ("LA18931-8", "7 to 9", "7-9", 3),
    ("LA18932-6", "10 or more", "10-plus", 4),
]
AUDITC = [("auditc-frequency", *row) for row in FREQUENCY] + [("auditc-typical-drinks", *row) for row in TYPICAL]


@pytest.mark.parametrize(("concept", "code", "display", "band", "score"), AUDITC)
def test_auditc_band_from_code_text_and_score(
    term: Terminology, concept: str, code: str, display: str, band: str, score: int
) -> None:
    assert term.auditc_band(concept, [CodeRef(LOINC, code, None)], None, None) == band
    assert term.auditc_band(concept, [], display.upper(), None) == band
    assert term.auditc_band(concept, [], None, score) == band


def test_auditc_unknown_answers(term: Terminology) -> None:
    assert term.auditc_band("auditc-frequency", [], "sometimes", None) is None
    assert term.auditc_band("auditc-frequency", [], None, 7) is None
    assert term.auditc_band("auditc-frequency", [], None, None) is None
    assert term.auditc_band("phq-9", [], None, 1) is None

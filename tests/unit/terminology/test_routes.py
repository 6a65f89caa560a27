"""Parenteral route and dose form: the cases clinical data sends, and the look-alikes that must not match."""

from __future__ import annotations

import pytest

from terminology import CodeRef, Terminology
from terminology.routes import is_parenteral_form, is_parenteral_route

from .conftest import RXNORM, SNOMED

V2_ROUTE = "http://terminology.hl7.org/CodeSystem/v2-0162"


@pytest.mark.parametrize(
    ("codings", "text", "expected"),
    [
        ([CodeRef(SNOMED, "47625008", None)], None, True),  # Intravenous route
        ([CodeRef(SNOMED, "78421000", None)], None, True),  # Intramuscular route
        ([CodeRef(SNOMED, "34206005", None)], None, True),  # Subcutaneous route
        ([CodeRef(V2_ROUTE, "IV", None)], None, True),
        ([CodeRef(SNOMED, "26643006", "Oral route")], None, False),
        ([CodeRef("http://example.org/local", "R7", "Intravenous")], None, True),
        ([], "IV push", True),
        ([], "give intravenously over 20 min", True),
        ([], "by mouth", False),
        ([], "PO", False),
        ([], "active ingredient at bedtime", False),  # "iv" inside "active", "im" inside "time"
        ([], None, False),
    ],
)
def test_route(codings: list[CodeRef], text: str | None, expected: bool) -> None:
    assert is_parenteral_route(codings, text) is expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("10 ML magnesium sulfate 500 MG/ML Injection", True),
        ("magnesium chloride 200 MG/ML Injectable Solution", True),
        ("10 ML magnesium sulfate 500 MG/ML Prefilled Syringe", True),
        ("magnesium oxide 400 MG Oral Tablet", False),
        ("magnesium sulfate 1000 MG Granules for Oral Solution", False),
        ("Magnesium citrate 58.2 MG/ML Oral Solution", False),
    ],
)
def test_dose_form(name: str, expected: bool) -> None:
    assert is_parenteral_form([name]) is expected


def test_a_known_product_code_is_read_by_its_rxnorm_name(term: Terminology) -> None:
    # 1658244 "10 ML magnesium sulfate 500 MG/ML Injection", 198741 "magnesium oxide 400 MG Oral Tablet": the EHR
    # sends the code alone; the value set's name for it carries the dose form.
    assert term.is_parenteral([CodeRef(RXNORM, "1658244", None)], None) is True
    assert term.is_parenteral([CodeRef(RXNORM, "198741", None)], None) is False
    assert term.is_parenteral([CodeRef(RXNORM, "198741", None)], None, [CodeRef(SNOMED, "47625008", None)]) is True

"""The direct reading of CodeableConcept and Quantity must agree with the fhir.resources models it bypasses.

The oracle is the model itself (fhir.resources R4B): for every input, the fast reader answers what the model-only
reader answers (same codings, text, value, comparator, unit, code; rejected by both or by neither).
"""

from __future__ import annotations

from typing import Any

import pytest
from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.quantity import Quantity
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from cds_service.fhir.extract.datatypes import read_codeable_concept as _codeable
from cds_service.fhir.extract.datatypes import read_quantity as _quantity

# Strings that hit the edges of the FHIR primitive patterns: empty, outer and inner whitespace, control characters.
_EDGE_STRINGS = ["", " ", "a", " a", "a ", "a  b", "a b", "a\tb", "a\nb", "\u00a0x", "x\x00", "mg/dL", "mmol/L", "µg"]
_text = st.one_of(st.sampled_from(_EDGE_STRINGS), st.text(max_size=6))
_value = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=False),
    st.sampled_from(["1.5", "x", 1e301, -1e301, 0.1]),
    _text,
)


def _model_codeable(value: dict[str, Any]) -> tuple[list[tuple[Any, Any, Any]], Any] | None:
    try:
        concept = CodeableConcept.model_validate(value)
    except ValidationError:
        return None
    return [(c.system, c.code, c.display) for c in concept.coding or ()], concept.text


def _model_quantity(value: dict[str, Any]) -> tuple[Any, ...] | None:
    try:
        q = Quantity.model_validate(value)
    except ValidationError:
        return None
    return (float(q.value) if q.value is not None else None, q.comparator, q.unit, q.code)


_coding = st.dictionaries(st.sampled_from(["system", "code", "display", "version"]), st.one_of(_text, st.none()))
_concept = st.dictionaries(
    st.sampled_from(["coding", "text", "id"]),
    st.one_of(st.lists(_coding, max_size=3), _text, st.none()),
)
_quantity_dict = st.dictionaries(
    st.sampled_from(["value", "comparator", "unit", "system", "code", "extension"]),
    st.one_of(_value, st.sampled_from(["<", "<=", ">=", ">", "~"])),
)


@settings(max_examples=400, deadline=None)
@given(_concept)
def test_codeable_concept_matches_the_model(value: dict[str, Any]) -> None:
    fast = _codeable(value)
    expected = _model_codeable(value)
    got = None if fast is None else ([(c.system, c.code, c.display) for c in fast[0]], fast[1])
    assert got == expected


@settings(max_examples=400, deadline=None)
@given(_quantity_dict)
def test_quantity_matches_the_model(value: dict[str, Any]) -> None:
    fast = _quantity(value)
    expected = _model_quantity(value)
    got = None if fast is None else (fast.value, fast.comparator, fast.unit, fast.code)
    assert got == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # A typical lab code: read directly, same as the model.
        (
            {"coding": [{"system": "http://loinc.org", "code": "19123-9", "display": "Magnesium"}], "text": "Mg"},
            ([("http://loinc.org", "19123-9", "Magnesium")], "Mg"),
        ),
        # FHIR strings may not be empty: the model rejects it, so must we.
        ({"text": ""}, None),
        # A code with a leading space is not a FHIR code.
        ({"coding": [{"code": " x"}]}, None),
    ],
)
def test_codeable_concept_examples(value: dict[str, Any], expected: Any) -> None:
    fast = _codeable(value)
    got = None if fast is None else ([(c.system, c.code, c.display) for c in fast[0]], fast[1])
    assert got == expected

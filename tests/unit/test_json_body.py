"""The request body's JSON parser: what the API accepts and refuses, edge case by edge case (issue 17 item 2).

Written before the parser was switched to a faster one, against the standard library's, so that the switch keeps
every answer. Expected values come from the documents, not from the code: RFC 8259 (JSON) and the Python ``json``
documentation, whose behaviour the API has always had:

- duplicate names: RFC 8259 section 4 leaves it to the implementation; Python's ``json`` keeps the last value
  (its docs: "the last key-value pair is used"), in the position of the first;
- integers: any size (Python ``json`` reads them as ``int``), up to CPython's 4300-digit limit for ``int`` from text
  (``sys.int_info.str_digits_check_threshold`` / "Integer string conversion length limitation"), refused beyond;
- numbers too large for a double: Python's ``float()`` reads them as infinity, accepted as before;
- NaN and Infinity literals: not JSON (RFC 8259 section 6), refused;
- a UTF-8 byte order mark: RFC 8259 section 8.1 says senders MUST NOT add one; the API refuses it (as it always has);
- unpaired surrogate escapes: valid syntax but not text (RFC 8259 section 8.2), refused with their own message;
- raw control characters in strings: RFC 8259 section 7 requires them escaped, refused;
- nesting beyond what the parser can hold: refused as "nested too deeply", never a 500.

The differential test compares the parser with the standard library's reading (the behaviour before the switch)
on generated documents and byte strings.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cds_service.api.body import parse_json
from cds_service.errors import BadRequest


def refused(raw: bytes) -> str:
    with pytest.raises(BadRequest) as caught:
        parse_json(raw)
    assert caught.value.field == "body"
    return str(caught.value.message)


def same(a: Any, b: Any) -> bool:
    """Equal values of the same types (a float is not an int; -0.0 is not 0.0), keys in the same order."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return math.isnan(a) and math.isnan(b) or repr(a) == repr(b)
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


# --- accepted ------------------------------------------------------------------------------------------------------


def test_duplicate_names_keep_the_last_value_in_the_first_position() -> None:
    parsed = parse_json(b'{"a": 1, "b": 2, "a": 3}')
    assert same(parsed, {"a": 3, "b": 2})


@pytest.mark.parametrize(
    "digits",
    ["9223372036854775808", "-9223372036854775809", "18446744073709551616", "1" + "0" * 400],
    ids=["int64-max-plus-1", "int64-min-minus-1", "uint64-max-plus-1", "ten-to-the-400"],
)
def test_integers_beyond_64_bits_are_read_exactly(digits: str) -> None:
    parsed = parse_json(f'{{"value": {digits}}}'.encode())
    assert same(parsed, {"value": int(digits)})


def test_an_integer_of_4300_digits_is_read_and_one_of_4301_is_refused() -> None:
    assert parse_json(b"[" + b"7" * 4300 + b"]") == [int("7" * 4300)]
    assert refused(b"[" + b"7" * 4301 + b"]").startswith("the body is not valid JSON")


@pytest.mark.parametrize(("text", "value"), [("1e400", math.inf), ("-1e400", -math.inf), ("2.5e-400", 0.0)])
def test_numbers_beyond_a_double_read_as_float_does(text: str, value: float) -> None:
    assert same(parse_json(f"[{text}]".encode()), [value])


@pytest.mark.parametrize(
    ("text", "value"),
    [("-0", 0), ("-0.0", -0.0), ("1.0", 1.0), ("1E2", 100.0), ("0.1", 0.1), ("5e-324", 5e-324)],
)
def test_number_types_and_values(text: str, value: Any) -> None:
    assert same(parse_json(f"[{text}]".encode()), [value])


def test_paired_surrogate_escapes_and_escaped_control_characters_are_text() -> None:
    assert same(parse_json(b'["\\ud83d\\ude00", "\\u0000", "\\/\\b"]'), ["\U0001f600", "\x00", "/\x08"])


def test_whitespace_around_the_document_is_allowed() -> None:
    assert same(parse_json(b" \r\n\t{}\n"), {})


def test_moderate_nesting_is_read() -> None:
    assert parse_json(b"[" * 200 + b"]" * 200) is not None


# --- refused -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [b'{"a": NaN}', b'{"a": Infinity}', b'{"a": -Infinity}'])
def test_nan_and_infinity_literals_are_refused(raw: bytes) -> None:
    assert "is not valid JSON" in refused(raw)


def test_a_byte_order_mark_is_refused() -> None:
    assert refused(b'\xef\xbb\xbf{"a": 1}').startswith("the body is not valid JSON")


@pytest.mark.parametrize(
    "raw", [b'["\\ud800"]', b'["x\\udfffy"]', b'{"\\udc00": 1}', b'["\\ud800\\u0041"]', b'["\\ude00\\ud83d"]']
)
def test_unpaired_surrogate_escapes_are_refused(raw: bytes) -> None:
    assert refused(raw) == "the body contains an unpaired UTF-16 surrogate escape (not valid Unicode)"


@pytest.mark.parametrize(
    "raw",
    ['{"a": "café"}'.encode("latin-1"), b'["\xed\xa0\x80"]', b"\xff\xfe{}", '{"a": 1}'.encode("utf-16")],
    ids=["latin-1", "utf8-encoded-surrogate", "invalid-start-byte", "utf-16"],
)
def test_bytes_that_are_not_utf8_are_refused(raw: bytes) -> None:
    assert refused(raw) == "the body is not UTF-8"


@pytest.mark.parametrize(
    "raw",
    [b"", b"{", b'{"a": "x\x01y"}', b"{} x", b"[1,]", b"[01]", b"{'a': 1}", b'{"a" 1}', b"[.5]", b"[1.]"],
    ids=["empty", "truncated", "raw-control", "trailing", "trailing-comma", "leading-zero", "single-quotes",
         "no-colon", "bare-fraction", "bare-point"],
)  # fmt: skip
def test_malformed_json_is_refused_as_not_valid_json(raw: bytes) -> None:
    assert refused(raw).startswith("the body is not valid JSON: ")


@pytest.mark.parametrize("depth", [5_000, 100_000])
def test_nesting_beyond_the_parser_is_refused_as_too_deep(depth: int) -> None:
    assert refused(b"[" * depth + b"]" * depth) == "the JSON body is nested too deeply"


# --- the same answers as the standard library's reading ------------------------------------------------------------


def stdlib_answer(raw: bytes) -> tuple[str, Any]:
    """What the API answered before the switch: the value, or the refusal's message."""

    def reject_constant(name: str) -> Any:
        raise ValueError(f"{name} is not valid JSON")

    try:
        value = json.loads(raw.decode("utf-8"), parse_constant=reject_constant)
    except UnicodeDecodeError:
        return ("refused", "the body is not UTF-8")
    except RecursionError:
        return ("refused", "the JSON body is nested too deeply")
    except ValueError as exc:
        return ("refused", f"the body is not valid JSON: {exc}")
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return ("refused", "the body contains an unpaired UTF-16 surrogate escape (not valid Unicode)")
    return ("value", value)


def answer(raw: bytes) -> tuple[str, Any]:
    try:
        return ("value", parse_json(raw))
    except BadRequest as exc:
        return ("refused", exc.message)


def check_same_answer(raw: bytes) -> None:
    expected, got = stdlib_answer(raw), answer(raw)
    assert expected[0] == got[0], (raw[:200], expected, got)
    if expected[0] == "value":
        assert same(expected[1], got[1]), raw[:200]
    else:
        assert expected[1] == got[1]


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False)
    | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=5), children, max_size=5),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(json_values, st.booleans())
def test_generated_documents_get_the_same_answer(value: Any, ascii_only: bool) -> None:
    check_same_answer(json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", errors="surrogatepass"))


_TOKENS = st.sampled_from(
    ["{", "}", "[", "]", ",", ":", '"a"', '"\\ud800"', '"\\udc00"', '"\\ud83d\\ude00"', "1", "-0", "1e400", "01",
     "NaN", "Infinity", "true", "null", " ", "\ufeff", '"\x01"', "1.5", "99999999999999999999", '"\\u00e9"', "é"]
)  # fmt: skip


@settings(max_examples=500, deadline=None)
@given(st.lists(_TOKENS, max_size=12))
def test_token_soup_gets_the_same_answer(tokens: list[str]) -> None:
    check_same_answer("".join(tokens).encode("utf-8", errors="surrogatepass"))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40))
def test_arbitrary_bytes_get_the_same_answer(raw: bytes) -> None:
    check_same_answer(raw)


@pytest.mark.parametrize("raw", [b'["\\uD800"]', b'["\\udBfF"]', b'{"k": ["\\uDC00"]}'])
def test_surrogate_escapes_are_seen_in_upper_and_mixed_case(raw: bytes) -> None:
    assert refused(raw) == "the body contains an unpaired UTF-16 surrogate escape (not valid Unicode)"

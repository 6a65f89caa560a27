"""Small readers of FHIR R4 datatypes: CodeableConcept, Quantity, dates, and the few primitives facts need.

Only the elements the engine needs are parsed, each with its ``fhir.resources.R4B`` datatype model: parsing whole
resources costs about six times as much, and one malformed element elsewhere in a resource would throw away a
perfectly usable lab value. A reader answers None for what it cannot read; it never raises on EHR data.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, NamedTuple

from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.quantity import Quantity
from pydantic import ValidationError

from terminology import CodeRef

_FHIR_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")

# Performance (docs/performance.md): validating a datatype with its fhir.resources model costs about 20 us, and a
# request reads a few hundred of them. The plain shape real data almost always has is read directly; only strings
# that every FHIR primitive pattern accepts unchanged qualify (non-empty, printable, no outer whitespace; codes
# without double spaces), so the result is the model's own. Anything else goes through the model as before.
_CODING_KEYS = frozenset({"system", "code", "display"})
_QUANTITY_KEYS = frozenset({"value", "comparator", "unit", "system", "code"})
_COMPARATORS = frozenset({"<", "<=", ">=", ">"})
_FAST_NUMBER_LIMIT = 1e300


class Concept(NamedTuple):
    """A CodeableConcept reduced to its codings and text."""

    codings: list[CodeRef]
    text: str | None


@dataclass(frozen=True)
class QuantityElements:
    """The elements of a FHIR Quantity the engine reads."""

    value: float | None
    comparator: str | None
    unit: str | None
    code: str | None


def _plain_string(value: Any) -> bool:
    return isinstance(value, str) and value != "" and value.isprintable() and value.strip() == value


def _plain_code(value: Any) -> bool:
    return _plain_string(value) and "  " not in value


def _plain_codings(codings: Any) -> list[CodeRef] | None:
    """The codings as CodeRefs when every one has the plain shape (``_plain_code`` / ``_plain_string``), else None.

    The same checks as those two, written out in one loop that also builds the result: this runs for every
    Observation, medication and condition code of a request (performance, docs/performance.md round 2).
    """
    if not isinstance(codings, list | tuple):
        return None
    found: list[CodeRef] = []
    for coding in codings:
        if not isinstance(coding, dict) or not coding.keys() <= _CODING_KEYS:
            return None
        for key, text in coding.items():
            if not (isinstance(text, str) and text != "" and text.isprintable() and text.strip() == text):
                return None
            if key == "code" and "  " in text:
                return None
        found.append(CodeRef(coding.get("system"), coding.get("code"), coding.get("display")))
    return found


def read_codeable_concept(value: Any) -> Concept | None:
    """A valid CodeableConcept's codings and text, or None when the model rejects it."""
    if not isinstance(value, dict):
        return None
    text = value.get("text")
    if value.keys() <= {"coding", "text"} and (text is None and "text" not in value or _plain_string(text)):
        codings = _plain_codings(value.get("coding", ()))
        if codings is not None:
            return Concept(codings, text)
    try:
        concept = CodeableConcept.model_validate(value)
    except ValidationError:
        return None
    return Concept([CodeRef(c.system, c.code, c.display) for c in concept.coding or ()], concept.text)


def read_quantity(raw: dict[str, Any]) -> QuantityElements | None:
    """A valid Quantity's elements, or None when the model rejects it."""
    number = raw.get("value")
    comparator = raw.get("comparator")
    if (
        raw.keys() <= _QUANTITY_KEYS
        and (
            isinstance(number, int)
            and not isinstance(number, bool)
            and abs(number) < _FAST_NUMBER_LIMIT
            or isinstance(number, float)
            and abs(number) < _FAST_NUMBER_LIMIT
        )
        and (comparator is None and "comparator" not in raw or comparator in _COMPARATORS)
        and all(
            _plain_code(raw[k]) if k == "code" else _plain_string(raw[k])
            for k in ("unit", "system", "code")
            if k in raw
        )
    ):
        return QuantityElements(float(number), comparator, raw.get("unit"), raw.get("code"))
    try:
        quantity = Quantity.model_validate(raw)
    except ValidationError:
        return None
    value = float(quantity.value) if quantity.value is not None else None
    return QuantityElements(value, quantity.comparator, quantity.unit, quantity.code)


def code_string(codings: Sequence[CodeRef]) -> str | None:
    """The first coding as ``system|code`` (or the bare code), for evidence."""
    for coding in codings:
        if coding.code:
            return f"{coding.system}|{coding.code}" if coding.system else coding.code
    return None


def display_of(codings: Sequence[CodeRef], text: str | None) -> str | None:
    """How the EHR names a concept: its text, else the first coding's display."""
    if text:
        return text
    for coding in codings:
        if coding.display:
            return coding.display
    return None


def first_code(value: Any) -> str | None:
    """The first code of a CodeableConcept (a status such as Condition.clinicalStatus), if any."""
    concept = read_codeable_concept(value)
    if concept is None:
        return None
    for coding in concept.codings:
        if coding.code:
            return coding.code
    return None


def finite_number(value: Any) -> float | None:
    """``value`` as a finite float, or None: FHIR decimals are unbounded (10**400, 1e400) and must not become inf."""
    try:
        number = float(value)
    except (OverflowError, ValueError, TypeError):
        return None
    return number if math.isfinite(number) else None


def parse_fhir_datetime(value: Any) -> datetime | None:
    """A FHIR date/dateTime/instant as an aware datetime (partial dates at their start, UTC when no zone)."""
    if not isinstance(value, str) or not value:
        return None
    match = _FHIR_DATE.match(value)
    if match:
        year, month, day = match.group(1), match.group(2) or "01", match.group(3) or "01"
        try:
            return datetime(int(year), int(month), int(day), tzinfo=UTC)
        except ValueError:
            return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def parse_fhir_date(value: Any) -> date | None:
    """A FHIR date (or the date of a dateTime), or None."""
    parsed = parse_fhir_datetime(value)
    return parsed.date() if parsed is not None else None


def latest_fhir_date(value: Any) -> date | None:
    """The last day a FHIR date may stand for: "2008" -> 2008-12-31, "2008-02" -> 2008-02-29; a full date itself."""
    if not isinstance(value, str):
        return None
    match = _FHIR_DATE.match(value)
    if match is None or match.group(3) is not None:
        return parse_fhir_date(value)
    year = int(match.group(1))
    month = int(match.group(2)) if match.group(2) else 12
    if not 1 <= month <= 12 or year < 1:
        return None
    following = date(year + 1, 1, 1) if month == 12 else date(year, month + 1, 1)
    return following - timedelta(days=1)


def status_of(resource: Mapping[str, Any]) -> str:
    """The resource's status, ``unknown`` when it has none."""
    status = resource.get("status")
    return status if isinstance(status, str) else "unknown"


def resource_id(resource: Mapping[str, Any]) -> str:
    """The resource's id, ``(no id)`` when it has none."""
    rid = resource.get("id")
    return rid if isinstance(rid, str) else "(no id)"

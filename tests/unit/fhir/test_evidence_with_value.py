"""``with_value`` builds Evidence directly on the hook path: it must give what ``dataclasses.replace`` gives."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from cds_service.engine.facts import Evidence
from cds_service.fhir.extract.observations import with_value


def _every_field_set() -> Evidence:
    # A distinct value in every field, whatever fields Evidence has: a field added later and not carried over by
    # with_value fails here (the datetime field gets a datetime, every other one its own name).
    values = {
        field.name: datetime(2026, 1, 2, 3, 4, tzinfo=UTC) if field.name == "date" else f"the {field.name}"
        for field in dataclasses.fields(Evidence)
    }
    return Evidence(**values)


def test_with_value_equals_replace_with_every_field_set() -> None:
    evidence = _every_field_set()
    assert with_value(evidence, "4.2", "mg/dL") == dataclasses.replace(evidence, value="4.2", unit="mg/dL")


def test_with_value_keeps_none_and_can_clear_the_unit() -> None:
    evidence = Evidence(resource_type="Observation", resource_id="o1")
    assert with_value(evidence, None, None) == evidence
    assert with_value(_every_field_set(), "7", None).unit is None

"""Issue 16, B8: whatever the API accepts fits the store's column, field by field (or the API refuses it with 400).

The API side is read from the models' own JSON schemas (what pydantic enforces), the store side from the table
definitions (what the database enforces), so the check does not trust the shared constants.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ValidationError
from sqlalchemy import Column, String

from cds_service.audit.recorder import service_id_text
from cds_service.audit.schema import cards_table, feedback_table, records_table
from cds_service.cdshooks import FeedbackCoding, FeedbackItem, PatientViewContext, PatientViewRequest


def _max_length(model: type[BaseModel], field: str) -> int:
    schema: dict[str, Any] = model.model_json_schema()["properties"][field]
    options = schema.get("anyOf", [schema])
    lengths = [option["maxLength"] for option in options if option.get("type") == "string"]
    assert lengths, f"{model.__name__}.{field} accepts strings of any length"
    return max(lengths)


def _column(column: Column[Any]) -> int:
    assert isinstance(column.type, String)
    assert column.type.length is not None
    return column.type.length


# API field -> the store column it lands in
PAIRS = [
    (PatientViewContext, "patientId", records_table.c.patient_id),
    (PatientViewContext, "userId", records_table.c.user_id),
    (PatientViewRequest, "hookInstance", records_table.c.hook_instance),
    (FeedbackItem, "card", records_table.c.card_uuid),
    (FeedbackItem, "card", feedback_table.c.card_uuid),
    (FeedbackItem, "card", cards_table.c.card_uuid),
    (FeedbackCoding, "code", feedback_table.c.reason_code),
    (FeedbackCoding, "system", feedback_table.c.reason_system),
]


@pytest.mark.parametrize(("model", "field", "column"), PAIRS, ids=[f"{m.__name__}.{f}" for m, f, _ in PAIRS])
def test_the_longest_value_the_api_accepts_fits_its_column(model: type[BaseModel], field: str, column: Any) -> None:
    assert _max_length(model, field) <= _column(column)


def test_the_service_id_of_an_unknown_service_is_cut_to_its_column() -> None:
    recorded = service_id_text("x" * 500 + "\x00")
    assert len(recorded) == _column(records_table.c.service_id)
    assert service_id_text("mg\x00view") == "mg\ufffdview"


@pytest.mark.parametrize("value", ["pat\x00", "pat\n1", "pat\x7f"], ids=["nul", "newline", "del"])
def test_control_characters_in_ids_are_refused(value: str) -> None:
    with pytest.raises(ValidationError, match="must not contain control characters"):
        PatientViewContext.model_validate({"userId": "Practitioner/1", "patientId": value})
    with pytest.raises(ValidationError, match="must not contain control characters"):
        FeedbackItem.model_validate({"card": value, "outcome": "overridden", "outcomeTimestamp": "2026-01-01T00:00Z"})


def test_has_control_character_is_the_c0_controls_and_del_by_their_code_points() -> None:
    # The definition written out from the code points (C0 is U+0000..U+001F, DEL is U+007F), not from the module:
    # every character of the Basic Multilingual Plane, lone surrogates included, and a few beyond it.
    from cds_service.audit.limits import has_control_character

    for point in [*range(0x10000), 0x1F600, 0x10FFFF]:
        expected = point <= 0x1F or point == 0x7F
        assert has_control_character(f"ab{chr(point)}cd") is expected, hex(point)
    assert not has_control_character("")
    assert has_control_character("\x00")
    assert not has_control_character("Practitioner/doc-1 \u00a0\u2028")

"""make_entry takes the fields records.CALL_PAYLOAD_PLAIN_FIELDS names as they are: the entry must not change.

Differential: the same call record as an entry with the shortcut and with every field walked by ``jsonable`` (the
behaviour before it) must give the same canonical text (what is hashed) and an equal payload, for data sources of
any content the record types allow: text with lone surrogates, control characters and non-ASCII, str subclasses
such as enum members, None.
"""

from __future__ import annotations

import dataclasses
import uuid
from enum import StrEnum

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cds_service.audit import entries
from cds_service.audit.entries import make_entry
from cds_service.audit.records import (
    CALL_PAYLOAD_PLAIN_FIELDS,
    AuditEventType,
    DataSourceRecord,
    ResourceUsed,
    call_to_payload,
)
from tests.unit.audit.helpers import make_call


class _Origin(StrEnum):
    PREFETCH = "prefetch"
    FETCHED = "fetched"


_text = st.one_of(st.text(max_size=12), st.sampled_from(["", "\ud800", "a\x00b", "é", "Ω≈ç", "\U0001f600"]))
_enum_text = st.sampled_from(list(_Origin))
_some_text = st.one_of(_text, _enum_text)
_resource = st.builds(
    ResourceUsed,
    resource_type=_some_text,
    resource_id=st.one_of(st.none(), _some_text),
    version_id=st.one_of(st.none(), _text),
    last_updated=st.one_of(st.none(), _text),
)
_source = st.builds(
    DataSourceRecord,
    key=_some_text,
    origin=_some_text,
    resources=st.lists(_resource, max_size=4).map(tuple),
    error=st.one_of(st.none(), _text),
)


def _both_ways(payload: dict[str, object], monkeypatch: pytest.MonkeyPatch) -> tuple[object, object]:
    fixed = uuid.UUID(int=7)
    monkeypatch.setattr(entries.uuid, "uuid4", lambda: fixed)
    shortcut = make_entry(AuditEventType.SERVICE_CALL, payload, plain=CALL_PAYLOAD_PLAIN_FIELDS)
    walked = make_entry(AuditEventType.SERVICE_CALL, payload)
    return shortcut, walked


@settings(max_examples=300, deadline=None)
@given(sources=st.lists(_source, max_size=4).map(tuple))
def test_plain_fields_give_the_entry_a_full_walk_gives(sources: tuple[DataSourceRecord, ...]) -> None:
    record = dataclasses.replace(make_call(), data_sources=sources)
    with pytest.MonkeyPatch.context() as monkeypatch:
        shortcut, walked = _both_ways(call_to_payload(record), monkeypatch)
    assert shortcut == walked  # record id, event type, canonical text and payload


def test_the_shortcut_is_taken_and_only_for_the_named_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    walked_values: list[object] = []
    real = entries.jsonable

    def spy(value: object) -> object:
        walked_values.append(value)
        return real(value)

    monkeypatch.setattr(entries, "jsonable", spy)
    payload = call_to_payload(make_call())
    make_entry(AuditEventType.SERVICE_CALL, payload, plain=CALL_PAYLOAD_PLAIN_FIELDS)
    assert not any(value is payload["data_sources"] for value in walked_values)
    assert any(value is payload["assessment"] for value in walked_values)
    assert {"data_sources"} == CALL_PAYLOAD_PLAIN_FIELDS

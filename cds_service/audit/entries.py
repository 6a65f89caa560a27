"""A record becomes an entry: its record id, its canonical JSON text (what is hashed) and the parsed payload.

Building an entry can never fail on what the engine put in a record: every value is reduced to plain JSON first.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Collection, Mapping
from datetime import UTC, date, datetime
from enum import Enum
from typing import Any

from cds_service.audit.chain import canonical_json
from cds_service.audit.model import PendingEntry
from cds_service.audit.records import AuditEventType

log = logging.getLogger("mgcds.audit")


def jsonable(value: Any) -> Any:
    """Plain JSON values only, so building a record can never fail on what the engine put in it."""
    # Performance: a call record holds hundreds of plain values; exact built-in types take the short way and
    # give what the general rules below would (subclasses such as enums still take the general rules).
    kind = type(value)
    if kind is str or value is None or kind is int or kind is bool:
        return value
    if kind is dict:
        return {k if type(k) is str else str(k): jsonable(v) for k, v in value.items()}
    if kind is list or kind is tuple:
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        # JSON has no NaN/Infinity; keep them visible as text rather than dropping the evidence.
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Enum):
        return jsonable(value.value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [jsonable(v) for v in value]
        return sorted(items, key=repr) if isinstance(value, set | frozenset) else items
    return str(value)


def _valid_text(value: Any) -> Any:
    """``value`` with every string made valid Unicode (a lone surrogate becomes U+FFFD)."""
    if isinstance(value, str):
        # Through UTF-16 with the surrogates passed: a paired one is decoded back, a lone one becomes U+FFFD.
        return value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    if isinstance(value, dict):
        return {_valid_text(k): _valid_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_valid_text(v) for v in value]
    return value


def make_entry(event_type: AuditEventType, payload: Mapping[str, Any], *, plain: Collection[str] = ()) -> PendingEntry:
    """Give a payload its record id and canonical text (always encodable as UTF-8).

    ``plain`` names top-level fields the caller built from plain JSON values only (lists, dicts with string keys,
    strings and None): they are taken as they are instead of walked by :func:`jsonable`, which would return an
    equal copy (performance: the data sources are half the nodes of a call record). Everything else is walked.
    """
    record_id = uuid.uuid4().hex
    envelope: dict[str, Any] = {"record_id": record_id, "event_type": event_type.value}
    for key, value in payload.items():
        envelope[key if type(key) is str else str(key)] = value if key in plain else jsonable(value)
    text = canonical_json(envelope)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate (from a URL, say) cannot be written as UTF-8: keep the record, with U+FFFD in its place,
        # rather than failing the call it belongs to.
        log.warning("audit record %s held text that is not valid Unicode; replaced", record_id)
        envelope = _valid_text(envelope)
        text = canonical_json(envelope)
    return PendingEntry(record_id, event_type.value, text, envelope)


def aware(moment: datetime) -> datetime:
    """``moment`` with a time zone: a naive one is read as UTC (a bug of ours, but losing the record is worse)."""
    if moment.tzinfo is None:
        log.warning("audit record with a naive occurred_at; taken as UTC")
        return moment.replace(tzinfo=UTC)
    return moment

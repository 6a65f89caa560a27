"""The hash chain: canonical JSON, record hashes, and the walk that finds the first broken link.

Each stored record carries ``payload_sha256`` (SHA-256 of its canonical JSON payload) and ``prev_hash``
(the ``entry_hash`` of the record before it); ``entry_hash`` covers the sequence number, the record id, the
event type, the feedback link, the payload hash and ``prev_hash``. Editing a payload breaks its payload hash;
recomputing that breaks the entry hash; recomputing that breaks the next record's ``prev_hash``. Deleting or
reordering records breaks ``prev_hash`` or the sequence; cutting the tail is caught by the head row, which
names the last record.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cds_service.audit.limits import HOOK_INSTANCE_COLUMN, has_control_character

GENESIS_HASH = "0" * 64


def canonical_json(value: Any) -> str:
    """Deterministic JSON: sorted keys, no insignificant whitespace, UTF-8 text (RFC 8785 in spirit)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def sha256_hex(text: str) -> str:
    """SHA-256 of UTF-8 text, as lowercase hex."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def entry_hash(
    *,
    seq: int,
    record_id: str,
    event_type: str,
    linked_record_id: str | None,
    payload_sha256: str,
    prev_hash: str,
) -> str:
    """The hash that links a record into the chain."""
    return sha256_hex(
        canonical_json(
            {
                "seq": seq,
                "record_id": record_id,
                "event_type": event_type,
                "linked_record_id": linked_record_id,
                "payload_sha256": payload_sha256,
                "prev_hash": prev_hash,
            }
        )
    )


# Columns copied out of the payload for filtering; verify checks each still equals the payload's value.
INDEX_FIELDS: tuple[str, ...] = (
    "occurred_at",
    "service_id",
    "patient_id",
    "user_id",
    "card_uuid",
    "outcome",
    "http_status",
    "hook_instance",
)
# hookInstance became a column in schema 3, after the API had accepted any text of up to 200 characters there; a
# stored value the column cannot hold (a control character, PostgreSQL's NUL) stays in the payload, the column NULL.


def indexed_value(payload: Mapping[str, Any], name: str) -> Any:
    """The value of column ``name`` for a payload: what the writer stores, the migration fills and verify expects."""
    value = payload.get(name)
    if name == "hook_instance" and isinstance(value, str):
        fits = len(value) <= HOOK_INSTANCE_COLUMN and not has_control_character(value)
        return value if fits else None
    return value


@dataclass(frozen=True)
class BrokenLink:
    """The first place the chain does not hold, and why."""

    seq: int | None
    record_id: str | None
    reason: str


@dataclass(frozen=True)
class ChainReport:
    """The result of walking the chain."""

    checked: int
    head_seq: int
    head_hash: str
    broken: BrokenLink | None

    @property
    def ok(self) -> bool:
        """True when every link holds."""
        return self.broken is None

    def describe(self) -> str:
        """One line for humans (CLI, review page)."""
        if self.broken is None:
            return f"chain intact: {self.checked} records, head #{self.head_seq} {self.head_hash[:16]}"
        where = f"record #{self.broken.seq}" if self.broken.seq is not None else "chain head"
        if self.broken.record_id:
            where += f" ({self.broken.record_id})"
        return f"chain BROKEN at {where}: {self.broken.reason}"


def _check_row(row: Mapping[str, Any], expected_seq: int, prev_hash: str) -> str | None:
    seq = int(row["seq"])
    if seq != expected_seq:
        return f"sequence jumps from #{expected_seq - 1} to #{seq}: a record was deleted or reordered"
    payload_text = str(row["payload"])
    if sha256_hex(payload_text) != row["payload_sha256"]:
        return "payload does not match its hash: the record was edited"
    if row["prev_hash"] != prev_hash:
        return "previous-hash does not match the record before it: a record was deleted, inserted or reordered"
    expected_entry = entry_hash(
        seq=seq,
        record_id=str(row["record_id"]),
        event_type=str(row["event_type"]),
        linked_record_id=row["linked_record_id"],
        payload_sha256=str(row["payload_sha256"]),
        prev_hash=str(row["prev_hash"]),
    )
    if expected_entry != row["entry_hash"]:
        return "entry hash does not match: the record's identity, link or hashes were edited"
    try:
        payload = json.loads(payload_text)
    except ValueError:
        return "payload is not JSON"
    if payload.get("record_id") != row["record_id"] or payload.get("event_type") != row["event_type"]:
        return "record id or event type differs from the hashed payload"
    for name in INDEX_FIELDS:
        if indexed_value(payload, name) != row[name]:
            return f"column {name} differs from the hashed payload: it was edited"
    return None


def verify_rows(rows: Iterable[Mapping[str, Any]], head: tuple[int, str] | None) -> ChainReport:
    """Walk rows in chain order against the head row ``(seq, entry_hash)``; report the first broken link."""
    prev_hash = GENESIS_HASH
    expected_seq = 1
    checked = 0
    last_id: str | None = None
    for row in rows:
        problem = _check_row(row, expected_seq, prev_hash)
        if problem is not None:
            return ChainReport(
                checked,
                head[0] if head else 0,
                head[1] if head else "",
                BrokenLink(int(row["seq"]), str(row["record_id"]), problem),
            )
        checked += 1
        prev_hash = str(row["entry_hash"])
        last_id = str(row["record_id"])
        expected_seq += 1
    last_seq = expected_seq - 1
    if head is None:
        if checked:
            return ChainReport(checked, 0, "", BrokenLink(None, None, "the head row is missing"))
        return ChainReport(0, 0, GENESIS_HASH, None)
    head_seq, head_hash = head
    if head_seq != last_seq or head_hash != prev_hash:
        return ChainReport(
            checked,
            head_seq,
            head_hash,
            BrokenLink(
                last_seq if last_seq else None,
                last_id,
                f"the head names record #{head_seq} but the chain ends at #{last_seq}: "
                "records were removed from the tail (or the head was edited)",
            ),
        )
    return ChainReport(checked, head_seq, head_hash, None)

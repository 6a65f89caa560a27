"""Canonical JSON and the chain hashes, checked against values computed outside the code."""

from __future__ import annotations

import hashlib
import json

from cds_service.audit.chain import GENESIS_HASH, canonical_json, entry_hash, sha256_hex, verify_rows


def test_sha256_matches_the_fips_180_2_example() -> None:
    # FIPS 180-2, Appendix B.1: SHA-256("abc").
    assert sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_canonical_json_sorts_keys_and_drops_whitespace() -> None:
    # Written by hand: keys sorted at every level, no spaces, non-ASCII kept as UTF-8.
    assert canonical_json({"b": 1, "a": [2, {"d": None, "c": "é"}]}) == '{"a":[2,{"c":"é","d":null}],"b":1}'


def test_entry_hash_is_sha256_of_the_documented_fields() -> None:
    # docs/audit.md: entry_hash = SHA-256 of the canonical JSON of these six fields.
    fields = {
        "seq": 7,
        "record_id": "r7",
        "event_type": "feedback",
        "linked_record_id": "r3",
        "payload_sha256": "a" * 64,
        "prev_hash": "b" * 64,
    }
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    expected = hashlib.sha256(text.encode()).hexdigest()
    assert entry_hash(**fields) == expected  # type: ignore[arg-type]


def _row(seq: int, prev: str, payload: dict[str, object]) -> dict[str, object]:
    text = canonical_json(payload)
    payload_sha = hashlib.sha256(text.encode()).hexdigest()
    row: dict[str, object] = {
        "seq": seq,
        "record_id": payload["record_id"],
        "event_type": payload["event_type"],
        "linked_record_id": None,
        "payload": text,
        "payload_sha256": payload_sha,
        "prev_hash": prev,
        "occurred_at": payload["occurred_at"],
        "service_id": payload["service_id"],
        "patient_id": payload.get("patient_id"),
        "user_id": None,
        "card_uuid": None,
        "outcome": None,
        "http_status": 200,
        "hook_instance": None,
    }
    row["entry_hash"] = entry_hash(
        seq=seq,
        record_id=str(payload["record_id"]),
        event_type=str(payload["event_type"]),
        linked_record_id=None,
        payload_sha256=payload_sha,
        prev_hash=prev,
    )
    return row


def _rows(n: int) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    prev = GENESIS_HASH
    for seq in range(1, n + 1):
        payload = {
            "record_id": f"r{seq}",
            "event_type": "service-call",
            "occurred_at": "2026-03-01T09:30:00.000000Z",
            "service_id": "svc",
            "patient_id": f"p{seq}",
            "http_status": 200,
        }
        rows.append(_row(seq, prev, payload))
        prev = str(rows[-1]["entry_hash"])
    return rows


def test_empty_chain_with_genesis_head_verifies() -> None:
    assert verify_rows([], (0, GENESIS_HASH)).ok


def test_valid_rows_verify_and_head_must_match() -> None:
    rows = _rows(3)
    assert verify_rows(rows, (3, str(rows[-1]["entry_hash"]))).ok
    report = verify_rows(rows, (3, "f" * 64))
    assert report.broken is not None
    assert "tail" in report.broken.reason


def test_describe_names_the_first_broken_record() -> None:
    rows = _rows(3)
    rows[1]["payload"] = str(rows[1]["payload"]).replace("p2", "p9")
    report = verify_rows(rows, (3, str(rows[-1]["entry_hash"])))
    assert not report.ok
    assert report.describe().startswith("chain BROKEN at record #2 (r2)")

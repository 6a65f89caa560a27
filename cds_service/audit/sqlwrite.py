"""The one write path into the audit store: append entries to the hash chain, exactly once each, in order."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update
from sqlalchemy.exc import SQLAlchemyError

from cds_service.audit.chain import entry_hash, sha256_hex
from cds_service.audit.model import PendingEntry
from cds_service.audit.records import AuditEventType
from cds_service.audit.schema import (
    HEAD_ID,
    cards_table,
    check_schema,
    create_store_engine,
    head_table,
    records_table,
)
from cds_service.errors import AuditStoreError


class SqlAuditAppender:
    """Appends to the store (SQLite or PostgreSQL); database failures surface as AuditStoreError."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, url: str) -> SqlAuditAppender:
        """An appender to the store at ``url`` on a read-write engine of its own."""
        return cls(create_store_engine(url))

    def check_ready(self) -> None:
        """Raise AuditStoreError unless the store answers and its schema is the one this code writes."""
        check_schema(self.engine)

    def dispose(self) -> None:
        """Close pooled connections."""
        self.engine.dispose()

    def append(self, entries: Sequence[PendingEntry]) -> int:
        """Insert the entries not yet stored (by record id), in order, returns how many."""
        if not entries:
            return 0
        try:
            with self.engine.begin() as conn:
                return self._append_locked(conn, entries)
        except SQLAlchemyError as exc:
            raise AuditStoreError(f"cannot write the audit store: {type(exc).__name__}") from exc

    def _append_locked(self, conn: Connection, entries: Sequence[PendingEntry]) -> int:
        head = conn.execute(
            select(head_table.c.seq, head_table.c.entry_hash).where(head_table.c.id == HEAD_ID).with_for_update()
        ).first()
        if head is None:
            raise AuditStoreError("audit chain head row missing: run `mgcds audit init`")
        seq, prev_hash = int(head.seq), str(head.entry_hash)
        ids = [entry.record_id for entry in entries]
        already = set(
            conn.execute(select(records_table.c.record_id).where(records_table.c.record_id.in_(ids))).scalars()
        )
        batch_cards: dict[str, str] = {}
        rows: list[dict[str, Any]] = []
        card_rows: list[dict[str, Any]] = []
        for entry in entries:
            if entry.record_id in already:
                continue  # replay of a record that reached the store before a crash: exactly once
            already.add(entry.record_id)
            payload = entry.payload
            linked: str | None = None
            if entry.event_type == AuditEventType.FEEDBACK:
                card_uuid = str(payload["card_uuid"])
                linked = (
                    batch_cards.get(card_uuid)
                    or conn.execute(
                        select(cards_table.c.record_id).where(cards_table.c.card_uuid == card_uuid).limit(1)
                    ).scalar_one_or_none()
                )
            seq += 1
            payload_sha = sha256_hex(entry.payload_text)
            this_hash = entry_hash(
                seq=seq,
                record_id=entry.record_id,
                event_type=entry.event_type,
                linked_record_id=linked,
                payload_sha256=payload_sha,
                prev_hash=prev_hash,
            )
            rows.append(
                {
                    "seq": seq,
                    "record_id": entry.record_id,
                    "event_type": entry.event_type,
                    "occurred_at": payload["occurred_at"],
                    "service_id": payload["service_id"],
                    "patient_id": payload.get("patient_id"),
                    "user_id": payload.get("user_id"),
                    "card_uuid": payload.get("card_uuid"),
                    "outcome": payload.get("outcome"),
                    "http_status": payload.get("http_status"),
                    "linked_record_id": linked,
                    "payload": entry.payload_text,
                    "payload_sha256": payload_sha,
                    "prev_hash": prev_hash,
                    "entry_hash": this_hash,
                }
            )
            if entry.event_type == AuditEventType.SERVICE_CALL:
                for card in payload.get("cards", ()):
                    batch_cards.setdefault(card["uuid"], entry.record_id)
                    card_rows.append(
                        {
                            "record_id": entry.record_id,
                            "card_uuid": card["uuid"],
                            "recommendation": card["recommendation"],
                        }
                    )
            prev_hash = this_hash
        if rows:
            conn.execute(insert(records_table), rows)
            if card_rows:
                conn.execute(insert(cards_table), card_rows)
            conn.execute(update(head_table).where(head_table.c.id == HEAD_ID).values(seq=seq, entry_hash=prev_hash))
        return len(rows)

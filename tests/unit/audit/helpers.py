"""Audit test helpers: sample records, a store with its writer and reader, and a throw-away PostgreSQL schema."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cds_service.audit.records import (
    CallRecord,
    CardRecord,
    DataSourceRecord,
    FeedbackRecord,
    ResourceUsed,
)
from cds_service.audit.sqlread import SqlAuditReader
from cds_service.audit.store import init_audit_store
from cds_service.audit.writer import SpoolingAuditWriter, open_audit_writer

PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
BASE_TIME = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
OVERRIDE_DECLINED = {
    "system": "https://mgcds.example/CodeSystem/override-reason",
    "code": "patient-declined",
    "display": "Patient declined",
}


@dataclass
class AuditPair:
    """A store as the service wires it: a spooling writer and a read-only reader of the same URL."""

    url: str
    spool_path: Path
    writer: SpoolingAuditWriter
    reader: SqlAuditReader

    def close(self) -> None:
        """Close both."""
        self.writer.close()
        self.reader.close()


def open_pair(url: str, spool_path: Path, *, asynchronous: bool = False, init: bool = False) -> AuditPair:
    """A writer (synchronous unless asked) and a reader of ``url``; ``init`` creates the schema first."""
    if init:
        init_audit_store(url)
    writer = open_audit_writer(url, spool_path, asynchronous=asynchronous)
    return AuditPair(url, spool_path, writer, SqlAuditReader.open_read_only(url))


def sqlite_pair(directory: Path, *, asynchronous: bool = False, init: bool = True) -> AuditPair:
    """A SQLite store in ``directory`` (schema created unless ``init`` is False) with its writer and reader."""
    return open_pair(
        f"sqlite:///{directory / 'audit.sqlite3'}", directory / "spool.jsonl", asynchronous=asynchronous, init=init
    )


def make_card(recommendation: str, *, indicator: str = "info", summary: str | None = None) -> CardRecord:
    """A card record with a JSON body shaped like a CDS Hooks card."""
    card_uuid = str(uuid.uuid4())
    suggestion = str(uuid.uuid4())
    text = summary or f"{recommendation}: MDS 3/5"
    return CardRecord(
        uuid=card_uuid,
        summary=text,
        indicator=indicator,
        recommendation=recommendation,
        suggestion_uuids=(suggestion,),
        card={
            "uuid": card_uuid,
            "summary": text,
            "indicator": indicator,
            "detail": "MDS 3/5: diuretic (furosemide), eGFR 52 mL/min/1.73m2",
            "source": {"label": "MgCDS"},
            "suggestions": [{"label": "Order serum magnesium", "uuid": suggestion}],
            "extension": {"org.mgcds.recommendation": recommendation},
        },
    )


def make_call(
    *,
    patient_id: str = "pat-1",
    user_id: str = "Practitioner/doc-1",
    minutes: int = 0,
    cards: tuple[CardRecord, ...] | None = None,
    http_status: int = 200,
    error: str | None = None,
) -> CallRecord:
    """A complete service-call record (every field set)."""
    return CallRecord(
        occurred_at=BASE_TIME + timedelta(minutes=minutes),
        service_id="mgcds-patient-view",
        hook="patient-view",
        hook_instance=str(uuid.uuid4()),
        issuer="https://ehr.example.org",
        tenant="hospital-a",
        user_id=user_id,
        patient_id=patient_id,
        encounter_id="enc-7",
        fhir_server="https://ehr.example.org/fhir",
        data_sources=(
            DataSourceRecord(
                "patient", "prefetch", (ResourceUsed("Patient", patient_id, "4", "2026-02-01T10:00:00Z"),)
            ),
            DataSourceRecord(
                "observations",
                "fetched",
                (ResourceUsed("Observation", "obs-creat", "1", "2026-02-20T08:00:00Z"),),
            ),
            DataSourceRecord("medications", "failed", (), "FHIR server unreachable"),
        ),
        assessment=None
        if error
        else {
            "mds": {"min": 3, "max": 3, "components": {"diuretic": 1, "ppi": 1, "egfr_60_90": 1}},
            "egfr": {"value": 52.0, "source": "computed"},
            "serum_mg": "unknown",
            "deficiency": "unknown",
        },
        cards=(make_card("test-serum-mg"),) if cards is None else cards,
        rule_version="2026.03",
        http_status=http_status,
        latency_ms=41.25,
        error=error,
    )


def make_feedback(
    card_uuid: str,
    outcome: str = "accepted",
    *,
    minutes: int = 1,
    accepted: tuple[str, ...] = (),
    issuer: str | None = "https://ehr.example.org",
    tenant: str | None = "hospital-a",
    service_id: str = "mgcds-patient-view",
    reason: dict[str, str] | None = None,
) -> FeedbackRecord:
    """A feedback record for a card from the EHR make_call's calls come from (overridden: a reason and comment)."""
    overridden = outcome == "overridden"
    return FeedbackRecord(
        occurred_at=BASE_TIME + timedelta(minutes=minutes),
        service_id=service_id,
        card_uuid=card_uuid,
        outcome=outcome,
        accepted_suggestions=accepted,
        override_reason=(reason or OVERRIDE_DECLINED) if overridden else None,
        user_comment="Patient prefers to wait" if overridden else None,
        outcome_timestamp=(BASE_TIME + timedelta(minutes=minutes)).isoformat(),
        issuer=issuer,
        sender="Practitioner/doc-1",
        tenant=tenant,
    )


@contextlib.contextmanager
def postgres_schema() -> Iterator[str]:
    """A fresh schema on the local PostgreSQL (dropped afterwards); yields a URL that writes into it."""
    try:
        import psycopg

        admin = psycopg.connect(PG_ADMIN_URL, connect_timeout=2, autocommit=True)
    except Exception as exc:  # noqa: BLE001 - any failure to connect means: no server here
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL} ({type(exc).__name__}); PostgreSQL tests skipped")
    schema = f"mgcds_test_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
        try:
            yield f"{PG_ADMIN_URL}?options=-csearch_path%3D{schema}"
        finally:
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')

"""Issue 16, B8: a record the store refuses goes to the quarantine with the reason, the rest drain, readiness and
``verify`` say so, and ``mgcds audit redrive`` stores it once the cause is gone. On both backends."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import text

from cds_service.audit.entries import make_entry
from cds_service.audit.quarantine import Quarantine, quarantine_path
from cds_service.audit.records import AuditEventType, call_to_payload, feedback_to_payload
from cds_service.audit.store import SqlAuditStore, init_audit_store
from cds_service.audit.writer import open_audit_writer
from cds_service.cli import main
from cds_service.config import Settings
from tests.unit.audit.helpers import AuditPair, make_call, make_feedback, open_pair

POISON_PATIENT = "poison-patient"


@pytest.fixture
def pair(store_url: str, tmp_path: Path) -> Iterator[AuditPair]:
    """A writer and reader of an initialised store of each backend."""
    log = open_pair(store_url, tmp_path / "spool.jsonl", init=True)
    yield log
    log.close()


def _refuse_patient_in_the_database(store_url: str, patient: str) -> None:
    """A constraint the store itself enforces (not our own column check): it refuses one patient's records."""
    store = SqlAuditStore(store_url)
    with store.engine.begin() as conn:
        if store.backend == "sqlite":
            conn.execute(
                text(
                    "CREATE TRIGGER refuse_poison BEFORE INSERT ON mgcds_audit_records "
                    f"WHEN NEW.patient_id = '{patient}' BEGIN SELECT RAISE(ABORT, 'poison refused'); END"
                )
            )
        else:
            conn.execute(
                text(
                    "ALTER TABLE mgcds_audit_records ADD CONSTRAINT refuse_poison "
                    f"CHECK (patient_id IS NULL OR patient_id <> '{patient}')"
                )
            )
    store.dispose()


def _allow_again(store_url: str) -> None:
    store = SqlAuditStore(store_url)
    with store.engine.begin() as conn:
        if store.backend == "sqlite":
            conn.execute(text("DROP TRIGGER refuse_poison"))
        else:
            conn.execute(text("ALTER TABLE mgcds_audit_records DROP CONSTRAINT refuse_poison"))
    store.dispose()


def test_a_record_the_store_refuses_is_quarantined_and_the_rest_drain_in_order(
    pair: AuditPair, store_url: str, tmp_path: Path
) -> None:
    _refuse_patient_in_the_database(store_url, POISON_PATIENT)
    before = [pair.writer.record_call(make_call(minutes=i)) for i in range(3)]
    poisoned = pair.writer.record_call(make_call(patient_id=POISON_PATIENT, minutes=3))
    after = [pair.writer.record_call(make_call(minutes=i)) for i in range(4, 7)]
    assert pair.writer.flush(timeout=10), "a refused record held up the records behind it"
    assert [r.record_id for r in pair.reader.iter_records()] == [*before, *after]
    assert pair.reader.verify().ok
    [held] = list(Quarantine(quarantine_path(pair.spool_path)).entries())
    assert held.record_id == poisoned
    assert "the store refused it" in held.reason
    assert json.loads(held.line)["patient_id"] == POISON_PATIENT  # the line exactly as spooled
    readiness = {c.name: c for c in pair.writer.readiness().checks}
    assert readiness["quarantine"].status == "degraded"
    assert pair.writer.readiness().status == "degraded"

    _allow_again(store_url)
    assert pair.writer.redrive() == (1, 0)
    assert [r.record_id for r in pair.reader.iter_records()] == [*before, *after, poisoned]
    assert Quarantine(quarantine_path(pair.spool_path)).count() == 0
    assert pair.reader.verify().ok


def test_values_that_do_not_fit_their_column_are_refused_the_same_way_on_every_backend(pair: AuditPair) -> None:
    # What the API now refuses with 400 (issue 16, B8), written straight to the writer: the store must not stall.
    good = pair.writer.record_call(make_call(minutes=0))
    too_long = pair.writer.record_feedback(make_feedback("c" * 100, "overridden"))
    nul = pair.writer.record_call(make_call(patient_id="pat\x00x", minutes=1))
    last = pair.writer.record_call(make_call(minutes=2))
    assert pair.writer.flush(timeout=10)
    assert [r.record_id for r in pair.reader.iter_records()] == [good, last]
    held = {item.record_id: item.reason for item in Quarantine(quarantine_path(pair.spool_path)).entries()}
    assert set(held) == {too_long, nul}
    assert "card_uuid is 100 characters, the column holds 64" in held[too_long]
    assert "patient_id contains a control character" in held[nul]


def test_a_line_that_is_not_a_record_is_quarantined_not_dropped(pair: AuditPair) -> None:
    first = pair.writer.record_call(make_call(minutes=0))
    with pair.spool_path.open("ab") as handle:
        handle.write(b'{"record_id": "torn", "event_type": "service-c\n')
    last = pair.writer.record_call(make_call(minutes=1))
    assert pair.writer.flush(timeout=10)
    assert [r.record_id for r in pair.reader.iter_records()] == [first, last]
    [held] = list(Quarantine(quarantine_path(pair.spool_path)).entries())
    assert held.record_id is None
    assert held.line.startswith('{"record_id": "torn"')
    assert "not a complete audit record" in held.reason


def test_redrive_keeps_what_the_store_still_refuses(pair: AuditPair, store_url: str) -> None:
    _refuse_patient_in_the_database(store_url, POISON_PATIENT)
    poisoned = pair.writer.record_call(make_call(patient_id=POISON_PATIENT))
    assert pair.writer.flush(timeout=10)
    assert pair.writer.redrive() == (0, 1)  # the cause is still there
    [held] = list(Quarantine(quarantine_path(pair.spool_path)).entries())
    assert held.record_id == poisoned
    assert pair.reader.count() == 0


def test_verify_and_the_cli_say_the_chain_is_incomplete_while_records_are_quarantined(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(instance_path=tmp_path / "instance")
    assert main(["audit", "init"], settings=settings) == 0
    _refuse_patient_in_the_database(settings.resolved_audit_url, POISON_PATIENT)
    log = open_audit_writer(settings.resolved_audit_url, settings.resolved_spool_path, asynchronous=False)
    log.record_call(make_call(minutes=0))
    poisoned = log.record_call(make_call(patient_id=POISON_PATIENT, minutes=1))
    log.close()
    capsys.readouterr()
    assert main(["audit", "verify"], settings=settings) == 3
    out = capsys.readouterr()
    assert "chain intact: 1 records" in out.out
    assert "INCOMPLETE: 1 records the store refused are quarantined" in out.err
    assert main(["audit", "quarantine"], settings=settings) == 3
    assert poisoned in capsys.readouterr().out
    assert main(["audit", "redrive"], settings=settings) == 3  # still refused
    _allow_again(settings.resolved_audit_url)
    capsys.readouterr()
    assert main(["audit", "redrive"], settings=settings) == 0
    assert "1 records stored, 0 still refused" in capsys.readouterr().out
    assert main(["audit", "verify"], settings=settings) == 0
    assert "chain intact: 2 records" in capsys.readouterr().out


def test_a_store_outage_is_not_a_refusal(tmp_path: Path) -> None:
    # Unavailable is not refused: nothing is quarantined while the schema is missing; it all waits, then drains.
    url = f"sqlite:///{tmp_path / 'audit.sqlite3'}"
    log = open_audit_writer(url, tmp_path / "spool.jsonl", asynchronous=False)
    ids = [log.record_call(make_call(minutes=i)) for i in range(3)]
    assert log.quarantine is not None
    assert log.quarantine.count() == 0
    assert log.has_pending()
    init_audit_store(url)
    assert log.flush(timeout=10)
    log.close()
    store = SqlAuditStore(url)
    assert [r.record_id for r in store.iter_records()] == ids
    store.dispose()


def test_a_malformed_payload_is_refused_before_the_database(pair: AuditPair) -> None:
    call = make_call()
    payload = call_to_payload(call)
    payload["cards"] = [{"summary": "no uuid"}]
    broken = make_entry(AuditEventType.SERVICE_CALL, payload)
    fine = make_entry(AuditEventType.FEEDBACK, feedback_to_payload(replace(make_feedback("card-x"))))
    outcome = pair.writer.store.append([broken, fine])
    assert outcome.stored == 1
    [(entry, reason)] = outcome.refused
    assert entry.record_id == broken.record_id
    assert reason.startswith("malformed audit record: KeyError")

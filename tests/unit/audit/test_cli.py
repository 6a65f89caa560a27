"""``mgcds audit ...``: init, verify (exit codes, first broken link), replay, list filters, show, export; the
read-only commands leave the store and the spool as they found them."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fhir.resources.R4B.auditevent import AuditEvent
from sqlalchemy import text

from cds_service.audit.entries import make_entry
from cds_service.audit.records import AuditEventType, SuppressedRecord, call_to_payload
from cds_service.audit.spool import Spool
from cds_service.audit.store import SqlAuditStore
from cds_service.audit.writer import open_audit_writer
from cds_service.cli import main
from cds_service.config import Settings
from tests.unit.audit.helpers import make_call, make_card, make_feedback


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings with the default SQLite store in a temporary instance folder."""
    return Settings(instance_path=tmp_path / "instance")


@pytest.fixture
def filled(settings: Settings) -> dict[str, str]:
    """An initialised store with two calls and one overridden card."""
    assert main(["audit", "init"], settings=settings) == 0
    log = open_audit_writer(settings.resolved_audit_url, settings.resolved_spool_path, asynchronous=False)
    a = make_call(patient_id="pat-A", cards=(make_card("supplement-organic", indicator="warning"),))
    b = make_call(patient_id="pat-B", minutes=5)
    ids = {"a": log.record_call(a), "b": log.record_call(b)}
    ids["fb"] = log.record_feedback(make_feedback(a.cards[0].uuid, "overridden"))
    log.close()
    return ids


def test_verify_before_init_fails_with_store_error(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "verify"], settings=settings) == 2
    assert "audit verify failed" in capsys.readouterr().err


def test_init_then_verify(filled: dict[str, str], settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "verify"], settings=settings) == 0
    assert "chain intact: 3 records" in capsys.readouterr().out


def test_verify_names_the_first_broken_link(
    filled: dict[str, str], settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    store = SqlAuditStore(settings.resolved_audit_url)
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE mgcds_audit_records SET payload = REPLACE(payload, 'pat-B', 'pat-Z') WHERE seq = 2"))
    store.close()
    assert main(["audit", "verify"], settings=settings) == 1
    err = capsys.readouterr().err
    assert f"record #2 ({filled['b']})" in err
    assert "edited" in err


def test_replay_stores_what_the_spool_holds(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    log = open_audit_writer(settings.resolved_audit_url, settings.resolved_spool_path, asynchronous=False)
    log.record_call(make_call())  # no schema yet: stays in the spool
    log.close()
    assert main(["audit", "replay"], settings=settings) == 2
    assert main(["audit", "init"], settings=settings) == 0
    assert main(["audit", "replay"], settings=settings) == 0
    assert "replayed 1 records" in capsys.readouterr().out
    assert main(["audit", "replay"], settings=settings) == 0
    assert "replayed 0 records" in capsys.readouterr().out


def _list(settings: Settings, capsys: pytest.CaptureFixture[str], *args: str) -> list[str]:
    capsys.readouterr()
    assert main(["audit", "list", "--json", *args], settings=settings) == 0
    return [c["record_id"] for c in json.loads(capsys.readouterr().out)["calls"]]


def test_list_filters(filled: dict[str, str], settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert _list(settings, capsys) == [filled["b"], filled["a"]]
    assert _list(settings, capsys, "--patient", "pat-A") == [filled["a"]]
    assert _list(settings, capsys, "--user", "Practitioner/doc-1") == [filled["b"], filled["a"]]
    assert _list(settings, capsys, "--user", "Practitioner/other") == []
    assert _list(settings, capsys, "--recommendation", "test-serum-mg") == [filled["b"]]
    assert _list(settings, capsys, "--outcome", "overridden") == [filled["a"]]
    assert _list(settings, capsys, "--outcome", "none") == [filled["b"]]
    assert _list(settings, capsys, "--since", "2026-03-01T09:33:00Z") == [filled["b"]]
    assert _list(settings, capsys, "--until", "2026-03-01T09:31:00Z") == [filled["a"]]
    assert _list(settings, capsys, "--until", "2026-02-28") == []
    assert main(["audit", "list"], settings=settings) == 0
    assert "2 of 2 calls" in capsys.readouterr().out


def test_list_json_shows_cards_and_feedback(
    filled: dict[str, str], settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["audit", "list", "--json", "--patient", "pat-A"], settings=settings) == 0
    call = json.loads(capsys.readouterr().out)["calls"][0]
    assert call["cards"][0]["recommendation"] == "supplement-organic"
    assert call["feedback"][0]["outcome"] == "overridden"
    assert call["feedback"][0]["override_reason"]["code"] == "patient-declined"


def test_list_by_hook_instance_and_json_names_it(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "init"], settings=settings) == 0
    log = open_audit_writer(settings.resolved_audit_url, settings.resolved_spool_path, asynchronous=False)
    first, second = make_call(patient_id="pat-A"), make_call(patient_id="pat-A", minutes=1)
    ids = [log.record_call(first), log.record_call(second)]
    log.close()
    assert first.hook_instance
    assert first.hook_instance != second.hook_instance
    assert _list(settings, capsys, "--hook-instance", first.hook_instance) == [ids[0]]
    assert _list(settings, capsys, "--hook-instance", "no-such-instance") == []
    assert main(["audit", "list", "--json"], settings=settings) == 0
    listed = json.loads(capsys.readouterr().out)["calls"]
    assert [call["hook_instance"] for call in listed] == [second.hook_instance, first.hook_instance]


@pytest.mark.parametrize(
    "args", [["--limit", "0"], ["--limit", "10" * 15], ["--offset", "-1"], ["--offset", str(10**30)]]
)
def test_list_refuses_out_of_range_paging(
    filled: dict[str, str], settings: Settings, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["audit", "list", *args], settings=settings)
    assert exited.value.code == 2  # argparse's usage error, with the reason
    assert "must be from" in capsys.readouterr().err


def test_show(filled: dict[str, str], settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "show", filled["a"]], settings=settings) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["seq"] == 1
    assert shown["payload"]["patient_id"] == "pat-A"
    assert shown["feedback"][0]["outcome"] == "overridden"
    assert shown["feedback"][0]["record_id"] == filled["fb"]
    assert shown["suppressed"] == []
    assert main(["audit", "show", filled["fb"]], settings=settings) == 0
    feedback = json.loads(capsys.readouterr().out)
    assert (feedback["linked_record_id"], feedback["sealed_link"]) == (filled["a"], filled["a"])
    assert "suppressed" not in feedback  # only calls list what they did not show
    assert main(["audit", "show", "nope"], settings=settings) == 1


def test_show_lists_what_a_call_did_not_show(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "init"], settings=settings) == 0
    log = open_audit_writer(settings.resolved_audit_url, settings.resolved_spool_path, asynchronous=False)
    until = datetime(2026, 8, 28, 9, 31, tzinfo=UTC)
    suppressed = SuppressedRecord("supplement-organic", "fb-record", "overridden", "patient-declined", until)
    record_id = log.record_call(replace(make_call(), suppressed=(suppressed,)))
    log.close()
    capsys.readouterr()
    assert main(["audit", "show", record_id], settings=settings) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["suppressed"] == [
        {
            "code": "supplement-organic",
            "feedback_record_id": "fb-record",
            "outcome": "overridden",
            "reason": "patient-declined",
            "until": "2026-08-28T09:31:00.000000Z",
        }
    ]


def test_export_fhir_is_valid_r4_audit_events(filled: dict[str, str], settings: Settings, tmp_path: Path) -> None:
    out = tmp_path / "audit.ndjson"
    assert main(["audit", "export", "--format", "fhir", "--output", str(out)], settings=settings) == 0
    events = [json.loads(line) for line in out.read_text().splitlines()]
    assert [e["id"] for e in events] == [filled["a"], filled["b"], filled["fb"]]
    for event in events:
        AuditEvent.model_validate(event)
    call = events[0]
    assert call["action"] == "E"
    assert call["outcome"] == "0"
    patient = [e for e in call["entity"] if e.get("role", {}).get("code") == "1"]
    assert patient[0]["what"] == {"reference": "Patient/pat-A"}
    assert patient[0]["role"]["system"] == "http://terminology.hl7.org/CodeSystem/object-role"
    user = [a for a in call["agent"] if a["requestor"]]
    assert user[0]["who"] == {"reference": "Practitioner/doc-1"}
    assert user[0]["type"]["coding"][0]["code"] == "IRCP"
    roles = {a["type"]["coding"][0]["code"] for a in call["agent"]}
    assert {"110153", "110152"} <= roles
    versions = [e["what"].get("reference") for e in call["entity"]]
    assert "Observation/obs-creat/_history/1" in versions
    feedback = events[2]
    assert feedback["entity"][0]["what"] == {"reference": "Patient/pat-A"}  # via the linked call
    details = {d["type"]: d["valueString"] for d in feedback["entity"][-1]["detail"]}
    assert details["linkedRecordId"] == filled["a"]
    assert details["outcome"] == "overridden"


def test_export_failed_call_has_minor_failure_outcome(settings: Settings, tmp_path: Path) -> None:
    assert main(["audit", "init"], settings=settings) == 0
    log = open_audit_writer(settings.resolved_audit_url, settings.resolved_spool_path, asynchronous=False)
    log.record_call(make_call(cards=(), http_status=412, error="prefetch_unobtainable"))
    log.close()
    out = tmp_path / "audit.ndjson"
    assert main(["audit", "export", "--format", "fhir", "-o", str(out)], settings=settings) == 0
    event = json.loads(out.read_text())
    assert (event["outcome"], event["outcomeDesc"]) == ("4", "prefetch_unobtainable")


def test_export_csv(filled: dict[str, str], settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "export", "--format", "csv"], settings=settings) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["record_id"] for r in rows] == [filled["a"], filled["b"], filled["fb"]]
    assert rows[0]["patient_id"] == "pat-A"
    assert rows[0]["recommendations"] == "supplement-organic"
    assert rows[2]["outcome"] == "overridden"
    assert rows[2]["override_reason_code"] == "patient-declined"
    assert rows[2]["linked_record_id"] == filled["a"]


def test_csv_neutralises_spreadsheet_formulas(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "init"], settings=settings) == 0
    log = open_audit_writer(settings.resolved_audit_url, settings.resolved_spool_path, asynchronous=False)
    log.record_call(make_call(patient_id='=HYPERLINK("http://x")'))
    log.close()
    capsys.readouterr()
    assert main(["audit", "export", "--format", "csv"], settings=settings) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert rows[0]["patient_id"].startswith("'=")


READ_ONLY_COMMANDS = [
    ["audit", "verify"],
    ["audit", "list"],
    ["audit", "list", "--json"],
    ["audit", "show", "0" * 32],
    ["audit", "export", "--format", "fhir"],
    ["audit", "export", "--format", "csv"],
]


@pytest.mark.parametrize("argv", READ_ONLY_COMMANDS, ids=[" ".join(argv[1:3]) for argv in READ_ONLY_COMMANDS])
def test_read_only_commands_leave_the_spool_and_the_store_alone(
    filled: dict[str, str], settings: Settings, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # A record waiting in the spool (the service's writer had not drained it yet): reading the log must not store it.
    # Only `audit replay`, or the service's own writer, moves records into the store.
    waiting = make_entry(AuditEventType.SERVICE_CALL, call_to_payload(make_call(patient_id="pat-waiting")))
    spool = Spool(settings.resolved_spool_path)
    spool.append(waiting.payload_text)
    main(argv, settings=settings)
    capsys.readouterr()
    assert spool.pending_count() == 1
    store = SqlAuditStore(settings.resolved_audit_url)
    try:
        assert store.count() == 3  # the two calls and the feedback of `filled`
        assert store.get(waiting.record_id) is None
    finally:
        store.close()
    assert main(["audit", "replay"], settings=settings) == 0
    assert "replayed 1 records" in capsys.readouterr().out


def test_the_readers_connection_cannot_write(filled: dict[str, str], settings: Settings) -> None:
    from sqlalchemy.exc import OperationalError

    from cds_service.audit.sqlread import SqlAuditReader
    from cds_service.factory import build_audit_reader

    reader = build_audit_reader(settings)
    assert isinstance(reader, SqlAuditReader)
    try:
        with pytest.raises(OperationalError, match="readonly"), reader.engine.begin() as conn:
            conn.execute(text("DELETE FROM mgcds_audit_records"))
    finally:
        reader.close()
    assert main(["audit", "verify"], settings=settings) == 0


def test_verify_of_a_store_that_does_not_exist_creates_no_file(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["audit", "verify"], settings=settings) == 2
    assert not (settings.instance_path / "audit.sqlite3").exists()

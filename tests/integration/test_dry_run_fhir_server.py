"""`mgcds dry-run --fhir-server` against the real test FHIR server, and through SMART Backend Services.

Both sides are computed here: the dry run's per-patient recommendations and those `mgcds evaluate --fhir-server`
gives for each patient at the same ``--now``. The SMART checks run against the real authorization server
(oidc-provider) and the gateway that refuses any request without one of its tokens (``smart_stack``).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from cds_service.cli import main
from cds_service.config import Settings
from cds_service.fhir.smart import DEFAULT_SCOPE
from cds_service.fhir.smart_keys import load_signing_key, public_jwks
from tests.integration.conftest import FhirTestServer
from tests.integration.smart_stack import SmartStack, serving_jwks, start_smart_stack

pytestmark = pytest.mark.integration

NOW = "2026-11-21T12:00:00Z"
CLIENT = "mgcds-dry-run"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(dev=True, instance_path=tmp_path / "instance")


def run_cli(argv: list[str], settings: Settings, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = main(argv, settings=settings)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def evaluate_codes(
    server: list[str], patient: str, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> list[str]:
    """The card codes `mgcds evaluate --fhir-server ... --patient ID --json` prints."""
    status, out, err = run_cli(["evaluate", *server, "--patient", patient, "--now", NOW, "--json"], settings, capsys)
    assert status == 0, err
    return [card["extension"]["org.mgcds.recommendation"] for card in json.loads(out)["cards"]]


def dry_run_codes(
    argv: list[str], tmp_path: Path, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> tuple[dict[str, list[str]], dict[str, object]]:
    csv_path = tmp_path / "server.csv"
    status, out, err = run_cli(["dry-run", *argv, "--now", NOW, "--json", "--csv", str(csv_path)], settings, capsys)
    assert status == 0, err
    with csv_path.open(encoding="utf-8", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert all(row["status"] == "evaluated" for row in rows), rows
    return {row["patient_id"]: row["recommendations"].split() for row in rows}, json.loads(out)


def test_named_patients_get_what_evaluate_gives(
    fhir_server: FhirTestServer,
    hand_written_patients: dict[str, str],
    tmp_path: Path,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = ["--fhir-server", fhir_server.base_url, "--token", fhir_server.token]
    ids = list(hand_written_patients.values())
    dry, summary = dry_run_codes([*server, "--patient", *ids, "--workers", "2"], tmp_path, settings, capsys)
    assert set(dry) == set(ids)
    assert summary["input"] == {"kind": "fhir-server", "fhir_server": fhir_server.base_url, "smart": False}
    assert dry == {pid: evaluate_codes(server, pid, settings, capsys) for pid in ids}
    assert any(dry.values())


def test_a_patient_search_gets_what_evaluate_gives(
    fhir_server: FhirTestServer,
    hand_written_patients: dict[str, str],
    tmp_path: Path,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = ["--fhir-server", fhir_server.base_url, "--token", fhir_server.token]
    # Hand-written p01 and p03 are the male patients born 1956 and 1960 (tests/data/patients/README.md).
    dry, _summary = dry_run_codes(
        [*server, "--patient-search", "gender=male&birthdate=ge1955-01-01&birthdate=le1961-01-01", "--limit", "5"],
        tmp_path,
        settings,
        capsys,
    )
    expected_ids = {
        hand_written_patients["p01-severe-low-urgent.json"],
        hand_written_patients["p03-pending-serum-order.json"],
    }
    assert expected_ids <= set(dry)
    assert dry == {pid: evaluate_codes(server, pid, settings, capsys) for pid in dry}


def test_a_server_that_refuses_the_token_skips_every_patient_with_the_reason(
    fhir_server: FhirTestServer,
    hand_written_patients: dict[str, str],
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pid = hand_written_patients["p01-severe-low-urgent.json"]
    argv = [
        "dry-run",
        "--fhir-server",
        fhir_server.base_url,
        "--token",
        "wrong",
        "--patient",
        pid,
        "--now",
        NOW,
        "--json",
    ]
    status, out, err = run_cli(argv, settings, capsys)
    assert status == 1  # nobody could be evaluated
    summary = json.loads(out)
    assert summary["patients"]["skipped"] == 1
    (reason,) = summary["skipped"]["by_reason"]
    assert reason.startswith("cannot evaluate")
    assert "wrong" not in out + err  # the token is never echoed


# -- SMART Backend Services ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def smart_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("dry-run-smart") / "client.pem"
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return path


@pytest.fixture(scope="module")
def stack(
    fhir_server: FhirTestServer, smart_key: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SmartStack]:
    """The authorization server and the token-checking gateway, with one client allowed all the service reads."""
    jwks = public_jwks(load_signing_key(smart_key, "dry-1"))
    with serving_jwks({"/jwks.json": jwks}) as jwks_base:
        clients = [{"client_id": CLIENT, "alg": "RS384", "jwks_uri": f"{jwks_base}/jwks.json", "scope": DEFAULT_SCOPE}]
        running = start_smart_stack(fhir_server, clients, tmp_path_factory.mktemp("dry-run-stack"))
        try:
            yield running
        finally:
            running.stop()


def _smart_flags(smart_key: Path) -> list[str]:
    return ["--smart-client-id", CLIENT, "--smart-key", str(smart_key), "--smart-kid", "dry-1"]


def test_evaluate_reads_a_patient_through_the_authorization_server(
    stack: SmartStack,
    fhir_server: FhirTestServer,
    hand_written_patients: dict[str, str],
    smart_key: Path,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pid = hand_written_patients["p01-severe-low-urgent.json"]
    argv = ["evaluate", "--fhir-server", stack.fhir_base, "--patient", pid, "--now", NOW, "--json"]
    # Without a token the gateway refuses: the Patient cannot be read.
    status, _out, err = run_cli(argv, settings, capsys)
    assert status == 1
    assert "cannot evaluate" in err
    before = stack.stats()
    status, out, err = run_cli([*argv, *_smart_flags(smart_key)], settings, capsys)
    assert status == 0, err
    after = stack.stats()
    assert after["tokens_issued"] > before["tokens_issued"]
    assert after["fhir_forwarded"] - before["fhir_forwarded"] >= 6  # the Patient and the five searches
    assert after["fhir_401"] == before["fhir_401"]
    through_smart = json.loads(out)
    # The same patient read straight from the upstream server with its own static token: the same answer.
    direct = ["evaluate", "--fhir-server", fhir_server.base_url, "--token", fhir_server.token, "--patient", pid]
    status, out, err = run_cli([*direct, "--now", NOW, "--json"], settings, capsys)
    assert status == 0, err
    expected = json.loads(out)
    assert through_smart["assessment"]["serum_mg"]["evidence"]  # the Observation was read through the gateway
    assert through_smart["assessment"]["recommendations"] == expected["assessment"]["recommendations"]
    assert through_smart["assessment"]["notes"] == expected["assessment"]["notes"]


def test_dry_run_reads_patients_through_the_authorization_server(
    stack: SmartStack,
    fhir_server: FhirTestServer,
    hand_written_patients: dict[str, str],
    smart_key: Path,
    tmp_path: Path,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ids = list(hand_written_patients.values())
    before = stack.stats()
    dry, summary = dry_run_codes(
        ["--fhir-server", stack.fhir_base, "--patient", *ids, "--workers", "2", *_smart_flags(smart_key)],
        tmp_path,
        settings,
        capsys,
    )
    assert summary["input"]["smart"] is True
    assert stack.stats()["fhir_401"] == before["fhir_401"]
    direct = ["--fhir-server", fhir_server.base_url, "--token", fhir_server.token]
    assert dry == {pid: evaluate_codes(direct, pid, settings, capsys) for pid in ids}


def test_invoke_and_dry_run_refuse_smart_flags_without_a_fhir_server(
    smart_key: Path, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _out, err = run_cli(
        ["invoke", "--service-url", "http://127.0.0.1:9", "--patient", "x", *_smart_flags(smart_key)], settings, capsys
    )
    assert status == 1
    assert "need --fhir-server" in err
    status, _out, err = run_cli(["dry-run", "--bundle", "x.json", *_smart_flags(smart_key)], settings, capsys)
    assert status == 1
    assert "need --fhir-server" in err

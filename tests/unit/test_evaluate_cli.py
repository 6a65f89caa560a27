"""`mgcds evaluate` tells a user who gave the wrong kind of file which option reads it."""

from __future__ import annotations

from pathlib import Path

import pytest

from cds_service.cli import main

PATIENTS = Path(__file__).resolve().parents[1] / "data" / "patients"


def test_a_bundle_given_as_request_names_the_bundle_option(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["evaluate", "--request", str(PATIENTS / "p01-severe-low-urgent.json")])
    err = capsys.readouterr().err
    assert status != 0
    assert "FHIR Bundle, not a CDS Hooks request" in err
    assert "--bundle" in err


def test_the_same_file_given_as_bundle_is_evaluated(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["evaluate", "--bundle", str(PATIENTS / "p01-severe-low-urgent.json"), "--json"])
    assert status == 0
    assert '"cards"' in capsys.readouterr().out

"""`mgcds serve --dev` says whether callers are authenticated, and is right about it (issue 18, item 4)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from cds_service.cli import main
from cds_service.config import Settings
from tests.support.security import SigningKey, jwks_of, write_registry


@pytest.fixture
def no_gunicorn(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Stop `serve` right before gunicorn would start; record that it got there."""
    from gunicorn.app.base import BaseApplication

    started: list[str] = []
    monkeypatch.setattr(BaseApplication, "run", lambda self: started.append("run"))
    return started


def _serve(settings: Settings, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["serve", "--dev", "--port", "0"], settings=settings) == 0
    return capsys.readouterr().err


def test_dev_without_a_registry_says_callers_are_not_authenticated(
    tmp_path: Path, no_gunicorn: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    err = _serve(Settings(instance_path=tmp_path / "i"), capsys)
    assert no_gunicorn == ["run"]
    assert "callers are NOT authenticated" in err


def test_dev_with_a_registry_does_not_claim_callers_are_unauthenticated(
    tmp_path: Path, no_gunicorn: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    key = SigningKey(ec.generate_private_key(ec.SECP384R1()), "k1", "ES384")
    registry = write_registry(tmp_path / "reg", {"https://ehr.example.org": {}}, jwks_of(key))
    err = _serve(Settings(instance_path=tmp_path / "i", trusted_issuers=registry), capsys)
    assert no_gunicorn == ["run"]
    assert "NOT authenticated" not in err
    assert "callers ARE authenticated" in err
    assert "DEVELOPMENT MODE" in err

"""`mgcds serve --dev` says whether callers are authenticated, and is right about it (issue 18, item 4)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask

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


# --- the one-time review link of --dev (issue 18 item 3) ------------------------------------------------------


class Workers:
    """What gunicorn would have forked workers from, and the worker apps built from it (closed at the end)."""

    def __init__(self) -> None:
        self.applications: list[Any] = []
        self.apps: list[Flask] = []

    def load(self) -> Flask:
        """A worker's app: what gunicorn's load() builds in each worker, from the settings the master made."""
        app: Flask = self.applications[-1].load()
        self.apps.append(app)
        return app


@pytest.fixture
def workers(monkeypatch: pytest.MonkeyPatch) -> Iterator[Workers]:
    """Stop `serve` before gunicorn runs; keep the application gunicorn would have forked workers from."""
    from gunicorn.app.base import BaseApplication

    kept = Workers()
    monkeypatch.setattr(BaseApplication, "run", lambda self: kept.applications.append(self))
    yield kept
    for app in kept.apps:
        app.extensions["mgcds.runtime"].close()


# The link's own tests: the budget of credential checks is tested in tests/functional/test_review_throttle.py.
LOOSE = {"reviewer_auth_client_limit": "1000/second", "reviewer_auth_global_limit": "1000/second"}


def _link(err: str) -> str:
    found = re.search(r"http://127\.0\.0\.1:0(/audit/dev-login\?token=[A-Za-z0-9_-]{43})\n", err)
    assert found is not None, err
    return found.group(1)


def test_dev_prints_a_one_time_link_that_works_once_across_workers(
    tmp_path: Path, workers: Workers, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(instance_path=tmp_path / "i", audit_url=f"sqlite:///{tmp_path / 'audit.sqlite3'}", **LOOSE)
    assert main(["audit", "init"], settings=settings) == 0
    link = _link(_serve(settings, capsys))
    # Two workers, each building its app from the settings the master made (what gunicorn's load() does).
    first, second = (workers.load().test_client() for _ in range(2))
    assert first.get("/audit/").status_code == 401  # nothing opens it without the link
    opened = first.get(link)
    assert opened.status_code == 303
    assert opened.headers["Location"] == "/audit/"
    assert opened.headers["Cache-Control"] == "no-store"
    cookie = opened.headers["Set-Cookie"]
    for attribute in ("HttpOnly", "SameSite=Strict", "Path=/audit"):
        assert attribute in cookie
    assert "token=" not in cookie
    assert first.get("/audit/").status_code == 200  # the session cookie opens the page
    assert second.get(link).status_code == 403  # used up, in the other worker too
    assert "already used" in second.get(link).get_data(as_text=True)
    session = cookie.split(";")[0].split("=", 1)
    second.set_cookie(session[0], session[1], path="/audit")
    assert second.get("/audit/").status_code == 200  # and the other worker knows the session
    stranger = workers.load().test_client()
    assert stranger.get(link.replace("token=", "token=x")).status_code == 401  # a guess at the token
    assert stranger.get("/audit/").status_code == 401


def test_each_dev_start_makes_a_new_link_and_the_old_one_dies(
    tmp_path: Path, workers: Workers, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(instance_path=tmp_path / "i", **LOOSE)
    old = _link(_serve(settings, capsys))
    new = _link(_serve(settings, capsys))
    assert old != new
    app = workers.load().test_client()
    assert app.get(old).status_code == 401
    assert app.get(new).status_code == 303


def test_without_dev_there_is_no_link_whatever_is_set(tmp_path: Path) -> None:
    from cds_service import create_app

    # A token in the settings (as only `serve --dev` makes them) does nothing unless dev mode is on.
    key = SigningKey(ec.generate_private_key(ec.SECP384R1()), "k1", "ES384")
    registry = write_registry(tmp_path / "reg", {"https://ehr.example.org": {}}, jwks_of(key))
    settings = Settings(instance_path=tmp_path / "i", trusted_issuers=registry, dev_review_token="t" * 43)
    (tmp_path / "i").mkdir()
    from cds_service.api.review_auth import dev_marker_path

    dev_marker_path(tmp_path / "i", "t" * 43).touch()
    app = create_app(settings)
    client = app.test_client()
    assert client.get(f"/audit/dev-login?token={'t' * 43}").status_code == 404
    assert client.get("/audit/").status_code == 401
    assert dev_marker_path(tmp_path / "i", "t" * 43).exists()
    app.extensions["mgcds.runtime"].close()


def test_serve_without_dev_prints_no_link(tmp_path: Path, workers: Workers, capsys: pytest.CaptureFixture[str]) -> None:
    key = SigningKey(ec.generate_private_key(ec.SECP384R1()), "k1", "ES384")
    registry = write_registry(tmp_path / "reg", {"https://ehr.example.org": {}}, jwks_of(key))
    assert (
        main(["serve", "--port", "0"], settings=Settings(instance_path=tmp_path / "i", trusted_issuers=registry)) == 0
    )
    assert "dev-login" not in capsys.readouterr().err
    assert workers.load().extensions["mgcds.settings"].dev_review_token == ""

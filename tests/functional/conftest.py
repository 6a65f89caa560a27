"""Fixtures for HTTP tests through the Flask test client: a development-mode app with a real SQLite audit log."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from cds_service import create_app
from cds_service.config import Settings
from tests.conftest import PROJECT_ROOT
from tests.support.cards import strip_ids as strip_ids
from tests.support.fhir_peer import FhirPeer, running_peer

# The examples are written for this moment (examples/README.md).
EXAMPLE_NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
EXAMPLES = PROJECT_ROOT / "examples"


def load_example(name: str) -> dict[str, Any]:
    """A fresh copy of an example request."""
    data: dict[str, Any] = json.loads((EXAMPLES / name).read_text())
    return copy.deepcopy(data)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Development-mode settings with the instance folder in a temporary directory."""
    return Settings(dev=True, instance_path=tmp_path / "instance", public_base_url="http://localhost")


@pytest.fixture
def app(settings: Settings) -> Iterator[Flask]:
    """The app, as `mgcds serve --dev` builds it, with a fixed clock."""
    application = create_app(settings, clock=lambda: EXAMPLE_NOW)
    yield application
    application.extensions["mgcds.runtime"].close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A test client of the app."""
    return app.test_client()


@pytest.fixture
def fhir_peer() -> Iterator[FhirPeer]:
    """A fake FHIR server on loopback (real HTTP) for fallback, status and paging cases."""
    with running_peer() as peer:
        yield peer


def assert_no_null_or_empty(value: Any, path: str = "$") -> None:
    """CDS Hooks 2.0: JSON elements SHALL NOT be null or empty (except the empty cards array)."""
    if value is None:
        raise AssertionError(f"{path} is null")
    if isinstance(value, dict):
        assert value, f"{path} is an empty object"
        for key, item in value.items():
            assert_no_null_or_empty(item, f"{path}.{key}")
    elif isinstance(value, list):
        assert value or path == "$.cards", f"{path} is an empty array"
        for index, item in enumerate(value):
            assert_no_null_or_empty(item, f"{path}[{index}]")
    elif isinstance(value, str):
        assert value != "", f"{path} is an empty string"

"""Fixtures of the audit tests: a store URL for each backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.audit.helpers import postgres_schema


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty, not yet initialised store of each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'instance' / 'audit.sqlite3'}"
    else:
        with postgres_schema() as url:
            yield url

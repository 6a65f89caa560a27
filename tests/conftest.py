"""Shared test fixtures: locating ../shared, fixture data, settings for a test app."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = PROJECT_ROOT.parent / "shared"
DATA_DIR = PROJECT_ROOT / "tests" / "data"


def shared_path(*parts: str) -> Path:
    """A path under ../shared, skipping the calling test with a clear reason when ../shared is absent."""
    path = SHARED_DIR.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not found: ../shared (the project's shared folder) is not beside this checkout")
    return path


def load_json(path: Path) -> Any:
    """Read a JSON file."""
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture
def data_dir() -> Path:
    """tests/data: the project's own fixtures."""
    return DATA_DIR

"""Cheap, pure imports (issue 13, defect 5): the engine and the terminology load no web framework, HTTP client,
cache or database, at run time and not only per file (ruff's banned-api checks the files).

Each import runs in a fresh interpreter, so what other tests imported cannot hide a heavy import. Before this was
fixed, ``import cds_service.engine`` loaded Flask through ``cds_service/__init__.py`` and ``import terminology``
loaded requests and cachetools through ``terminology/remote.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import PROJECT_ROOT

HEAVY = ("flask", "werkzeug", "requests", "urllib3", "cachetools", "sqlalchemy", "psycopg", "jwt")

PROBE = """
import importlib, json, sys
importlib.import_module(sys.argv[1])
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""


def loaded_by(module: str) -> set[str]:
    """The top-level packages a fresh interpreter holds after importing ``module``."""
    completed = subprocess.run(
        [sys.executable, "-c", PROBE, module], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
    )
    return set(json.loads(completed.stdout))


@pytest.mark.parametrize(
    ("module", "banned"),
    [
        ("cds_service.engine", HEAVY),
        ("terminology", HEAVY),
        ("cds_service", HEAVY),
        # The seams and the plain types they name: importing an interface pulls in no implementation.
        ("cds_service.interfaces", HEAVY),
        ("cds_service.audit.records", HEAVY),
        ("cds_service.audit.model", HEAVY),
        ("cds_service.audit.chain", HEAVY),
        ("cds_service.config", HEAVY),
        ("cds_service.errors", HEAVY),
        # The CLI's parser: `mgcds --help` does not start the web stack.
        ("cds_service.cli", ("flask", "werkzeug", "sqlalchemy", "gunicorn")),
    ],
)
def test_import_loads_nothing_heavy(module: str, banned: tuple[str, ...]) -> None:
    assert loaded_by(module).isdisjoint(banned), sorted(loaded_by(module) & set(banned))


def test_the_probe_does_see_heavy_imports() -> None:
    # The check above can fail: the implementations behind the seams do load them.
    assert "sqlalchemy" in loaded_by("cds_service.audit.store")
    assert {"requests", "cachetools"} <= loaded_by("cds_service.fhir.client")

"""docs/conformance.md lists every Service requirement of the CDS Hooks 2.0 CSV, and the tests it names exist."""

from __future__ import annotations

import csv
import re

from tests.conftest import PROJECT_ROOT, shared_path

DOC = PROJECT_ROOT / "docs" / "conformance.md"


def _table() -> dict[str, str]:
    rows: dict[str, str] = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        if len(cells) == 5 and cells[0].isdigit():
            rows[cells[0]] = cells[4]
    return rows


def test_every_service_row_is_in_the_table() -> None:
    with shared_path("reference", "cds-hooks-2.0-requirements.csv").open(newline="", encoding="utf-8") as handle:
        wanted = {row["id"] for row in csv.DictReader(handle) if "Service" in row["actors"]}
    assert set(_table()) == wanted


def test_every_named_test_file_exists() -> None:
    for requirement, covered_by in _table().items():
        if covered_by.startswith("n/a:"):
            continue
        path = covered_by.split("::")[0].split(" ")[0]
        assert (PROJECT_ROOT / path).exists(), f"requirement {requirement}: {path} does not exist"
        if "::" in covered_by:
            name = covered_by.split("::")[1].split(" ")[0]
            source = (PROJECT_ROOT / path).read_text(encoding="utf-8")
            assert f"def {name}(" in source, f"requirement {requirement}: {name} is not in {path}"

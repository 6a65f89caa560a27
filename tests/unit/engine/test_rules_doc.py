"""docs/clinical-rules.md is kept in step with the engine: codes, categories and thresholds, both ways.

Every recommendation code and category named in the doc's tables exists in the code with that value, and every
member of those vocabularies is named there; every row of the "Thresholds" table names a constant that holds exactly
that value, and every numeric constant of the engine is in that table or is an equation coefficient or point that the
doc's formulas spell out (listed below, each checked to appear among the doc's numbers).
"""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

import pytest

from cds_service.engine import vocabulary
from cds_service.engine.settings import ClinicalSettings
from cds_service.engine.vocabulary import (
    IONIZED_CATEGORIES,
    Deficiency,
    FemgInterpretation,
    MagnesiumCategory,
    MagnesiumProductKind,
    MdsGroup,
    RecommendationCode,
    Scope,
)

ROOT = Path(__file__).resolve().parents[3]
DOC = (ROOT / "docs" / "clinical-rules.md").read_text(encoding="utf-8")
ENGINE = ROOT / "cds_service" / "engine"

# Rows whose constant is defined outside the engine modules the test reads (none since suppression landed).
DEFINED_BY_A_LATER_TASK: set[str] = set()
# Numeric constants that are equation coefficients or points, not thresholds: the doc writes them in its formulas
# (CKD-EPI 2021, FEMg, AUDIT-C, the MDS table), and each value must appear among the doc's numbers.
COEFFICIENTS = {
    "CKD_EPI_2021_MULTIPLIER",
    "KAPPA_FEMALE",
    "KAPPA_MALE",
    "ALPHA_FEMALE",
    "ALPHA_MALE",
    "EXPONENT_ABOVE_KAPPA",
    "AGE_BASE",
    "FEMALE_FACTOR",
    "FILTERABLE_FRACTION",
    "DAYS_PER_WEEK",
    "DIURETIC_POINTS",
    "PPI_POINTS",
    "HEAVY_DRINKING_POINTS",
    "MDS_MAX",
}
NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def _section(title: str) -> str:
    start = DOC.index(f"\n## {title}\n")
    end = DOC.find("\n## ", start + 1)
    return DOC[start : end if end != -1 else len(DOC)]


def _table_first_column(header_first_cell: str) -> list[set[str]]:
    """The backticked tokens of the first column of every table whose header's first cell is ``header_first_cell``."""
    tables: list[set[str]] = []
    lines = DOC.splitlines()
    for i, line in enumerate(lines):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("|") or cells[0] != header_first_cell:
            continue
        tokens: set[str] = set()
        for row in lines[i + 2 :]:
            if not row.startswith("|"):
                break
            tokens.update(re.findall(r"`([^`]+)`", row.strip().strip("|").split("|")[0]))
        tables.append(tokens)
    return tables


def _tokens_after(marker: str, until: str = "\n\n") -> set[str]:
    """The category-shaped (lower-case, hyphenated) backticked tokens of the paragraph starting at ``marker``."""
    start = DOC.index(marker)
    return set(re.findall(r"`([a-z][a-z-]*)`", DOC[start : DOC.index(until, start)]))


def test_recommendation_codes_in_the_doc_are_exactly_the_engines() -> None:
    named = set().union(*_table_first_column("code"))
    assert named == {c.value for c in RecommendationCode}


@pytest.mark.parametrize(
    ("header", "vocabulary_values"),
    [
        ("category", {c.value for c in MagnesiumCategory}),
        ("deficiency", {d.value for d in Deficiency}),
        ("kind", {k.value for k in MagnesiumProductKind}),
        ("scope", {s.value for s in Scope}),
    ],
)
def test_category_tables_name_exactly_the_vocabulary(header: str, vocabulary_values: set[str]) -> None:
    (tokens,) = _table_first_column(header)
    assert tokens == vocabulary_values


def test_mds_groups_ionized_categories_and_femg_interpretations_are_named() -> None:
    assert _tokens_after("- **MDS group:**") == {g.value for g in MdsGroup}
    assert _tokens_after("**Ionized magnesium:**") == {c.value for c in IONIZED_CATEGORIES}
    femg = _section("Fractional excretion of magnesium (FEMg)")
    named = set(re.findall(r"`([^`]+)`", femg)) - {c.value for c in MagnesiumCategory if c in ("low", "severe-low")}
    assert named == {f.value for f in FemgInterpretation}


def _engine_constants() -> dict[str, object]:
    """Module-level UPPER_CASE numeric (or tuple-of-numbers) constants of every engine module, by name."""
    found: dict[str, object] = {}
    for path in ENGINE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else None
            if isinstance(node, ast.AnnAssign):
                target = node.target
            value = node.value if isinstance(node, ast.Assign | ast.AnnAssign) else None
            if not isinstance(target, ast.Name) or not target.id.isupper() or value is None:
                continue
            try:
                literal = ast.literal_eval(value)
            except ValueError:
                continue
            numbers = literal if isinstance(literal, tuple) else (literal,)
            flat = [n for item in numbers for n in (item if isinstance(item, tuple) else (item,))]
            if flat and all(isinstance(n, int | float) and not isinstance(n, bool) for n in flat):
                assert target.id not in found, f"{target.id} is defined twice in the engine"
                found[target.id] = literal
    return found


def _threshold_rows() -> list[tuple[str, str]]:
    """(value cell, constant name) of each row of the Thresholds table."""
    rows = []
    for line in _section("Thresholds").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[2].startswith("`"):
            rows.append((cells[1], cells[2].strip("`")))
    return rows


def _flat(value: object) -> list[float]:
    items = value if isinstance(value, tuple) else (value,)
    return [float(n) for item in items for n in (item if isinstance(item, tuple) else (item,))]  # type: ignore[arg-type]


def test_every_thresholds_row_names_a_constant_holding_that_value() -> None:
    constants = _engine_constants()
    settings = {f.name: f.default for f in dataclasses.fields(ClinicalSettings)}
    rows = _threshold_rows()
    assert len(rows) >= 20
    for cell, name in rows:
        if name in DEFINED_BY_A_LATER_TASK:
            continue
        if name.startswith("ClinicalSettings."):
            actual: object = settings[name.removeprefix("ClinicalSettings.")]
        else:
            assert name in constants, f"{name} (docs/clinical-rules.md Thresholds) is not an engine constant"
            actual = constants[name]
        written = [float(n) for n in NUMBER.findall(cell)]
        assert written == _flat(actual), f"{name}: the doc says {cell!r}, the code {actual!r}"


def test_every_engine_constant_is_in_the_thresholds_table_or_a_written_coefficient() -> None:
    constants = _engine_constants()
    named = {name for _, name in _threshold_rows()}
    doc_numbers = {float(n) for n in NUMBER.findall(DOC)}
    for name, value in constants.items():
        if name in COEFFICIENTS:
            assert all(v in doc_numbers for v in _flat(value)), f"{name} = {value} is not written in the doc"
            continue
        assert name in named, f"engine constant {name} = {value} is missing from docs/clinical-rules.md Thresholds"
    numeric_settings = [f.name for f in dataclasses.fields(ClinicalSettings) if isinstance(f.default, int | float)]
    for field in numeric_settings:
        assert f"ClinicalSettings.{field}" in named, f"ClinicalSettings.{field} is missing from the Thresholds table"


def test_the_doc_names_the_rules_version_of_the_engine() -> None:
    assert f"**Rules version `{vocabulary.RULES_VERSION}`.**" in DOC

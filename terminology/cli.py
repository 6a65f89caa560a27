"""``mgcds terminology check``: validate every value set file, print counts, refuse forbidden overlaps."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from cds_service.errors import TerminologyError
from terminology.valuesets import (
    AUDITC_CONCEPTS,
    CONDITION_CONCEPTS,
    DIURETIC_CLASSES,
    DRUG_CLASSES,
    LAB_CONCEPTS,
    Indexes,
    default_valueset_dir,
    load_indexes,
    system_label,
    validate_file,
)

MG_SALT_CLASSES = frozenset({"mg-salt-organic", "mg-salt-inorganic", "mg-salt-unspecified"})

# Pairs of classes no single ingredient or product may fall into at once (a PPI listed as a diuretic, a salt
# counted as both organic and inorganic). Combination products across diuretic classes are legitimate.
FORBIDDEN_OVERLAPS: tuple[tuple[frozenset[str], frozenset[str]], ...] = (
    (DIURETIC_CLASSES, frozenset({"proton-pump-inhibitor"})),
    (frozenset({"mg-salt-organic"}), frozenset({"mg-salt-inorganic"})),
    (frozenset({"mg-salt-organic", "mg-salt-inorganic"}), frozenset({"mg-salt-unspecified"})),
    (
        MG_SALT_CLASSES,
        frozenset(DRUG_CLASSES) - MG_SALT_CLASSES,
    ),
)


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``terminology check`` to the ``mgcds`` command line."""
    parser = subparsers.add_parser("terminology", help="value sets and code recognition")
    commands = parser.add_subparsers(dest="terminology_command", required=True)
    check = commands.add_parser("check", help="validate every value set file and print counts per set")
    check.add_argument("--dir", type=Path, default=None, help="value set folder (default: the packaged sets)")
    handler: Callable[[argparse.Namespace, TextIO], int] = lambda args, out: run_check(out, args.dir)  # noqa: E731
    check.set_defaults(handler=handler)


def forbidden_overlaps(indexes: Indexes) -> list[str]:
    """Every ingredient or product code that lands in two classes that must not overlap."""
    problems: list[str] = []
    for record in indexes.ingredients.values():
        problems.extend(_overlap_messages(f"ingredient '{record.name}'", record.classes))
    for key, entry in indexes.drug_codes.items():
        classes: set[str] = set()
        for name in entry.ingredients:
            if name in indexes.ingredients:
                classes |= indexes.ingredients[name].classes
        listed_in = indexes.drug_code_listed_in.get(key, set())
        for drug_class in sorted(listed_in - classes):
            problems.append(
                f"{system_label(entry.system)} {entry.code} is listed under {drug_class} "
                "but none of its ingredients belongs to that class"
            )
        classes |= listed_in
        problems.extend(
            _overlap_messages(f"{system_label(entry.system)} {entry.code} ({entry.valueset})", frozenset(classes))
        )
    return problems


def _overlap_messages(what: str, classes: frozenset[str]) -> list[str]:
    return [
        f"{what} is in {sorted(classes & left)} and {sorted(classes & right)}, which must not overlap"
        for left, right in FORBIDDEN_OVERLAPS
        if classes & left and classes & right
    ]


def run_check(out: TextIO, directory: Path | None = None) -> int:
    """Validate the value sets in ``directory`` (default: packaged); 0 when all is well, 1 otherwise."""
    folder = directory or default_valueset_dir()
    failures: list[str] = []
    for path in sorted(folder.glob("*.json")):
        try:
            validate_file(path)
        except TerminologyError as exc:
            failures.append(str(exc))
    if failures:
        for failure in failures:
            print(f"INVALID  {failure}", file=out)
        print(f"FAILED: {len(failures)} invalid value set file(s) in {folder}", file=out)
        return 1
    try:
        indexes = load_indexes(folder, validate=False)
    except TerminologyError as exc:
        print(f"FAILED: {exc}", file=out)
        return 1
    for vs in sorted(indexes.valuesets, key=lambda v: v.id):
        counts = ", ".join(f"{label.rsplit('/', 1)[-1]} {n}" for label, n in sorted(vs.counts.items()))
        print(f"{vs.id:40} {vs.version:10} {vs.concept:30} {counts}", file=out)
    expected = set(DRUG_CLASSES) | set(LAB_CONCEPTS) | set(AUDITC_CONCEPTS) | set(CONDITION_CONCEPTS)
    present = {vs.concept for vs in indexes.valuesets}
    problems = list(indexes.problems) + forbidden_overlaps(indexes)
    problems += [f"no value set for concept '{c}'" for c in sorted(expected - present)]
    problems += [f"value set concept '{c}' is not in the MgCDS vocabulary" for c in sorted(present - expected)]
    for problem in problems:
        print(f"PROBLEM  {problem}", file=out)
    print(
        f"{len(indexes.valuesets)} value sets, {len(indexes.ingredients)} ingredients, "
        f"{len(indexes.drug_codes)} drug codes, {len(indexes.lab_codes)} lab codes",
        file=out,
    )
    if problems:
        print(f"FAILED: {len(problems)} problem(s)", file=out)
        return 1
    print("OK", file=out)
    return 0

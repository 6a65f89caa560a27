"""``mgcds terminology check``: validate every value set file, print counts, refuse forbidden overlaps.

``mgcds terminology coverage``: per ingredient, which codes recognise it (the maintainers' view of the gaps).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from cds_service.engine.vocabulary import DrugClass, MagnesiumProductKind
from cds_service.errors import TerminologyError
from terminology.valuesets import (
    ATC,
    AUDITC_CONCEPTS,
    CONDITION_CONCEPTS,
    DIURETIC_CLASSES,
    LAB_CONCEPTS,
    RXNORM,
    Indexes,
    default_valueset_dir,
    load_indexes,
    system_label,
    validate_file,
)

# The organic salts clinical-rules.md section 9 drafts as supplement orders (supplement-organic, switch-to-organic).
DRAFTED_SALTS = ("magnesium citrate", "magnesium glycinate", "magnesium lactate")
SUPPLEMENT_DRAFT_CONCEPTS = ("mg-supplement-drafts",)
DRAFT_FORMS = frozenset({"tablet", "capsule"})
STRENGTH_BASES = frozenset({"elemental-magnesium", "salt", "not-stated"})
PRODUCT_KINDS = frozenset(str(kind) for kind in MagnesiumProductKind)

# RxNorm term types that name an ingredient rather than a product.
INGREDIENT_TERM_TYPES = frozenset({"IN", "PIN", "MIN"})

TEXT_ONLY_CLASSES = frozenset({"mg-salt-unspecified"})

MG_SALT_CLASSES = frozenset({"mg-salt-organic", "mg-salt-inorganic", "mg-salt-unspecified"})

# The clinical vocabulary is the one definition of the drug classes: a value set for a class it does not name (or a
# class without a value set) is a problem.
ALL_DRUG_CLASSES = frozenset(str(drug_class) for drug_class in DrugClass)

# Pairs of classes no single ingredient or product may fall into at once (a PPI listed as a diuretic, a salt
# counted as both organic and inorganic). Combination products across diuretic classes are legitimate.
FORBIDDEN_OVERLAPS: tuple[tuple[frozenset[str], frozenset[str]], ...] = (
    (DIURETIC_CLASSES, frozenset({"proton-pump-inhibitor"})),
    (frozenset({"mg-salt-organic"}), frozenset({"mg-salt-inorganic"})),
    (frozenset({"mg-salt-organic", "mg-salt-inorganic"}), frozenset({"mg-salt-unspecified"})),
    (
        MG_SALT_CLASSES,
        ALL_DRUG_CLASSES - MG_SALT_CLASSES,
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
    coverage = commands.add_parser(
        "coverage", help="per ingredient: its RxNorm ingredient code and how many product and ATC codes name it"
    )
    coverage.add_argument("--dir", type=Path, default=None, help="value set folder (default: the packaged sets)")
    coverage.add_argument(
        "--strict", action="store_true", help="exit 1 when an ingredient has no RxNorm ingredient or product code"
    )
    coverage_handler: Callable[[argparse.Namespace, TextIO], int] = lambda args, out: run_coverage(  # noqa: E731
        out, args.dir, strict=args.strict
    )
    coverage.set_defaults(handler=coverage_handler)


@dataclass(frozen=True)
class IngredientCoverage:
    """How an ingredient can be recognised by code (text matching covers every ingredient by name)."""

    name: str
    classes: frozenset[str]
    rxnorm_ingredient: str | None
    product_codes: tuple[str, ...]  # RxNorm SCD/SBD/SCDC/... naming the ingredient
    atc_codes: tuple[str, ...]


def coverage_of(indexes: Indexes) -> list[IngredientCoverage]:
    """One row per ingredient of the drug value sets, sorted by class and name."""
    products: dict[str, list[str]] = {}
    atc: dict[str, list[str]] = {}
    for (system, code), entry in indexes.drug_codes.items():
        if system == RXNORM and entry.term_type in INGREDIENT_TERM_TYPES:
            continue
        target = atc if system == ATC else products if system == RXNORM else None
        if target is None:
            continue
        for name in entry.ingredients:
            target.setdefault(name, []).append(code)
    rows = [
        IngredientCoverage(
            name=record.name,
            classes=record.classes,
            rxnorm_ingredient=record.rxnorm,
            product_codes=tuple(sorted(products.get(record.name, []), key=lambda c: (len(c), c))),
            atc_codes=tuple(sorted(atc.get(record.name, []))),
        )
        for record in indexes.ingredients.values()
    ]
    return sorted(rows, key=lambda row: (sorted(row.classes), row.name))


def run_coverage(out: TextIO, directory: Path | None = None, *, strict: bool = False) -> int:
    """Print the coverage table; with ``strict``, 1 when an ingredient lacks an ingredient or a product code."""
    try:
        indexes = load_indexes(directory or default_valueset_dir())
    except TerminologyError as exc:
        print(f"FAILED: {exc}", file=out)
        return 1
    rows = coverage_of(indexes)
    print(f"{'ingredient':28} {'class':30} {'RxNorm IN':>10} {'products':>8} {'ATC':>4}", file=out)
    for row in rows:
        print(
            f"{row.name:28} {','.join(sorted(row.classes)):30} {row.rxnorm_ingredient or '-':>10} "
            f"{len(row.product_codes):>8} {len(row.atc_codes):>4}",
            file=out,
        )
    # Plain "magnesium" names no salt: it is recognised by text only, by design (see its value set).
    coded = [row for row in rows if not row.classes <= TEXT_ONLY_CLASSES]
    no_ingredient = [row.name for row in coded if row.rxnorm_ingredient is None]
    no_product = [row.name for row in coded if not row.product_codes]
    print(
        f"{len(coded)} coded ingredients: {len(coded) - len(no_ingredient)} with an RxNorm ingredient code, "
        f"{len(coded) - len(no_product)} with at least one RxNorm product code",
        file=out,
    )
    print(f"without an ingredient code: {', '.join(no_ingredient) or 'none'}", file=out)
    print(f"without a product code: {', '.join(no_product) or 'none'}", file=out)
    return 1 if strict and (no_ingredient or no_product) else 0


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


def product_problems(indexes: Indexes) -> list[str]:
    """Magnesium product kinds (section 5) and the supplement drafts (section 9) that are missing or inconsistent."""
    problems: list[str] = []
    for (system, code), entry in sorted(indexes.drug_codes.items()):
        classes: set[str] = set()
        for name in entry.ingredients:
            if name in indexes.ingredients:
                classes |= indexes.ingredients[name].classes
        is_magnesium = bool(classes & MG_SALT_CLASSES)
        label = f"{system_label(system)} {code} ({entry.valueset})"
        if entry.product_kind is not None and entry.product_kind not in PRODUCT_KINDS:
            problems.append(f"{label} has an unknown mg-product-kind '{entry.product_kind}'")
        if entry.product_kind is not None and not is_magnesium:
            problems.append(f"{label} has an mg-product-kind but no magnesium salt")
        # Every magnesium product code states its kind: section 5 decides from the product code first.
        is_product = system == RXNORM and entry.term_type not in INGREDIENT_TERM_TYPES
        if is_magnesium and is_product and not entry.product_kind:
            problems.append(f"{label} is a magnesium product without an mg-product-kind")
    for product_name in indexes.product_names.values():
        if product_name.kind not in PRODUCT_KINDS:
            problems.append(f"designation '{product_name.name}' has an unknown mg-product-kind '{product_name.kind}'")
    drafted: dict[str, str] = {}
    for draft in indexes.supplement_drafts:
        label = f"supplement draft {system_label(draft.system)} {draft.code} ({draft.valueset})"
        listed = indexes.drug_codes.get((draft.system, draft.code))
        record = indexes.ingredients.get(draft.salt)
        if record is None or "mg-salt-organic" not in record.classes:
            problems.append(f"{label}: '{draft.salt}' is not an organic magnesium salt of the value sets")
        if listed is None or draft.salt not in listed.ingredients:
            problems.append(f"{label} is not listed for '{draft.salt}' in a drug value set")
        elif listed.product_kind != MagnesiumProductKind.ORAL_SUPPLEMENT or listed.display != draft.display:
            problems.append(f"{label} is not the oral-supplement product of that name in {listed.valueset}")
        if draft.dose_form not in DRAFT_FORMS or draft.dose_form not in draft.display.lower():
            problems.append(f"{label}: dose form '{draft.dose_form}' is not a tablet or capsule its name states")
        if draft.strength_mg is None:
            problems.append(f"{label} has no strength in mg")
        if draft.strength_basis not in STRENGTH_BASES or not draft.strength_basis_source:
            problems.append(f"{label} has no strength-basis with its source")
        if not draft.sources:
            problems.append(f"{label} has no code-source")
        if draft.salt in drafted:
            problems.append(f"{label}: '{draft.salt}' is drafted twice ({drafted[draft.salt]} and {draft.code})")
        drafted.setdefault(draft.salt, draft.code)
    problems += [f"no supplement draft product for '{salt}'" for salt in DRAFTED_SALTS if salt not in drafted]
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
    expected = set(ALL_DRUG_CLASSES) | set(LAB_CONCEPTS) | set(AUDITC_CONCEPTS) | set(CONDITION_CONCEPTS)
    expected |= set(SUPPLEMENT_DRAFT_CONCEPTS)
    present = {vs.concept for vs in indexes.valuesets}
    problems = list(indexes.problems) + forbidden_overlaps(indexes) + product_problems(indexes)
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

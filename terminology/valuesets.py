"""Loading the ValueSet files in ``terminology/valuesets`` and building the lookup indexes once.

Every file is a FHIR R4 ValueSet (validated with ``fhir.resources.R4B``). MgCDS-specific facts ride on
extensions under ``https://mgcds.example.org/fhir/StructureDefinition/`` (see docs/terminology.md):
``mgcds-concept``/``mgcds-kind`` on the ValueSet; on concepts ``drug-class``, ``rxnorm-ingredient``,
``ingredient`` (repeating, on product codes), ``term-type``, ``elemental-mg-fraction`` (+ ``-source``),
``code-source``, ``auditc-band``, ``item-score``, ``role``; ``text-phrase``/``text-exclude`` on lab sets.
Brand names and synonyms are ``compose.include.concept.designation`` entries. Magnesium products (clinical-rules.md
section 5): ``mg-product-kind`` on RxNorm product concepts and on designations whose name fixes the kind (+
``mg-product-kind-reason`` where the kind is not what the name's dose form says). The ``supplement-draft`` kind of value
set lists the products the service drafts as orders (section 9): ``ingredient``, ``dose-form``, ``strength``,
``strength-basis`` (+ ``-source``) on each RxNorm concept.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from cds_service.engine import vocabulary
from cds_service.errors import TerminologyError

BASE = "https://mgcds.example.org/fhir"
EXT = BASE + "/StructureDefinition/"
INGREDIENT_SYSTEM = BASE + "/CodeSystem/ingredient"
DESIGNATION_USE_SYSTEM = BASE + "/CodeSystem/designation-use"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ATC = "http://www.whocc.no/atc"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
NDC = "http://hl7.org/fhir/sid/ndc"

# HL7 registered OIDs and common spellings EHRs put in Coding.system for the same code systems.
SYSTEM_ALIASES: Mapping[str, str] = {
    RXNORM: RXNORM,
    "urn:oid:2.16.840.1.113883.6.88": RXNORM,
    "https://www.nlm.nih.gov/research/umls/rxnorm": RXNORM,
    "http://www.nlm.nih.gov/research/umls/rxnorm/": RXNORM,
    LOINC: LOINC,
    "urn:oid:2.16.840.1.113883.6.1": LOINC,
    "https://loinc.org": LOINC,
    SNOMED: SNOMED,
    "urn:oid:2.16.840.1.113883.6.96": SNOMED,
    "https://snomed.info/sct": SNOMED,
    ATC: ATC,
    "urn:oid:2.16.840.1.113883.6.73": ATC,
    "https://www.whocc.no/atc": ATC,
    "http://www.whocc.no/atc/": ATC,
    NDC: NDC,
    "urn:oid:2.16.840.1.113883.6.69": NDC,
}

SYSTEM_LABELS: Mapping[str, str] = {
    RXNORM: "RxNorm",
    ATC: "ATC",
    LOINC: "LOINC",
    SNOMED: "SNOMED CT",
    NDC: "NDC",
}

# Defined once, in the engine's vocabulary; here as the plain strings the value set files carry.
DRUG_CLASSES: tuple[str, ...] = tuple(drug_class.value for drug_class in vocabulary.DrugClass)
DIURETIC_CLASSES = frozenset(drug_class.value for drug_class in vocabulary.DIURETIC_CLASSES)
LAB_CONCEPTS: tuple[str, ...] = tuple(c.value for c in vocabulary.LabConcept if c not in vocabulary.AUDITC_ITEMS)
AUDITC_CONCEPTS: tuple[str, ...] = ("auditc-frequency", "auditc-typical-drinks")
CONDITION_CONCEPTS: tuple[str, ...] = ("alcohol-use-disorder",)


def canonical_system(system: str | None) -> str | None:
    """The canonical URI of a code system, or the input stripped when we do not know it."""
    if system is None:
        return None
    stripped = system.strip()
    return SYSTEM_ALIASES.get(stripped, SYSTEM_ALIASES.get(stripped.rstrip("/"), stripped))


def system_label(system: str | None) -> str:
    """A short human name of a code system for evidence strings."""
    if system is None:
        return "code"
    return SYSTEM_LABELS.get(system, system)


@dataclass(frozen=True)
class IngredientRecord:
    """One ingredient of a drug value set."""

    name: str
    classes: frozenset[str]
    rxnorm: str | None
    elemental_mg_fraction: float | None
    names: tuple[str, ...]  # generic name, brand names, synonyms (for text matching)
    valueset: str


@dataclass(frozen=True)
class CodeEntry:
    """A drug code (RxNorm IN/SCD/SBD, ATC) and the ingredients it stands for."""

    system: str
    code: str
    display: str | None
    ingredients: tuple[str, ...]
    term_type: str | None
    valueset: str
    # Magnesium products only: oral-supplement, laxative-antacid or parenteral (clinical-rules.md section 5).
    product_kind: str | None = None


@dataclass(frozen=True)
class ProductName:
    """A name (brand, common name) that says which magnesium product it is, and so its kind (section 5)."""

    name: str
    ingredient: str
    kind: str
    valueset: str


@dataclass(frozen=True)
class SupplementDraft:
    """A product the service may draft as a MedicationRequest (clinical-rules.md section 9), as its value set says."""

    salt: str
    system: str
    code: str
    display: str
    term_type: str | None
    dose_form: str | None
    strength_mg: float | None
    strength_basis: str | None
    strength_basis_source: str | None
    sources: tuple[str, ...]
    valueset: str


@dataclass(frozen=True)
class LabCode:
    """A LOINC code and the lab concept it belongs to."""

    concept: str
    display: str | None
    valueset: str


@dataclass(frozen=True)
class TextRule:
    """Phrases that name a concept in free text, and words that veto the match."""

    concept: str
    phrases: tuple[str, ...]
    excludes: tuple[str, ...]


@dataclass(frozen=True)
class AuditcItem:
    """An AUDIT-C item: its question code and how answers map to bands."""

    concept: str
    question_codes: frozenset[tuple[str, str]]
    band_by_code: Mapping[tuple[str, str], str]
    band_by_text: Mapping[str, str]
    band_by_score: Mapping[int, str]


@dataclass(frozen=True)
class LoadedValueSet:
    """One parsed file with the facts we index."""

    path: Path
    id: str
    url: str
    version: str
    concept: str
    kind: str
    counts: Mapping[str, int]


@dataclass
class Indexes:
    """Everything the Terminology looks up, built once from the files."""

    valuesets: list[LoadedValueSet] = field(default_factory=list)
    ingredients: dict[str, IngredientRecord] = field(default_factory=dict)
    drug_codes: dict[tuple[str, str], CodeEntry] = field(default_factory=dict)
    drug_code_listed_in: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    rxnorm_ingredient_names: dict[str, str] = field(default_factory=dict)
    atc_groups: dict[str, str] = field(default_factory=dict)
    lab_codes: dict[tuple[str, str], LabCode] = field(default_factory=dict)
    lab_text: list[TextRule] = field(default_factory=list)
    auditc: dict[str, AuditcItem] = field(default_factory=dict)
    condition_codes: dict[tuple[str, str], str] = field(default_factory=dict)
    condition_text: list[TextRule] = field(default_factory=list)
    product_names: dict[str, ProductName] = field(default_factory=dict)
    supplement_drafts: list[SupplementDraft] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def default_valueset_dir() -> Path:
    """The folder of the value set files shipped with the package."""
    return Path(str(resources.files("terminology").joinpath("valuesets")))


def _ext_values(element: Mapping[str, Any], name: str) -> list[Any]:
    values: list[Any] = []
    for extension in element.get("extension", ()):
        if extension.get("url") == EXT + name:
            values.extend(v for k, v in extension.items() if k.startswith("value"))
    return values


def _ext_value(element: Mapping[str, Any], name: str) -> Any:
    values = _ext_values(element, name)
    return values[0] if values else None


def _designations(concept: Mapping[str, Any]) -> list[str]:
    return [d["value"] for d in concept.get("designation", ()) if isinstance(d.get("value"), str)]


def validate_file(path: Path) -> dict[str, Any]:
    """Parse one file as JSON and as a FHIR R4 ValueSet; raise TerminologyError naming the file otherwise."""
    # Imported here: pydantic FHIR models are slow to import and only needed while loading.
    from fhir.resources.R4B.valueset import ValueSet
    from pydantic import ValidationError

    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise TerminologyError(f"{path.name}: not readable JSON ({exc})") from exc
    try:
        ValueSet.model_validate(raw)
    except ValidationError as exc:
        raise TerminologyError(f"{path.name}: not a valid FHIR R4 ValueSet ({exc.error_count()} errors)") from exc
    for required in ("url", "version", "name", "title", "description"):
        if not raw.get(required):
            raise TerminologyError(f"{path.name}: ValueSet.{required} is missing")
    if not _ext_value(raw, "mgcds-concept") or not _ext_value(raw, "mgcds-kind"):
        raise TerminologyError(f"{path.name}: the mgcds-concept and mgcds-kind extensions are required")
    return dict(raw)


def load_indexes(directory: Path | None = None, *, validate: bool = True) -> Indexes:
    """Read every ``*.json`` value set in ``directory`` and build the indexes."""
    folder = directory or default_valueset_dir()
    paths = sorted(folder.glob("*.json"))
    if not paths:
        raise TerminologyError(f"no value set files in {folder}")
    indexes = Indexes()
    for path in paths:
        raw = validate_file(path) if validate else json.loads(path.read_text(encoding="utf-8"))
        _index_one(indexes, path, raw)
    _resolve_products(indexes)
    return indexes


def _index_one(indexes: Indexes, path: Path, raw: Mapping[str, Any]) -> None:
    concept = str(_ext_value(raw, "mgcds-concept"))
    kind = str(_ext_value(raw, "mgcds-kind"))
    vs_id = str(raw.get("id") or path.stem)
    counts: dict[str, int] = {}
    includes: Sequence[Mapping[str, Any]] = raw.get("compose", {}).get("include", ())
    for include in includes:
        system = canonical_system(include.get("system")) or ""
        concepts: Sequence[Mapping[str, Any]] = include.get("concept", ())
        counts[system_label(system)] = counts.get(system_label(system), 0) + len(concepts)
        if kind == "drug-class":
            _index_drug_include(indexes, vs_id, concept, system, concepts)
        elif kind == "lab":
            for item in concepts:
                _add_lab_code(indexes, (system, item["code"]), LabCode(concept, item.get("display"), vs_id))
        elif kind == "auditc-item":
            _index_auditc(indexes, concept, system, concepts)
        elif kind == "supplement-draft":
            indexes.supplement_drafts.extend(_supplement_draft(vs_id, system, item) for item in concepts)
        elif kind == "condition":
            for item in concepts:
                key = (system, item["code"])
                if key in indexes.condition_codes and indexes.condition_codes[key] != concept:
                    indexes.problems.append(f"{system_label(system)} {item['code']} is in two condition sets")
                indexes.condition_codes[key] = concept
        else:
            raise TerminologyError(f"{path.name}: unknown mgcds-kind '{kind}'")
    phrases = tuple(str(p).lower() for p in _ext_values(raw, "text-phrase"))
    excludes = tuple(str(p).lower() for p in _ext_values(raw, "text-exclude"))
    if phrases:
        rule = TextRule(concept, phrases, excludes)
        (indexes.condition_text if kind == "condition" else indexes.lab_text).append(rule)
    if kind == "drug-class":
        for group in _ext_values(raw, "atc-group"):
            indexes.atc_groups[str(group)] = concept
    indexes.valuesets.append(LoadedValueSet(path, vs_id, str(raw["url"]), str(raw["version"]), concept, kind, counts))


def _add_lab_code(indexes: Indexes, key: tuple[str, str], lab: LabCode) -> None:
    existing = indexes.lab_codes.get(key)
    if existing is not None and existing.concept != lab.concept:
        indexes.problems.append(f"{system_label(key[0])} {key[1]} is in both {existing.concept} and {lab.concept}")
    indexes.lab_codes[key] = lab


def _index_drug_include(
    indexes: Indexes, vs_id: str, drug_class: str, system: str, concepts: Iterable[Mapping[str, Any]]
) -> None:
    for item in concepts:
        if system == INGREDIENT_SYSTEM:
            name = str(item["display"]).lower()
            rxnorm = _ext_value(item, "rxnorm-ingredient")
            fraction = _ext_value(item, "elemental-mg-fraction")
            record_classes = frozenset(str(c) for c in _ext_values(item, "drug-class")) or frozenset({drug_class})
            existing = indexes.ingredients.get(name)
            if existing is not None:
                indexes.problems.append(f"ingredient '{name}' is in both {existing.valueset} and {vs_id}")
                record_classes |= existing.classes
            indexes.ingredients[name] = IngredientRecord(
                name=name,
                classes=record_classes,
                rxnorm=str(rxnorm) if rxnorm else None,
                elemental_mg_fraction=float(fraction) if fraction is not None else None,
                names=(name, *(d.lower() for d in _designations(item))),
                valueset=vs_id,
            )
            if rxnorm:
                indexes.rxnorm_ingredient_names[str(rxnorm)] = name
            for designation in item.get("designation", ()):
                product_kind = _ext_value(designation, "mg-product-kind")
                if product_kind and isinstance(designation.get("value"), str):
                    value = designation["value"]
                    indexes.product_names[value.lower()] = ProductName(value, name, str(product_kind), vs_id)
            continue
        key = (system, str(item["code"]))
        if not _ext_values(item, "code-source"):
            # Issue 4: codes are facts from public sources; one without a recorded source cannot be reviewed.
            indexes.problems.append(f"{system_label(system)} {item['code']} ({vs_id}) has no code-source")
        entry = CodeEntry(
            system=system,
            code=str(item["code"]),
            display=item.get("display"),
            ingredients=tuple(str(i).lower() for i in _ext_values(item, "ingredient")),
            term_type=_ext_value(item, "term-type"),
            valueset=vs_id,
            product_kind=_ext_value(item, "mg-product-kind"),
        )
        existing_entry = indexes.drug_codes.get(key)
        if existing_entry is not None and set(existing_entry.ingredients) != set(entry.ingredients):
            indexes.problems.append(
                f"{system_label(system)} {entry.code} is listed in {existing_entry.valueset} and {vs_id} "
                "with different ingredients"
            )
        indexes.drug_codes[key] = entry
        indexes.drug_code_listed_in.setdefault(key, set()).add(drug_class)


def _resolve_products(indexes: Indexes) -> None:
    """Every code must name at least one known ingredient, or it could never classify anything."""
    for entry in indexes.drug_codes.values():
        if not any(name in indexes.ingredients for name in entry.ingredients):
            indexes.problems.append(
                f"{system_label(entry.system)} {entry.code} ({entry.valueset}) names no ingredient of any set"
            )


def _supplement_draft(vs_id: str, system: str, item: Mapping[str, Any]) -> SupplementDraft:
    strength = _ext_value(item, "strength")
    basis_source = _ext_value(item, "strength-basis-source")
    form = _ext_value(item, "dose-form")
    return SupplementDraft(
        salt=str(_ext_value(item, "ingredient") or "").lower(),
        system=system,
        code=str(item["code"]),
        display=str(item.get("display") or ""),
        term_type=_ext_value(item, "term-type"),
        dose_form=str(form) if form else None,
        # A Quantity in mg (UCUM); the check refuses any other unit.
        strength_mg=float(strength["value"])
        if isinstance(strength, Mapping) and strength.get("code") == "mg"
        else None,
        strength_basis=_ext_value(item, "strength-basis"),
        strength_basis_source=str(basis_source) if basis_source else None,
        sources=tuple(str(v) for v in _ext_values(item, "code-source")),
        valueset=vs_id,
    )


def _index_auditc(indexes: Indexes, concept: str, system: str, concepts: Iterable[Mapping[str, Any]]) -> None:
    questions: set[tuple[str, str]] = set()
    by_code: dict[tuple[str, str], str] = {}
    by_text: dict[str, str] = {}
    by_score: dict[int, str] = {}
    for item in concepts:
        if _ext_value(item, "role") == "question":
            questions.add((system, str(item["code"])))
            continue
        band = str(_ext_value(item, "auditc-band"))
        by_code[(system, str(item["code"]))] = band
        for text in (item.get("display"), *_designations(item)):
            if text:
                by_text[_normalise_answer(text)] = band
        score = _ext_value(item, "item-score")
        if score is not None:
            by_score[int(score)] = band
    indexes.auditc[concept] = AuditcItem(concept, frozenset(questions), by_code, by_text, by_score)


def _normalise_answer(text: str) -> str:
    return " ".join(text.lower().replace("\u2013", "-").split())

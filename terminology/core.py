"""The Terminology: every code decision MgCDS makes, over indexes built once from the value set files."""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from cds_service.engine.vocabulary import DrugClass, MagnesiumProductKind
from terminology import products, units
from terminology.model import (
    CodeRef,
    ConvertedQuantity,
    IngredientMatch,
    LabMatch,
    MedicationClassification,
)
from terminology.products import MagnesiumProduct, ProductClues, SupplementProduct
from terminology.remote import RemoteLookup
from terminology.routes import is_parenteral_form, is_parenteral_route
from terminology.textmatch import NameMatcher, contains_phrase
from terminology.valuesets import (
    ATC,
    DRUG_CLASSES,
    LOINC,
    RXNORM,
    CodeEntry,
    Indexes,
    TextRule,
    _normalise_answer,
    canonical_system,
    load_indexes,
    system_label,
)

_LOINC_SHAPE = re.compile(r"^\d{1,7}-\d$")


def _describe(coding: CodeRef, system: str | None, fallback_display: str | None = None) -> str:
    display = coding.display or fallback_display
    label = f"{system_label(system)} {coding.code}"
    return f"{label} ({display})" if display else label


class Terminology:
    """Classifies medications, observations, orders and conditions; converts quantities."""

    def __init__(self, indexes: Indexes, remote: RemoteLookup | None = None) -> None:
        self._ix = indexes
        self._remote = remote
        self._names = NameMatcher({name: rec.names for name, rec in indexes.ingredients.items()})
        # Names that fix a magnesium product's kind (Milk of Magnesia, Maalox, Slow-Mag), keyed by their lower case.
        self._product_names = NameMatcher({key: (pn.name,) for key, pn in indexes.product_names.items()})
        self._supplements = products.supplement_products(indexes.supplement_drafts)

    @property
    def indexes(self) -> Indexes:
        """The underlying indexes (for the check command and tests)."""
        return self._ix

    # ---- medications -------------------------------------------------------------------------------

    def classify_medication(
        self,
        codings: Sequence[CodeRef],
        text: str | None = None,
        ingredient_concepts: Sequence[tuple[Sequence[CodeRef], str | None]] = (),
    ) -> MedicationClassification:
        """Which ingredients of interest a medication contains, by code, then remote lookup, then text."""
        found: dict[str, IngredientMatch] = {}
        notes: list[str] = []
        concepts: list[tuple[Sequence[CodeRef], str | None]] = [(codings, text), *ingredient_concepts]
        unknown: list[tuple[CodeRef, str]] = []
        for concept_codings, _ in concepts:
            for coding in concept_codings:
                self._match_code(coding, found, unknown)
        if not found and unknown:
            self._ask_remote(unknown, found, notes)
        if not found:
            for concept_codings, concept_text in concepts:
                self._match_text(concept_text, "text", found)
                for coding in concept_codings:
                    self._match_text(coding.display, "display", found)
            if found and any(n.startswith("remote") for n in notes):
                notes.append("matched by text only")
        return MedicationClassification(tuple(found.values()), tuple(notes))

    def _add(self, found: dict[str, IngredientMatch], name: str, evidence: str) -> None:
        record = self._ix.ingredients.get(name)
        if record is None or name in found:
            return
        found[name] = IngredientMatch(
            name=record.name,
            rxnorm=record.rxnorm,
            classes=record.classes,
            matched_by=evidence,
            elemental_mg_fraction=record.elemental_mg_fraction,
        )

    def _match_code(
        self, coding: CodeRef, found: dict[str, IngredientMatch], unknown: list[tuple[CodeRef, str]]
    ) -> None:
        if not coding.code:
            return
        system = canonical_system(coding.system)
        code = coding.code.strip()
        entry = self._drug_code(coding)
        if entry is not None:
            for name in entry.ingredients:
                self._add(found, name, f"{_describe(coding, system, entry.display)} -> {name}")
            return
        if system == ATC:
            drug_class = self._atc_class(code)
            if drug_class is not None:
                self._add_atc_group(found, coding, drug_class)
                return
        if system is not None:
            unknown.append((coding, system))

    def is_parenteral(
        self,
        product: Sequence[CodeRef],
        product_text: str | None,
        route: Sequence[CodeRef] = (),
        route_text: str | None = None,
    ) -> bool:
        """Given intravenously, intramuscularly or subcutaneously: by the dosage route, or by the dose form named in
        the product's text, its codings' displays, or the RxNorm name of a product code the value sets know."""
        # Free-text orders often carry the route in the product text ("Magnesium sulfate 2 g IV"). A false match only
        # withholds oral-supplement advice, the cautious direction.
        if is_parenteral_route(route, route_text) or is_parenteral_route((), product_text):
            return True
        names = [product_text, *(c.display for c in product)]
        for coding in product:
            entry = self._drug_code(coding)
            if entry is not None:
                names.append(entry.display)
        return is_parenteral_form(names)

    def _drug_code(self, coding: CodeRef) -> CodeEntry | None:
        """The value sets' entry for a drug code, whatever spelling of the code system the EHR used."""
        return self._ix.drug_codes.get((canonical_system(coding.system) or "", (coding.code or "").strip()))

    def _atc_class(self, code: str) -> str | None:
        upper = code.upper()
        for length in range(len(upper), 3, -1):
            drug_class = self._ix.atc_groups.get(upper[:length])
            if drug_class is not None:
                return drug_class
        return None

    def _add_atc_group(self, found: dict[str, IngredientMatch], coding: CodeRef, drug_class: str) -> None:
        for hit in self._names.find(coding.display):
            record = self._ix.ingredients[hit.ingredient]
            if drug_class in record.classes:
                self._add(
                    found,
                    record.name,
                    f"{_describe(coding, ATC)} -> {record.name} (ATC group of {drug_class})",
                )
                return
        # An ATC code inside a class group whose ingredient we do not list: the class is certain, the name is
        # the coding's own display (or the ATC code), so the evidence stays traceable.
        name = (coding.display or f"ATC {coding.code}").lower()
        found.setdefault(
            name,
            IngredientMatch(
                name=name,
                rxnorm=None,
                classes=frozenset({drug_class}),
                matched_by=f"{_describe(coding, ATC)} -> ATC group of {drug_class}",
            ),
        )

    def _ask_remote(
        self, unknown: list[tuple[CodeRef, str]], found: dict[str, IngredientMatch], notes: list[str]
    ) -> None:
        if self._remote is None:
            return
        for coding, system in unknown:
            code = (coding.code or "").strip()
            answer = self._remote.ingredients_for(system, code)
            if answer is None:
                label = f"{system_label(system)} {code}"
                notes.append(f"remote terminology could not resolve {label} (unreachable or unknown)")
                continue
            for rxcui, name in answer:
                local = self._ix.rxnorm_ingredient_names.get(rxcui or "") or (
                    name if name in self._ix.ingredients else None
                )
                if local is None:
                    hits = self._names.find(name)
                    local = hits[0].ingredient if hits else None
                if local is not None:
                    self._add(found, local, f"remote {system_label(system)} {code} -> {name} -> {local}")

    def _match_text(self, text: str | None, where: str, found: dict[str, IngredientMatch]) -> None:
        for hit in self._names.find(text):
            self._add(found, hit.ingredient, f"{where} '{hit.found}' -> {hit.ingredient}")

    def class_members(self, drug_class: str) -> tuple[str, ...]:
        """Ingredient names in a drug class, sorted."""
        return tuple(sorted(n for n, rec in self._ix.ingredients.items() if drug_class in rec.classes))

    # ---- magnesium products (clinical-rules.md sections 5 and 9) -----------------------------------

    def magnesium_product(
        self,
        codings: Sequence[CodeRef],
        text: str | None = None,
        route_codings: Sequence[CodeRef] = (),
        route_text: str | None = None,
        form_names: Sequence[str | None] = (),
        ingredient_concepts: Sequence[tuple[Sequence[CodeRef], str | None]] = (),
    ) -> MagnesiumProduct | None:
        """The kind (oral supplement, laxative/antacid, parenteral) and salt of a magnesium-containing medication, or
        None when it contains no magnesium salt.

        ``codings``/``text``: the medication (``medicationCodeableConcept`` or the Medication's ``code``);
        ``route_codings``/``route_text``: ``dosageInstruction.route``; ``form_names``: ``Medication.form`` text and
        displays; ``ingredient_concepts``: a contained Medication's ingredients, as for ``classify_medication``.
        The decision follows section 5 in order; ``terminology.products`` documents each clause.
        """
        classification = self.classify_medication(codings, text, ingredient_concepts)
        salts = products.salts_of(classification)
        if not salts:
            return None
        code_kinds: list[tuple[str, MagnesiumProductKind]] = []
        code_names: list[str | None] = []
        for coding in codings:
            entry = self._drug_code(coding)
            if entry is None:
                continue
            code_names.append(entry.display)
            if entry.product_kind:
                label = _describe(coding, entry.system, entry.display)
                code_kinds.append((label, MagnesiumProductKind(entry.product_kind)))
        names = products.readable_names(
            [text],
            [c.display for c in codings],
            code_names,
            form_names,
            [concept_text for _, concept_text in ingredient_concepts],
        )
        if all(salt.salt_class == DrugClass.MG_SALT_UNSPECIFIED for salt in salts):
            # Plain "magnesium" read from text: not when it only names another drug's salt ("esomeprazole magnesium").
            others = [i.name for i in classification.ingredients if not i.classes & set(products.SALT_CLASSES)]
            if not products.names_plain_magnesium(names, others):
                return None
        parenteral_route = None
        if is_parenteral_route(route_codings, route_text):
            shown = route_text or next((c.display or c.code for c in route_codings if c.display or c.code), "")
            parenteral_route = f"route '{shown}' is parenteral"
        parenteral_text = next(
            (
                f"'{name}' names a parenteral route or dose form"
                for name in names
                if is_parenteral_route((), name) or is_parenteral_form([name])
            ),
            None,
        )
        found: dict[str, MagnesiumProductKind] = {}
        for name in names:
            for hit in self._product_names.find(name):
                product_name = self._ix.product_names[hit.ingredient]
                found.setdefault(product_name.name, MagnesiumProductKind(product_name.kind))
        clues = ProductClues(
            salts=salts,
            names=names,
            code_kinds=tuple(code_kinds),
            parenteral_route=parenteral_route,
            parenteral_text=parenteral_text,
            product_names=tuple(found.items()),
            oral_route=products.is_oral_route(route_codings, route_text),
        )
        return products.decide(clues)

    def supplement_products(self) -> Mapping[str, SupplementProduct]:
        """The product to draft per organic salt (section 9), keyed by salt name ("magnesium citrate"): RxNorm code
        and name, form, strength and whether that strength is elemental magnesium (drafts-mg-supplement-products)."""
        return self._supplements

    # ---- labs, orders, conditions ------------------------------------------------------------------

    def classify_observation(self, codings: Sequence[CodeRef], text: str | None = None) -> LabMatch | None:
        """The lab concept of an Observation.code (LOINC), or from its text when no code is known."""
        for coding in codings:
            if not coding.code:
                continue
            system = canonical_system(coding.system)
            code = coding.code.strip()
            if system is None and _LOINC_SHAPE.match(code):
                system = LOINC  # a LOINC-shaped code without a system: common in hand-built feeds
            lab = self._ix.lab_codes.get((system or "", code))
            if lab is not None:
                return LabMatch(lab.concept, _describe(coding, system, lab.display))
            for item in self._ix.auditc.values():
                if (system or "", code) in item.question_codes:
                    return LabMatch(item.concept, _describe(coding, system))
        for candidate in (text, *(c.display for c in codings)):
            concept = _match_rules(candidate, self._ix.lab_text)
            if concept is not None:
                return LabMatch(concept, f"text '{candidate}' -> {concept}")
        return None

    def classify_service_request(self, codings: Sequence[CodeRef], text: str | None = None) -> LabMatch | None:
        """Which lab a ServiceRequest orders (same value sets as Observation.code)."""
        return self.classify_observation(codings, text)

    def classify_condition(self, codings: Sequence[CodeRef], text: str | None = None) -> str | None:
        """The condition concept ("alcohol-use-disorder") of a Condition.code, or None."""
        for coding in codings:
            if coding.code:
                concept = self._ix.condition_codes.get((canonical_system(coding.system) or "", coding.code.strip()))
                if concept is not None:
                    return concept
        for candidate in (text, *(c.display for c in codings)):
            concept = _match_rules(candidate, self._ix.condition_text)
            if concept is not None:
                return concept
        return None

    def auditc_band(
        self,
        concept: str,
        answer_codings: Sequence[CodeRef],
        answer_text: str | None,
        answer_score: int | None,
    ) -> str | None:
        """The answer band of an AUDIT-C item from its LOINC answer code, answer text or item score 0-4."""
        item = self._ix.auditc.get(concept)
        if item is None:
            return None
        for coding in answer_codings:
            if coding.code:
                band = item.band_by_code.get((canonical_system(coding.system) or LOINC, coding.code.strip()))
                if band is not None:
                    return band
        for candidate in (answer_text, *(c.display for c in answer_codings)):
            if candidate:
                band = item.band_by_text.get(_normalise_answer(candidate))
                if band is not None:
                    return band
        if answer_score is not None:
            return item.band_by_score.get(answer_score)
        return None

    def observation_search_codes(self) -> list[str]:
        """``system|code`` of every Observation code the engine reads (labs and AUDIT-C items), for prefetch."""
        codes = {f"{system}|{code}" for (system, code) in self._ix.lab_codes if system}
        for item in self._ix.auditc.values():
            codes.update(f"{system}|{code}" for (system, code) in item.question_codes if system)
        return sorted(codes)

    # ---- units -------------------------------------------------------------------------------------

    def convert(self, value: float, unit: str | None, concept: str) -> ConvertedQuantity:
        """``value`` in the canonical unit of ``concept``; raises UnitNotRecognised for other units."""
        return units.convert(value, unit, concept)


def _match_rules(text: str | None, rules: Sequence[TextRule]) -> str | None:
    if not text or not text.strip():
        return None
    best: tuple[int, str] | None = None
    for rule in rules:
        if any(contains_phrase(text, word) for word in rule.excludes):
            continue
        for phrase in rule.phrases:
            if contains_phrase(text, phrase) and (best is None or len(phrase) > best[0]):
                best = (len(phrase), rule.concept)
    return best[1] if best else None


_default: Terminology | None = None
_default_lock = threading.Lock()


def load_terminology(remote: RemoteLookup | None = None, directory: Path | None = None) -> Terminology:
    """Build a Terminology from the value set files (all indexes built here, once)."""
    return Terminology(load_indexes(directory), remote)


def default_terminology() -> Terminology:
    """The process-wide Terminology (packaged value sets, no remote lookup), built on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = load_terminology()
        return _default


__all__ = ["DRUG_CLASSES", "RXNORM", "Terminology", "default_terminology", "load_terminology"]

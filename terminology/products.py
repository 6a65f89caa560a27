"""Which kind of magnesium product a medication is, and which salt it carries (clinical-rules.md section 5); and the
products the service drafts as supplement orders (section 9).

Why it matters: version 2 applies the supplement rules (start, switch, persistent deficiency) to oral supplements only.
A laxative or antacid (milk of magnesia, the citrate bowel preparation, Maalox) is oral magnesium for the safety rules
(stop it when serum is high, space it from chelating drugs) but is not a supplement; intravenous or intramuscular
magnesium treats the deficiency, and an order card must never offer to delete it.

The decision, in the order of section 5; the first clause that applies decides (``ProductRule`` names it):

1. ``product-code``: a product code the value sets know carries its kind (``mg-product-kind``), read from its RxNorm
   name by the clauses below, or from what the product is where its name's dose form says otherwise (a bowel
   preparation sold as tablets).
2. ``parenteral-route`` / ``parenteral-words`` / ``parenteral-solution``: a parenteral route
   (``dosageInstruction.route``), or the words injection, injectable, IV, infusion, intravenous, intramuscular (and
   the other parenteral routes and dose forms ``terminology.routes`` reads) in the product text, a coding's display,
   an RxNorm name or ``Medication.form``. Beyond the words of section 5, and only for the sulfate and chloride (the
   salts given intravenously) with nothing saying oral: a premix "in water" / "in dextrose" (no RxNorm code for those
   premixes could be verified, so they are read by name), or a strength per volume ("2 g/50 mL", "500 mg/mL"). Issue
   14's unsafe example was IV magnesium sulfate read as an oral supplement and offered for deletion; an oral sulfate
   or chloride solution is written as one ("oral solution", route PO) or coded.
3. ``product-name``: a brand or common name whose product is of one kind (Milk of Magnesia, Epsom salt, Maalox, Citroma,
   Suprep, Slow-Mag, Mag-Tab SR; the designations with ``mg-product-kind`` in the value sets).
4. ``oral-liquid-laxative-salt``: an oral solution or suspension (or granules/powder *for* oral solution) of the
   citrate, hydroxide or sulfate; for the citrate and hydroxide (never given parenterally) also a bare "solution" or a
   strength per volume ("1.745 g/30 mL").
5. ``antacid-salt``: magnesium hydroxide or trisilicate, or magnesium with aluminium (an aluminium/magnesium antacid),
   in any oral form.
6. ``solid-oral-form``: a tablet, capsule, powder or chewable (and their abbreviations and release forms).
7. ``citrate-sulfate-form-unread``: a citrate or sulfate whose dose form cannot be read is an oral supplement.
8. ``form-unread-default``: any other salt (or magnesium without a salt) whose dose form cannot be read. Section 5 says
   every magnesium medication is one of the three kinds but names no clause for this case; such products (oxide,
   chloride, glycinate, "Magnesium 250 mg") are sold for magnesium, so they are oral supplements. The decision carries
   a note saying so.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from cds_service.engine.vocabulary import DrugClass, MagnesiumProductKind
from terminology.model import CodeRef, MedicationClassification
from terminology.valuesets import SupplementDraft

SNOMED = "http://snomed.info/sct"
V2_ROUTE = "http://terminology.hl7.org/CodeSystem/v2-0162"

# Salts named by the clauses of section 5 (ingredient names as the value sets spell them).
LIQUID_LAXATIVE_SALTS = frozenset({"magnesium citrate", "magnesium hydroxide", "magnesium sulfate"})
ANTACID_SALTS = frozenset({"magnesium hydroxide", "magnesium trisilicate"})
FORM_UNREAD_SUPPLEMENT_SALTS = frozenset({"magnesium citrate", "magnesium sulfate"})
# The salts given intravenously; a premix "in dextrose" of any other salt is not a product.
PARENTERAL_SALTS = frozenset({"magnesium sulfate", "magnesium chloride"})
# Salts whose liquids are always oral, so a bare "solution" or a strength per volume is an oral liquid.
ORAL_ONLY_LIQUID_SALTS = frozenset({"magnesium citrate", "magnesium hydroxide"})

SALT_CLASSES = (DrugClass.MG_SALT_ORGANIC, DrugClass.MG_SALT_UNSPECIFIED, DrugClass.MG_SALT_INORGANIC)

# Whole words, case-insensitive. "for oral solution" first: granules or powder dissolved before use are a solution.
_ORAL_LIQUID = re.compile(
    r"\b(for\s+oral\s+(solution|suspension)|oral\s+(solution|suspension|liquid)|suspension|liquid|syrup|elixir)\b",
    re.IGNORECASE,
)
# A bare "solution" may be an injection or an irrigation: oral only with an oral route, or for the citrate or hydroxide.
_SOLUTION = re.compile(r"\bsolution\b", re.IGNORECASE)
_SOLID_ORAL = re.compile(
    r"\b(tablets?|tabs?|caplets?|capsules?|caps?|softgels?|powders?|granules|chewables?|chews?|gumm(y|ies)|lozenges?|"
    r"extended[\s-]+release|delayed[\s-]+release|sustained[\s-]+release|er|sr|xr|dr|ec)\b",
    re.IGNORECASE,
)
_PREMIX = re.compile(
    r"\b(in|with)\s+(sterile\s+)?(water|dextrose|glucose|d5w|sodium\s+chloride|normal\s+saline|ns)\b|\bpremix(ed)?\b",
    re.IGNORECASE,
)
# A strength per volume: "58.2 MG/ML", "1.745 g/30 mL", "2 g / 50 mL".
_PER_VOLUME = re.compile(
    r"(?<![\d.])\d+(\.\d+)?\s*(mg|g|gm|grams?|meq|mmol)\s*/\s*(\d+(\.\d+)?\s*)?ml\b", re.IGNORECASE
)
_ALUMINIUM = re.compile(r"\balumini?um\b", re.IGNORECASE)
_ORAL_ROUTE_TEXT = re.compile(r"\b(oral(ly)?|by\s+mouth|per\s+os|po)\b", re.IGNORECASE)
# "magnesium" naming no salt is a supplement of unstated salt, except where it is the counter-ion or excipient of
# another drug: "esomeprazole magnesium", "magnesium stearate", "magnesium salicylate" (an analgesic), "magnesium
# oxybate" (a hypnotic). Those products are not magnesium products of section 5.
_PLAIN_MAGNESIUM = re.compile(r"(?<![a-z0-9])(?:(?P<before>[a-z]+)[\s-]+)?magnesium(?:[\s-]+(?P<after>[a-z]+))?", re.I)
NOT_A_MAGNESIUM_PRODUCT_ANIONS = frozenset({"stearate", "salicylate", "oxybate", "silicate"})
ORAL_ROUTE_CODES: frozenset[tuple[str, str]] = frozenset(
    {
        (SNOMED, "26643006"),  # Oral route
        (V2_ROUTE, "PO"),
    }
)


class ProductRule(StrEnum):
    """The clause of section 5 that decided a product's kind, in the order they are tried."""

    PRODUCT_CODE = "product-code"
    PARENTERAL_ROUTE = "parenteral-route"
    PARENTERAL_WORDS = "parenteral-words"
    PARENTERAL_SOLUTION = "parenteral-solution"
    PRODUCT_NAME = "product-name"
    ORAL_LIQUID_LAXATIVE_SALT = "oral-liquid-laxative-salt"
    ANTACID_SALT = "antacid-salt"
    SOLID_ORAL_FORM = "solid-oral-form"
    CITRATE_SULFATE_FORM_UNREAD = "citrate-sulfate-form-unread"
    FORM_UNREAD_DEFAULT = "form-unread-default"


@dataclass(frozen=True)
class MagnesiumSalt:
    """One magnesium salt of a product, its class and how it was recognised."""

    name: str
    salt_class: DrugClass
    matched_by: str


@dataclass(frozen=True)
class MagnesiumProduct:
    """A magnesium-containing medication: its kind, its salts, and the clause of section 5 that decided the kind."""

    kind: MagnesiumProductKind
    salts: tuple[MagnesiumSalt, ...]
    rule: ProductRule
    decided_by: str
    notes: tuple[str, ...] = ()

    @property
    def salt_class(self) -> DrugClass:
        """The product's salt class: organic when any salt is organic (it is then not an inorganic-only product that
        switch-to-organic concerns), else unspecified when a salt is not named, else inorganic."""
        classes = {salt.salt_class for salt in self.salts}
        return next(c for c in SALT_CLASSES if c in classes)

    @property
    def salt_name(self) -> str:
        """The name of the (first) magnesium salt, e.g. "magnesium citrate"."""
        return self.salts[0].name


@dataclass(frozen=True)
class ProductClues:
    """What terminology read from one medication, for ``decide``.

    ``names`` are every text that can name a dose form: the product text, the codings' displays, the RxNorm names of
    codes the value sets know, ``Medication.form``. Evidence strings are for the card's and the audit's "why".
    """

    salts: tuple[MagnesiumSalt, ...]
    names: tuple[str, ...] = ()
    code_kinds: tuple[tuple[str, MagnesiumProductKind], ...] = ()
    parenteral_route: str | None = None
    parenteral_text: str | None = None
    product_names: tuple[tuple[str, MagnesiumProductKind], ...] = ()
    oral_route: bool = False


def salts_of(classification: MedicationClassification) -> tuple[MagnesiumSalt, ...]:
    """The magnesium salts among a medication's classified ingredients."""
    salts: list[MagnesiumSalt] = []
    for ingredient in classification.ingredients:
        salt_class = next((c for c in SALT_CLASSES if c in ingredient.classes), None)
        if salt_class is not None:
            salts.append(MagnesiumSalt(ingredient.name, salt_class, ingredient.matched_by))
    return tuple(salts)


def names_plain_magnesium(names: Iterable[str], other_ingredients: Iterable[str]) -> bool:
    """Whether a text names magnesium itself, not only as the counter-ion or excipient of another drug.

    ``other_ingredients`` are the non-magnesium ingredients found in the same texts ("esomeprazole"): "esomeprazole
    magnesium" is the PPI's salt, not a magnesium supplement.
    """
    others = {word for name in other_ingredients for word in name.lower().split()}
    for name in names:
        for match in _PLAIN_MAGNESIUM.finditer(name):
            before = (match.group("before") or "").lower()
            after = (match.group("after") or "").lower()
            if before not in others and after not in NOT_A_MAGNESIUM_PRODUCT_ANIONS:
                return True
    return False


def is_oral_route(codings: Iterable[CodeRef], text: str | None) -> bool:
    """True when a dosage route coding or its text says oral (by mouth, PO)."""
    for coding in codings:
        if (coding.system or "", (coding.code or "").strip()) in ORAL_ROUTE_CODES:
            return True
        if coding.display and _ORAL_ROUTE_TEXT.search(coding.display):
            return True
    return bool(text and _ORAL_ROUTE_TEXT.search(text))


def names_premix(names: Iterable[str]) -> str | None:
    """The first name that says the product is premixed in a diluent ("in dextrose", "in water"), or None."""
    return next((name for name in names if _PREMIX.search(name)), None)


def _first(pattern: re.Pattern[str], names: Iterable[str]) -> tuple[str, str] | None:
    for name in names:
        match = pattern.search(name)
        if match:
            return name, match.group(0)
    return None


def decide(clues: ProductClues) -> MagnesiumProduct:
    """The kind of a magnesium product from what terminology read of it, by the clauses of section 5 in order."""
    salts = clues.salts
    salt_names = {salt.name for salt in salts}
    named = " and ".join(salt.name for salt in salts)

    def product(kind: MagnesiumProductKind, rule: ProductRule, why: str, *notes: str) -> MagnesiumProduct:
        return MagnesiumProduct(kind, salts, rule, why, tuple(notes))

    if clues.code_kinds:
        evidence, kind = clues.code_kinds[0]
        notes = [
            f"{other} is {other_kind}; the first product code decides"
            for other, other_kind in clues.code_kinds[1:]
            if other_kind != kind
        ]
        if kind != MagnesiumProductKind.PARENTERAL and (clues.parenteral_route or clues.parenteral_text):
            # A tablet ordered "IV" is an entry error; the product dispensed is what the code says. Said, not hidden.
            said = clues.parenteral_route or clues.parenteral_text
            notes.append(f"{said}, but the product code is {kind}: the product code decides")
        return product(kind, ProductRule.PRODUCT_CODE, f"{evidence} is {kind}", *notes)

    if clues.parenteral_route:
        return product(MagnesiumProductKind.PARENTERAL, ProductRule.PARENTERAL_ROUTE, clues.parenteral_route)
    if clues.parenteral_text:
        return product(MagnesiumProductKind.PARENTERAL, ProductRule.PARENTERAL_WORDS, clues.parenteral_text)
    oral_named = clues.oral_route or _first(_ORAL_ROUTE_TEXT, clues.names) is not None
    # Not for what names itself an oral or solid product ("Epsom salt", "powder, dissolve in water").
    solid_named = _first(_SOLID_ORAL, clues.names) is not None
    if salt_names & PARENTERAL_SALTS and not (oral_named or solid_named or clues.product_names):
        premix = names_premix(clues.names)
        if premix is not None:
            return product(
                MagnesiumProductKind.PARENTERAL,
                ProductRule.PARENTERAL_SOLUTION,
                f"'{premix}' names {named} premixed in a diluent for infusion",
            )
        per_volume = _first(_PER_VOLUME, clues.names)
        if per_volume is not None:
            return product(
                MagnesiumProductKind.PARENTERAL,
                ProductRule.PARENTERAL_SOLUTION,
                f"'{per_volume[0]}': {named} as a solution ({per_volume[1]}) with no oral route is an infusion",
            )

    if clues.product_names:
        name, kind = clues.product_names[0]
        return product(kind, ProductRule.PRODUCT_NAME, f"'{name}' names a product of kind {kind}")

    liquid = _first(_ORAL_LIQUID, clues.names)
    if liquid is None and (clues.oral_route or salt_names & ORAL_ONLY_LIQUID_SALTS):
        liquid = _first(_SOLUTION, clues.names)
    if liquid is None and salt_names & ORAL_ONLY_LIQUID_SALTS:
        per_volume = _first(_PER_VOLUME, clues.names)
        liquid = (per_volume[0], f"solution ({per_volume[1]})") if per_volume else None
    laxative_salts = sorted(salt_names & LIQUID_LAXATIVE_SALTS)
    if liquid is not None and laxative_salts:
        return product(
            MagnesiumProductKind.LAXATIVE_ANTACID,
            ProductRule.ORAL_LIQUID_LAXATIVE_SALT,
            f"'{liquid[0]}': {liquid[1].lower()} of {' and '.join(laxative_salts)}, a laxative or antacid",
        )

    antacid_salts = sorted(salt_names & ANTACID_SALTS)
    if antacid_salts:
        return product(
            MagnesiumProductKind.LAXATIVE_ANTACID,
            ProductRule.ANTACID_SALT,
            f"{' and '.join(antacid_salts)} is a laxative or antacid in any oral form",
        )
    aluminium = _first(_ALUMINIUM, clues.names)
    if aluminium is not None:
        return product(
            MagnesiumProductKind.LAXATIVE_ANTACID,
            ProductRule.ANTACID_SALT,
            f"'{aluminium[0]}': {named} with aluminium, an aluminium/magnesium antacid",
        )

    solid = _first(_SOLID_ORAL, clues.names)
    if solid is not None:
        return product(
            MagnesiumProductKind.ORAL_SUPPLEMENT,
            ProductRule.SOLID_ORAL_FORM,
            f"'{solid[0]}': {named}, '{solid[1]}' (a tablet, capsule, powder or chewable form)",
        )

    if salt_names & FORM_UNREAD_SUPPLEMENT_SALTS:
        return product(
            MagnesiumProductKind.ORAL_SUPPLEMENT,
            ProductRule.CITRATE_SULFATE_FORM_UNREAD,
            f"{named} whose dose form cannot be read is an oral supplement",
        )
    return product(
        MagnesiumProductKind.ORAL_SUPPLEMENT,
        ProductRule.FORM_UNREAD_DEFAULT,
        f"{named} whose dose form cannot be read",
        "clinical-rules.md section 5 names no clause for this salt without a readable dose form; it is taken as an"
        " oral supplement, the kind every such product is sold as",
    )


class StrengthBasis(StrEnum):
    """What a drafted product's strength is a quantity of (section 9: doseQuantity only when elemental magnesium)."""

    ELEMENTAL_MAGNESIUM = "elemental-magnesium"
    SALT = "salt"
    # No source says: treat as not elemental (no doseQuantity), and say the elemental dose in the text.
    NOT_STATED = "not-stated"


@dataclass(frozen=True)
class SupplementProduct:
    """An oral supplement product to draft as a MedicationRequest for one salt (drafts-mg-supplement-products)."""

    salt: str
    system: str
    code: str
    display: str
    term_type: str | None
    form: str
    strength_mg: float
    strength_basis: StrengthBasis
    strength_basis_source: str
    sources: tuple[str, ...]

    @property
    def strength_is_elemental(self) -> bool:
        """True only when a source says the product's strength is elemental magnesium."""
        return self.strength_basis == StrengthBasis.ELEMENTAL_MAGNESIUM


def supplement_products(drafts: Iterable[SupplementDraft]) -> Mapping[str, SupplementProduct]:
    """The product to draft per salt name ("magnesium citrate" -> ...), from the supplement-draft value set.

    Incomplete records (no form, strength or basis) are left out here; ``mgcds terminology check`` names them.
    """
    found: dict[str, SupplementProduct] = {}
    for draft in drafts:
        if not (draft.dose_form and draft.strength_mg is not None and draft.strength_basis):
            continue
        if draft.strength_basis not in set(StrengthBasis) or draft.salt in found:
            continue
        found[draft.salt] = SupplementProduct(
            salt=draft.salt,
            system=draft.system,
            code=draft.code,
            display=draft.display,
            term_type=draft.term_type,
            form=draft.dose_form,
            strength_mg=draft.strength_mg,
            strength_basis=StrengthBasis(draft.strength_basis),
            strength_basis_source=draft.strength_basis_source or "",
            sources=draft.sources,
        )
    return found


def readable_names(*groups: Sequence[str | None]) -> tuple[str, ...]:
    """The non-empty texts of several groups, in order, each once."""
    seen: dict[str, None] = {}
    for group in groups:
        for name in group:
            if name and name.strip():
                seen.setdefault(name.strip(), None)
    return tuple(seen)


__all__ = [
    "MagnesiumProduct",
    "MagnesiumProductKind",
    "MagnesiumSalt",
    "ProductClues",
    "ProductRule",
    "StrengthBasis",
    "SupplementProduct",
    "decide",
    "is_oral_route",
    "salts_of",
    "supplement_products",
]

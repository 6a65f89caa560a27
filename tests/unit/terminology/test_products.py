"""Magnesium product kinds (clinical-rules.md version 2, section 5) and the supplement products drafted as orders
(section 9).

Every expected kind below is read by hand from the rule text, cited in the RULE column by the clause that decides it
(the first that applies, in section 5's order), and, for codes, from the product's RxNorm name as its source prints it.
None is pasted from the code's output.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import pytest

from cds_service.engine.vocabulary import DrugClass, MagnesiumProductKind
from terminology import CodeRef, Terminology
from terminology.products import MagnesiumSalt, ProductClues, ProductRule, StrengthBasis, decide
from terminology.valuesets import default_valueset_dir

from .conftest import RXNORM, SNOMED

ORAL = MagnesiumProductKind.ORAL_SUPPLEMENT
LAXATIVE = MagnesiumProductKind.LAXATIVE_ANTACID
PARENTERAL = MagnesiumProductKind.PARENTERAL
ORGANIC = DrugClass.MG_SALT_ORGANIC
INORGANIC = DrugClass.MG_SALT_INORGANIC
UNSPECIFIED = DrugClass.MG_SALT_UNSPECIFIED
V2_ROUTE = "http://terminology.hl7.org/CodeSystem/v2-0162"
IV_ROUTE = CodeRef(SNOMED, "47625008", "Intravenous route")
ORAL_ROUTE = CodeRef(SNOMED, "26643006", "Oral route")


@dataclass(frozen=True)
class Case:
    """One medication as an EHR sends it, and section 5's answer."""

    text: str | None
    kind: MagnesiumProductKind
    salt_class: DrugClass
    salt: str
    rule: ProductRule
    why: str
    codings: tuple[CodeRef, ...] = ()
    route: tuple[CodeRef, ...] = ()
    route_text: str | None = None
    form: tuple[str, ...] = field(default=())


R = ProductRule
CASES = [
    # The brief's tricky texts.
    Case(
        "Magnesium citrate oral solution 1.745 g/30 mL",
        LAXATIVE,
        ORGANIC,
        "magnesium citrate",
        R.ORAL_LIQUID_LAXATIVE_SALT,
        "an oral solution of the citrate; the bowel preparation of the section 5 table",
    ),
    Case(
        "Milk of Magnesia",
        LAXATIVE,
        INORGANIC,
        "magnesium hydroxide",
        R.PRODUCT_NAME,
        "milk of magnesia is magnesium hydroxide, a laxative-antacid in the section 5 table",
    ),
    Case(
        "Maalox",
        LAXATIVE,
        INORGANIC,
        "magnesium hydroxide",
        R.PRODUCT_NAME,
        "an aluminium/magnesium antacid (RxNorm: Maalox Plus, Maalox Max are Al/Mg hydroxide suspensions)",
    ),
    Case(
        "Mylanta",
        LAXATIVE,
        INORGANIC,
        "magnesium hydroxide",
        R.PRODUCT_NAME,
        "an aluminium/magnesium hydroxide antacid",
    ),
    Case(
        "Gaviscon",
        LAXATIVE,
        INORGANIC,
        "magnesium carbonate",
        R.PRODUCT_NAME,
        "US Gaviscon is aluminium hydroxide / magnesium carbonate (RxNorm SBDs 212978, 1251365, 404472): Al/Mg antacid",
    ),
    Case(
        "Epsom salt",
        LAXATIVE,
        INORGANIC,
        "magnesium sulfate",
        R.PRODUCT_NAME,
        "oral magnesium sulfate (Epsom salt), a laxative in the section 5 table",
    ),
    Case(
        "magnesium sulfate 50% injection",
        PARENTERAL,
        INORGANIC,
        "magnesium sulfate",
        R.PARENTERAL_WORDS,
        "the word injection always makes it parenteral",
    ),
    Case(
        "Mag-Tab SR",
        ORAL,
        ORGANIC,
        "magnesium lactate",
        R.PRODUCT_NAME,
        "Mag-Tab SR is magnesium lactate extended release caplets (RxNorm SBD 210918), a supplement",
    ),
    Case(
        "Slow-Mag",
        ORAL,
        INORGANIC,
        "magnesium chloride",
        R.PRODUCT_NAME,
        "Slow-Mag is magnesium chloride delayed release tablets (RxNorm SBD 1245389), a supplement",
    ),
    Case(
        "magnesium oxide 400 mg tablet",
        ORAL,
        INORGANIC,
        "magnesium oxide",
        R.SOLID_ORAL_FORM,
        "a tablet is an oral supplement",
    ),
    Case(
        "magnesium citrate",
        ORAL,
        ORGANIC,
        "magnesium citrate",
        R.CITRATE_SULFATE_FORM_UNREAD,
        "a citrate whose form cannot be read is an oral supplement",
    ),
    Case(
        "Magnesium 250 mg",
        ORAL,
        UNSPECIFIED,
        "magnesium (salt not stated)",
        R.FORM_UNREAD_DEFAULT,
        "no salt, no form: no clause of section 5 decides; an oral supplement, the salt unspecified",
    ),
    # Parenteral: route, words, premix.
    Case(
        "magnesium sulfate 2 g",
        PARENTERAL,
        INORGANIC,
        "magnesium sulfate",
        R.PARENTERAL_ROUTE,
        "a parenteral route always makes it parenteral",
        route=(IV_ROUTE,),
    ),
    Case(
        "magnesium sulfate 2 g",
        PARENTERAL,
        INORGANIC,
        "magnesium sulfate",
        R.PARENTERAL_ROUTE,
        "HL7 v2 route IM",
        route=(CodeRef(V2_ROUTE, "IM", None),),
    ),
    Case(
        "Magnesium sulfate 2 g IV over 1 hour",
        PARENTERAL,
        INORGANIC,
        "magnesium sulfate",
        R.PARENTERAL_WORDS,
        "the word IV",
    ),
    Case(
        "magnesium sulfate 4 g intramuscular",
        PARENTERAL,
        INORGANIC,
        "magnesium sulfate",
        R.PARENTERAL_WORDS,
        "the word intramuscular",
    ),
    Case(
        "Magnesium sulfate 4 g/100 mL infusion",
        PARENTERAL,
        INORGANIC,
        "magnesium sulfate",
        R.PARENTERAL_WORDS,
        "the word infusion",
    ),
    Case(
        "magnesium sulfate",
        PARENTERAL,
        INORGANIC,
        "magnesium sulfate",
        R.PARENTERAL_WORDS,
        "Medication.form 'Injectable Solution'",
        form=("Injectable Solution",),
    ),
    Case(
        "magnesium sulfate 1 g in dextrose 5% 100 mL",
        PARENTERAL,
        INORGANIC,
        "magnesium sulfate",
        R.PARENTERAL_SOLUTION,
        "a sulfate premixed in dextrose is an infusion (no verified RxNorm code: by name)",
    ),
    Case(
        "Magnesium sulfate in water 40 mg/mL",
        PARENTERAL,
        INORGANIC,
        "magnesium sulfate",
        R.PARENTERAL_SOLUTION,
        "a sulfate premixed in water",
    ),
    Case(
        "magnesium chloride 200 mg/mL",
        PARENTERAL,
        INORGANIC,
        "magnesium chloride",
        R.PARENTERAL_SOLUTION,
        "a chloride solution by strength per volume with no oral route: the injectable concentrate",
    ),
    Case(
        "magnesium chloride 200 mg/mL",
        ORAL,
        INORGANIC,
        "magnesium chloride",
        R.FORM_UNREAD_DEFAULT,
        "the same by mouth: not a laxative salt, not an antacid, no solid form",
        route=(ORAL_ROUTE,),
    ),
    Case(
        "magnesium sulfate powder, dissolve in water",
        ORAL,
        INORGANIC,
        "magnesium sulfate",
        R.SOLID_ORAL_FORM,
        "a powder is an oral supplement (section 5 as written); 'in water' here is not a premix",
    ),
    # Oral liquids of the citrate, hydroxide, sulfate.
    Case(
        "Magnesium sulfate oral solution",
        LAXATIVE,
        INORGANIC,
        "magnesium sulfate",
        R.ORAL_LIQUID_LAXATIVE_SALT,
        "an oral solution of the sulfate",
    ),
    Case(
        "magnesium sulfate 1000 MG Granules for Oral Solution",
        LAXATIVE,
        INORGANIC,
        "magnesium sulfate",
        R.ORAL_LIQUID_LAXATIVE_SALT,
        "granules for oral solution are taken as an oral solution",
    ),
    Case(
        "magnesium sulfate solution",
        LAXATIVE,
        INORGANIC,
        "magnesium sulfate",
        R.ORAL_LIQUID_LAXATIVE_SALT,
        "a solution given by mouth (route PO)",
        route=(CodeRef(V2_ROUTE, "PO", None),),
    ),
    Case(
        "magnesium sulfate solution",
        ORAL,
        INORGANIC,
        "magnesium sulfate",
        R.CITRATE_SULFATE_FORM_UNREAD,
        "a bare 'solution' of the sulfate with no route may be an injection or an irrigation: form not read",
    ),
    Case(
        "Magnesium citrate 1.745 g/30 mL",
        LAXATIVE,
        ORGANIC,
        "magnesium citrate",
        R.ORAL_LIQUID_LAXATIVE_SALT,
        "a citrate by volume is the oral solution (never parenteral)",
    ),
    Case(
        "magnesium hydroxide",
        LAXATIVE,
        INORGANIC,
        "magnesium hydroxide",
        R.ORAL_LIQUID_LAXATIVE_SALT,
        "Medication.form 'Oral Suspension'",
        form=("Oral Suspension",),
    ),
    # Antacids in any oral form.
    Case(
        "magnesium hydroxide 400 mg chewable tablet",
        LAXATIVE,
        INORGANIC,
        "magnesium hydroxide",
        R.ANTACID_SALT,
        "hydroxide is a laxative-antacid in any oral form, before the tablet clause",
    ),
    Case(
        "magnesium trisilicate 250 mg tablet",
        LAXATIVE,
        INORGANIC,
        "magnesium trisilicate",
        R.ANTACID_SALT,
        "trisilicate is a laxative-antacid in any oral form",
    ),
    Case(
        "aluminium hydroxide / magnesium carbonate chewable tablet",
        LAXATIVE,
        INORGANIC,
        "magnesium carbonate",
        R.ANTACID_SALT,
        "an aluminium/magnesium antacid",
    ),
    # Solid oral supplements.
    Case("magnesium glycinate 120 mg capsule", ORAL, ORGANIC, "magnesium glycinate", R.SOLID_ORAL_FORM, "a capsule"),
    Case(
        "Magnesium sulfate 100 MG Oral Capsule",
        ORAL,
        INORGANIC,
        "magnesium sulfate",
        R.SOLID_ORAL_FORM,
        "a sulfate capsule is a supplement",
    ),
    Case(
        "magnesium chloride 64 mg DR tab",
        ORAL,
        INORGANIC,
        "magnesium chloride",
        R.SOLID_ORAL_FORM,
        "a delayed release tablet",
    ),
    Case("magnesium citrate powder", ORAL, ORGANIC, "magnesium citrate", R.SOLID_ORAL_FORM, "a powder"),
    # Product codes: the kind read from the RxNorm name (source: the extract's name for the code).
    Case(
        None,
        PARENTERAL,
        INORGANIC,
        "magnesium sulfate",
        R.PRODUCT_CODE,
        "RxNorm 1658244 '10 ML magnesium sulfate 500 MG/ML Injection'",
        codings=(CodeRef(RXNORM, "1658244", None),),
    ),
    Case(
        None,
        PARENTERAL,
        INORGANIC,
        "magnesium chloride",
        R.PRODUCT_CODE,
        "RxNorm 311422 'magnesium chloride 200 MG/ML Injectable Solution'",
        codings=(CodeRef(RXNORM, "311422", None),),
    ),
    Case(
        None,
        ORAL,
        INORGANIC,
        "magnesium oxide",
        R.PRODUCT_CODE,
        "RxNorm 198741 'magnesium oxide 400 MG Oral Tablet'",
        codings=(CodeRef(RXNORM, "198741", None),),
    ),
    Case(
        None,
        LAXATIVE,
        ORGANIC,
        "magnesium citrate",
        R.PRODUCT_CODE,
        "RxNorm 1052760 'magnesium citrate 58.2 MG/ML Oral Solution'",
        codings=(CodeRef(RXNORM, "1052760", None),),
    ),
    Case(
        None,
        LAXATIVE,
        INORGANIC,
        "magnesium hydroxide",
        R.PRODUCT_CODE,
        "RxNorm 210887 '... Oral Suspension [Phillips Milk of Magnesia]'",
        codings=(CodeRef(RXNORM, "210887", None),),
    ),
    Case(
        None,
        LAXATIVE,
        INORGANIC,
        "magnesium sulfate",
        R.PRODUCT_CODE,
        "RxNorm 2465556 Sutab: a bowel preparation although a tablet",
        codings=(CodeRef(RXNORM, "2465556", None),),
    ),
    Case(
        None,
        LAXATIVE,
        INORGANIC,
        "magnesium oxide",
        R.PRODUCT_CODE,
        "RxNorm 1991509 Clenpiq: a bowel preparation (oxide + citric acid solution)",
        codings=(CodeRef(RXNORM, "1991509", None),),
    ),
    Case(
        None,
        ORAL,
        ORGANIC,
        "magnesium lactate",
        R.PRODUCT_CODE,
        "RxNorm 210918 'magnesium lactate 84 MG Extended Release Oral Tablet [Mag-Tab]'",
        codings=(CodeRef(RXNORM, "210918", None),),
    ),
    Case(
        "Magnesium oxide 400mg",
        ORAL,
        INORGANIC,
        "magnesium oxide",
        R.PRODUCT_CODE,
        "the code decides before the route: an oral tablet ordered IV is an entry error (a note says so)",
        codings=(CodeRef(RXNORM, "198741", None),),
        route=(IV_ROUTE,),
    ),
    Case(
        "magnesium sulfate 2 g IV",
        PARENTERAL,
        INORGANIC,
        "magnesium sulfate",
        R.PARENTERAL_WORDS,
        "an ingredient code (IN 6585) carries no form: the text decides",
        codings=(CodeRef(RXNORM, "6585", None),),
    ),
    Case(
        None,
        PARENTERAL,
        INORGANIC,
        "magnesium sulfate",
        R.PARENTERAL_WORDS,
        "a local code whose display names IVPB (a route word terminology.routes reads)",
        codings=(CodeRef("http://example.org/formulary", "MG4", "Magnesium Sulfate 4 g/100 mL IVPB"),),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.text or c.codings[0].code}:{c.rule}")
def test_product_kind(term: Terminology, case: Case) -> None:
    product = term.magnesium_product(case.codings, case.text, case.route, case.route_text, case.form)
    assert product is not None, case.why
    assert (product.kind, product.rule) == (case.kind, case.rule), case.why
    assert product.salt_class == case.salt_class
    assert product.salt_name == case.salt
    assert product.decided_by


def test_the_code_decides_over_a_parenteral_route_and_says_so(term: Terminology) -> None:
    product = term.magnesium_product([CodeRef(RXNORM, "198741", None)], None, [IV_ROUTE])
    assert product is not None
    assert product.kind == ORAL
    assert any("Intravenous route" in note and "product code decides" in note for note in product.notes)


def test_whatever_is_parenteral_is_a_parenteral_product(term: Terminology) -> None:
    # The existing is_parenteral answer and the kind agree, except where a known product code decides.
    for case in CASES:
        if term.is_parenteral(case.codings, case.text, case.route, case.route_text) and case.rule != R.PRODUCT_CODE:
            product = term.magnesium_product(case.codings, case.text, case.route, case.route_text, case.form)
            assert product is not None
            assert product.kind == PARENTERAL, case.why


@pytest.mark.parametrize(
    "text",
    [
        "furosemide 40 mg tablet",
        "zinc oxide 20% ointment",
        "esomeprazole magnesium 40 MG Delayed Release Oral Capsule",  # the PPI's salt, not a magnesium product
        "omeprazole magnesium 20.6 mg",
        "calcium carbonate 500 mg (magnesium stearate)",  # an excipient
        "magnesium salicylate 580 mg tablet",  # an analgesic
        "Rolaids",  # a brand whose formulations changed; not a recognised name (codes cover it)
        None,
    ],
)
def test_not_a_magnesium_product(term: Terminology, text: str | None) -> None:
    assert term.magnesium_product([], text) is None


def test_plain_magnesium_beside_another_drug_still_counts(term: Terminology) -> None:
    product = term.magnesium_product([], "omeprazole magnesium 20 mg and magnesium 250 mg tablet")
    assert product is not None
    assert product.salt_class == UNSPECIFIED


def test_a_contained_medication_is_read_by_its_ingredients_and_form(term: Terminology) -> None:
    # A contained Medication: local code, RxNorm ingredient magnesium sulfate (IN 6585), form "Injection".
    product = term.magnesium_product(
        [CodeRef("http://example.org/local", "A7", None)],
        None,
        form_names=["Injection"],
        ingredient_concepts=[([CodeRef(RXNORM, "6585", None)], None)],
    )
    assert product is not None
    assert (product.kind, product.salt_name) == (PARENTERAL, "magnesium sulfate")


def test_the_salt_class_of_a_mixed_product_is_organic() -> None:
    # Section 7.2: switch-to-organic only when every oral salt is inorganic; a product with an organic salt is not.
    clues = ProductClues(
        salts=(
            MagnesiumSalt("magnesium oxide", INORGANIC, "text"),
            MagnesiumSalt("magnesium citrate", ORGANIC, "text"),
        ),
        names=("magnesium citrate 45 MG / magnesium oxide 45 MG Extended Release Oral Tablet",),
    )
    product = decide(clues)
    assert (product.kind, product.salt_class) == (ORAL, ORGANIC)


# ---- the value sets' kinds ----------------------------------------------------------------------------------------


def _coded_products() -> list[tuple[str, str, str, str | None]]:
    """(code, RxNorm name, kind, reason) of every coded magnesium product, read from the files themselves."""
    rows = []
    for path in sorted(default_valueset_dir().glob("drugs-mg-salt-*.json")):
        raw = json.loads(path.read_text(encoding="utf-8"))
        for include in raw["compose"]["include"]:
            if not include["system"].endswith("rxnorm"):
                continue
            for concept in include["concept"]:
                values = {
                    e["url"].rsplit("/", 1)[1]: next(v for k, v in e.items() if k != "url")
                    for e in concept["extension"]
                }
                if "mg-product-kind" in values:
                    rows.append(
                        (
                            concept["code"],
                            concept["display"],
                            values["mg-product-kind"],
                            values.get("mg-product-kind-reason"),
                        )
                    )
    return rows


def test_each_coded_kind_is_what_its_name_reads_as_or_says_why_not(term: Terminology) -> None:
    # A kind typed wrongly on a code fails here: its own RxNorm name, read as free text by the rules, must give the
    # same kind, unless the concept carries the reason it does not (a bowel preparation sold as tablets).
    unexplained, needless = [], []
    for code, name, kind, reason in _coded_products():
        product = term.magnesium_product([], name)
        assert product is not None, name
        if product.kind != kind and reason is None:
            unexplained.append((code, name, kind, product.kind))
        if product.kind == kind and reason is not None:
            needless.append((code, name))
    assert unexplained == []
    assert needless == []


def test_the_exceptions_are_the_bowel_preparations() -> None:
    # Sutab (magnesium sulfate tablets) and Clenpiq (magnesium oxide + citric acid solution): colon cleansing. Their
    # generic names need the reason; the branded names say Sutab and Clenpiq, names that are laxatives by themselves.
    explained = {code for code, _, _, reason in _coded_products() if reason}
    assert explained == {"2465554", "2626364", "1994540"}


def test_every_kind_is_used() -> None:
    assert {kind for _, _, kind, _ in _coded_products()} == set(MagnesiumProductKind)


# ---- the supplement products drafted as orders (section 9) ---------------------------------------------------------

# Expected codes: the RxNorm extract (davidanderson3/rxnorm-ingredients web/data/M.json, NLM release 2025-10-06), the
# only plain tablet SCD of each salt. Strength basis: Mag-Tab SR labels (manufacturer: "84 mg of elemental
# magnesium"; "7 mEq (84 mg) magnesium as magnesium L-lactate dihydrate (835 mg)"); none found for the citrate and
# glycinate tablets.
DRAFTS = [
    ("magnesium citrate", "1313985", "magnesium citrate 100 MG Oral Tablet", 100, StrengthBasis.NOT_STATED),
    ("magnesium glycinate", "849497", "magnesium glycinate 100 MG Oral Tablet", 100, StrengthBasis.NOT_STATED),
    ("magnesium lactate", "198936", "magnesium lactate 84 MG Extended Release Oral Tablet", 84,
     StrengthBasis.ELEMENTAL_MAGNESIUM),
]  # fmt: skip


def test_there_is_a_draft_for_each_salt_of_section_9(term: Terminology) -> None:
    assert set(term.supplement_products()) == {"magnesium citrate", "magnesium glycinate", "magnesium lactate"}


@pytest.mark.parametrize(("salt", "code", "name", "strength", "basis"), DRAFTS)
def test_draft_product(term: Terminology, salt: str, code: str, name: str, strength: int, basis: StrengthBasis) -> None:
    product = term.supplement_products()[salt]
    assert (product.system, product.code, product.display) == (RXNORM, code, name)
    assert product.strength_mg == strength
    assert product.strength_basis == basis
    assert product.strength_is_elemental is (basis == StrengthBasis.ELEMENTAL_MAGNESIUM)
    assert product.strength_basis_source
    assert product.sources


@pytest.mark.parametrize("salt", ["magnesium citrate", "magnesium glycinate", "magnesium lactate"])
def test_each_draft_reads_as_its_salt_in_a_tablet_or_capsule(term: Terminology, salt: str) -> None:
    # The draft's own RxNorm name, read as free text, must name exactly its salt, a tablet or capsule, never a solution
    # (magnesium citrate oral solution is a bowel preparation), and state the strength the record carries.
    product = term.supplement_products()[salt]
    assert [i.name for i in term.classify_medication([], product.display).ingredients] == [salt]
    assert re.search(r"\b(tablet|capsule)\b", product.display, re.IGNORECASE)
    assert product.form in product.display.lower()
    assert "solution" not in product.display.lower()
    number = re.search(r"(\d+(\.\d+)?) MG\b", product.display)
    assert number is not None
    assert float(number.group(1)) == product.strength_mg
    kind = term.magnesium_product([CodeRef(product.system, product.code, None)])
    assert kind is not None
    assert (kind.kind, kind.salt_name, kind.salt_class) == (ORAL, salt, ORGANIC)

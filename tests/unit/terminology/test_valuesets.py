"""The value set files themselves, and ``mgcds terminology check``."""

from __future__ import annotations

import argparse
import io
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.valueset import ValueSet

from cds_service.engine.vocabulary import DrugClass
from terminology import LAB_CONCEPTS
from terminology.cli import coverage_of, register, run_check, run_coverage
from terminology.valuesets import default_valueset_dir, load_indexes

FILES = sorted(default_valueset_dir().glob("*.json"))


def test_there_is_one_file_per_concept() -> None:
    concepts = []
    for path in FILES:
        raw = json.loads(path.read_text(encoding="utf-8"))
        concepts += [e["valueCode"] for e in raw["extension"] if e["url"].endswith("/mgcds-concept")]
    assert sorted(concepts) == sorted(
        [
            *DrugClass,
            *LAB_CONCEPTS,
            "auditc-frequency",
            "auditc-typical-drinks",
            "alcohol-use-disorder",
            "mg-supplement-drafts",
        ]
    )


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_each_file_is_a_valid_r4_valueset_with_provenance(path: Path) -> None:
    resource = ValueSet.model_validate(json.loads(path.read_text(encoding="utf-8")))
    assert resource.url == f"https://mgcds.example.org/fhir/ValueSet/{path.stem}"
    assert resource.version
    assert resource.name
    assert resource.title
    assert resource.description is not None
    # Every description says where its codes came from and when.
    assert "2026" in resource.description or "clinical-rules.md" in resource.description


@pytest.fixture
def valueset_copy(tmp_path: Path) -> Path:
    """A writable copy of the packaged value sets."""
    target = tmp_path / "valuesets"
    shutil.copytree(default_valueset_dir(), target)
    return target


def test_check_passes_and_prints_counts() -> None:
    out = io.StringIO()
    assert run_check(out) == 0
    text = out.getvalue()
    assert "drugs-loop-diuretic" in text
    assert "RxNorm" in text
    assert text.strip().endswith("OK")


def test_check_fails_on_a_ppi_listed_as_a_diuretic(valueset_copy: Path) -> None:
    path = valueset_copy / "drugs-loop-diuretic.json"
    raw = json.loads(path.read_text(encoding="utf-8"))
    rxnorm = next(i for i in raw["compose"]["include"] if i["system"].endswith("rxnorm"))
    rxnorm["concept"].append(
        {
            "code": "198051",
            "display": "omeprazole 20 MG Delayed Release Oral Capsule",
            "extension": [
                {
                    "url": "https://mgcds.example.org/fhir/StructureDefinition/ingredient",
                    "valueString": "omeprazole",
                }
            ],
        }
    )
    path.write_text(json.dumps(raw), encoding="utf-8")
    out = io.StringIO()
    assert run_check(out, valueset_copy) == 1
    assert "must not overlap" in out.getvalue() or "different ingredients" in out.getvalue()


def test_check_fails_on_an_ingredient_in_two_classes(valueset_copy: Path) -> None:
    path = valueset_copy / "drugs-thiazide-diuretic.json"
    raw = json.loads(path.read_text(encoding="utf-8"))
    raw["compose"]["include"][0]["concept"].append({"code": "omeprazole", "display": "omeprazole"})
    path.write_text(json.dumps(raw), encoding="utf-8")
    out = io.StringIO()
    assert run_check(out, valueset_copy) == 1
    assert "ingredient 'omeprazole'" in out.getvalue()
    assert "must not overlap" in out.getvalue()


def test_check_fails_on_a_drug_code_without_a_recorded_source(valueset_copy: Path) -> None:
    path = valueset_copy / "drugs-loop-diuretic.json"
    raw = json.loads(path.read_text(encoding="utf-8"))
    rxnorm = next(i for i in raw["compose"]["include"] if i["system"].endswith("rxnorm"))
    lasix = next(c for c in rxnorm["concept"] if c["code"] == "315971")
    lasix["extension"] = [e for e in lasix["extension"] if not e["url"].endswith("/code-source")]
    path.write_text(json.dumps(raw), encoding="utf-8")
    out = io.StringIO()
    assert run_check(out, valueset_copy) == 1
    assert "RxNorm 315971 (drugs-loop-diuretic) has no code-source" in out.getvalue()


def test_check_fails_on_an_invalid_file(valueset_copy: Path) -> None:
    (valueset_copy / "broken.json").write_text('{"resourceType": "ValueSet", "status": "bogus"}', encoding="utf-8")
    out = io.StringIO()
    assert run_check(out, valueset_copy) == 1
    assert "INVALID  broken.json" in out.getvalue()


def test_check_fails_when_a_concept_has_no_file(valueset_copy: Path) -> None:
    (valueset_copy / "lab-egfr.json").unlink()
    out = io.StringIO()
    assert run_check(out, valueset_copy) == 1
    assert "no value set for concept 'egfr'" in out.getvalue()


def test_register_wires_the_check_subcommand() -> None:
    parser = argparse.ArgumentParser(prog="mgcds")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["terminology", "check"])
    out = io.StringIO()
    assert args.handler(args, out) == 0


def test_coverage_row_of_furosemide_lists_the_brief_codes() -> None:
    # Brief / issue 4 facts: furosemide IN 4603, Synthea products 315971 and 1719286; WHO ATC C03CA01.
    rows = {row.name: row for row in coverage_of(load_indexes(default_valueset_dir()))}
    furosemide = rows["furosemide"]
    assert furosemide.rxnorm_ingredient == "4603"
    assert {"315971", "1719286"} <= set(furosemide.product_codes)
    assert "4603" not in furosemide.product_codes  # an ingredient code is not a product
    assert furosemide.atc_codes == ("C03CA01",)


def _only_loop_diuretics(valueset_copy: Path) -> Path:
    for path in valueset_copy.glob("*.json"):
        if path.name != "drugs-loop-diuretic.json":
            path.unlink()
    return valueset_copy / "drugs-loop-diuretic.json"


def test_coverage_strict_passes_when_every_ingredient_has_both_codes(valueset_copy: Path) -> None:
    path = _only_loop_diuretics(valueset_copy)
    raw = json.loads(path.read_text(encoding="utf-8"))
    ingredients = next(i for i in raw["compose"]["include"] if i["system"].endswith("/ingredient"))
    ingredients["concept"] = [c for c in ingredients["concept"] if c["code"] == "furosemide"]
    path.write_text(json.dumps(raw), encoding="utf-8")
    out = io.StringIO()
    assert run_coverage(out, valueset_copy, strict=True) == 0
    assert "1 coded ingredients: 1 with an RxNorm ingredient code, 1 with at least one RxNorm product code" in (
        out.getvalue()
    )


def test_coverage_strict_names_an_ingredient_without_codes(valueset_copy: Path) -> None:
    path = _only_loop_diuretics(valueset_copy)
    raw = json.loads(path.read_text(encoding="utf-8"))
    raw["compose"]["include"] = [i for i in raw["compose"]["include"] if i["system"].endswith("/ingredient")]
    for concept in raw["compose"]["include"][0]["concept"]:
        concept["extension"] = [e for e in concept.get("extension", []) if "rxnorm" not in e["url"]]
    path.write_text(json.dumps(raw), encoding="utf-8")
    out = io.StringIO()
    assert run_coverage(out, valueset_copy) == 0  # a report, not a gate, unless --strict
    assert run_coverage(io.StringIO(), valueset_copy, strict=True) == 1
    assert "without an ingredient code: " in out.getvalue()
    assert "furosemide" in out.getvalue().split("without an ingredient code: ")[1].splitlines()[0]


def test_register_wires_the_coverage_subcommand() -> None:
    parser = argparse.ArgumentParser(prog="mgcds")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["terminology", "coverage"])
    out = io.StringIO()
    assert args.handler(args, out) == 0
    assert out.getvalue().splitlines()[0].startswith("ingredient")
    assert parser.parse_args(["terminology", "coverage", "--strict"]).strict is True


def _rxnorm_concept(raw: dict[str, Any], code: str) -> dict[str, Any]:
    rxnorm = next(i for i in raw["compose"]["include"] if i["system"].endswith("rxnorm"))
    concept: dict[str, Any] = next(c for c in rxnorm["concept"] if c["code"] == code)
    return concept


def test_check_fails_on_a_magnesium_product_without_a_kind(valueset_copy: Path) -> None:
    # clinical-rules.md section 5: the product code decides first, so every coded magnesium product states its kind.
    path = valueset_copy / "drugs-mg-salt-inorganic.json"
    raw = json.loads(path.read_text(encoding="utf-8"))
    tablet = _rxnorm_concept(raw, "198741")
    tablet["extension"] = [e for e in tablet["extension"] if not e["url"].endswith("/mg-product-kind")]
    path.write_text(json.dumps(raw), encoding="utf-8")
    out = io.StringIO()
    assert run_check(out, valueset_copy) == 1
    assert "RxNorm 198741 (drugs-mg-salt-inorganic) is a magnesium product without an mg-product-kind" in out.getvalue()


def test_check_fails_on_an_unknown_kind_and_on_a_kind_outside_the_salts(valueset_copy: Path) -> None:
    path = valueset_copy / "drugs-mg-salt-inorganic.json"
    raw = json.loads(path.read_text(encoding="utf-8"))
    kind = next(e for e in _rxnorm_concept(raw, "198741")["extension"] if e["url"].endswith("/mg-product-kind"))
    kind["valueCode"] = "suppository"
    path.write_text(json.dumps(raw), encoding="utf-8")
    path = valueset_copy / "drugs-loop-diuretic.json"
    raw = json.loads(path.read_text(encoding="utf-8"))
    _rxnorm_concept(raw, "313988")["extension"].append(  # furosemide 40 MG Oral Tablet
        {"url": "https://mgcds.example.org/fhir/StructureDefinition/mg-product-kind", "valueCode": "oral-supplement"}
    )
    path.write_text(json.dumps(raw), encoding="utf-8")
    out = io.StringIO()
    assert run_check(out, valueset_copy) == 1
    assert "RxNorm 198741 (drugs-mg-salt-inorganic) has an unknown mg-product-kind 'suppository'" in out.getvalue()
    assert "RxNorm 313988 (drugs-loop-diuretic) has an mg-product-kind but no magnesium salt" in out.getvalue()


def test_check_fails_when_a_drafted_salt_has_no_product(valueset_copy: Path) -> None:
    # Section 9 drafts magnesium citrate, glycinate and lactate; a missing one would leave a card without its order.
    path = valueset_copy / "drafts-mg-supplement-products.json"
    raw = json.loads(path.read_text(encoding="utf-8"))
    include = raw["compose"]["include"][0]
    include["concept"] = [c for c in include["concept"] if c["code"] != "849497"]
    path.write_text(json.dumps(raw), encoding="utf-8")
    out = io.StringIO()
    assert run_check(out, valueset_copy) == 1
    assert "no supplement draft product for 'magnesium glycinate'" in out.getvalue()


def test_check_fails_on_a_draft_that_is_not_the_listed_tablet(valueset_copy: Path) -> None:
    # The magnesium citrate oral solution (1052760) is a bowel preparation: never a drafted supplement.
    path = valueset_copy / "drafts-mg-supplement-products.json"
    raw = json.loads(path.read_text(encoding="utf-8"))
    citrate = _rxnorm_concept(raw, "1313985")
    citrate["code"] = "1052760"
    citrate["display"] = "magnesium citrate 58.2 MG/ML Oral Solution"
    path.write_text(json.dumps(raw), encoding="utf-8")
    out = io.StringIO()
    assert run_check(out, valueset_copy) == 1
    text = out.getvalue()
    assert "supplement draft RxNorm 1052760 (drafts-mg-supplement-products) is not the oral-supplement product" in text
    assert "dose form 'tablet' is not a tablet or capsule its name states" in text

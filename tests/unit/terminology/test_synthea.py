"""The six real Synthea R4 patients in ../shared (skipped where absent), read as plain JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from terminology import DIURETIC_CLASSES, CodeRef, Terminology
from tests.conftest import load_json, shared_path


def codings(concept: dict[str, Any]) -> list[CodeRef]:
    return [CodeRef(c.get("system"), c.get("code"), c.get("display")) for c in concept.get("coding", [])]


@pytest.fixture(scope="module")
def resources() -> list[dict[str, Any]]:
    folder: Path = shared_path("fixtures", "synthea-r4")
    found = []
    for path in sorted(folder.glob("*.json")):
        found += [entry["resource"] for entry in load_json(path).get("entry", [])]
    return found


def test_every_hctz_or_furosemide_request_is_a_diuretic(term: Terminology, resources: list[dict[str, Any]]) -> None:
    seen = 0
    for resource in resources:
        if resource["resourceType"] != "MedicationRequest":
            continue
        concept = resource["medicationCodeableConcept"]
        words = (concept.get("text") or "").lower()
        result = term.classify_medication(codings(concept), concept.get("text"))
        if any(w in words for w in ("hydrochlorothiazide", "furosemide", "lasix")):
            seen += 1
            assert result.classes & DIURETIC_CLASSES, concept
            assert all(i.matched_by.startswith("RxNorm ") for i in result.ingredients)
        else:
            # Digoxin-free but real: simvastatin, metoprolol, acetaminophen, naproxen, diphenhydramine.
            assert result.ingredients == (), concept
    assert seen >= 10  # 5 HCTZ 25 MG + 3 Lasix 40mg + 3 furosemide injection in these bundles


def test_creatinine_and_egfr_in_both_units(term: Terminology, resources: list[dict[str, Any]]) -> None:
    units_seen: dict[str, set[str]] = {"serum-creatinine": set(), "egfr": set()}
    for resource in resources:
        if resource["resourceType"] != "Observation":
            continue
        match = term.classify_observation(codings(resource["code"]), resource["code"].get("text"))
        if match is None or match.concept not in units_seen:
            continue
        quantity = resource["valueQuantity"]
        converted = term.convert(quantity["value"], quantity.get("code") or quantity.get("unit"), match.concept)
        assert converted.value == pytest.approx(quantity["value"])
        units_seen[match.concept].add(quantity.get("code") or quantity.get("unit"))
    assert units_seen["serum-creatinine"] == {"mg/dL"}
    assert units_seen["egfr"] == {"mL/min/{1.73_m2}", "mL/min"}

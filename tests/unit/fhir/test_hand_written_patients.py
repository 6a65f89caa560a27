"""The hand-written patients (tests/data/patients) from FHIR to assessment and cards, in process, against the
expectations derived by hand in their README (machine copy: expected.json, drafts/expected-orders.json).

The integration suite checks the same expectations through a real FHIR server; this one needs no server, so the
version 2 answers are checked on every run.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cds_service.cli.evaluate import evaluate_request, request_from_bundle
from cds_service.config import Settings

DATA = Path(__file__).resolve().parents[2] / "data" / "patients"
EXPECTED: dict[str, Any] = json.loads((DATA / "expected.json").read_text(encoding="utf-8"))
EXPECTED_ORDERS: list[dict[str, Any]] = json.loads((DATA / "drafts" / "expected-orders.json").read_text("utf-8"))
NOW = datetime(2026, 11, 21, 12, tzinfo=UTC)  # the README's fixed clock


def _outcome(
    patient_file: str, hook: str = "patient-view", drafts: tuple[str, ...] = (), selections: tuple[str, ...] = ()
) -> Any:
    bundle = json.loads((DATA / patient_file).read_text(encoding="utf-8"))
    # The transaction bundles POST their Patient without an id (the server assigns it): name it as a server would.
    for entry in bundle["entry"]:
        if entry["resource"]["resourceType"] == "Patient":
            entry["resource"]["id"] = patient_file.split("-")[0]
    request = request_from_bundle(bundle, None, hook)
    if hook != "patient-view":
        resources = []
        for name in drafts:
            draft = json.loads((DATA / "drafts" / name).read_text(encoding="utf-8"))
            draft["subject"] = {"reference": f"Patient/{request['context']['patientId']}"}
            resources.append(draft)
        request["context"]["draftOrders"] = {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": r} for r in resources],
        }
        if hook == "order-select":
            request["context"]["selections"] = list(selections)
    return evaluate_request(request, Settings(dev=True), now=NOW, hook=hook)


@pytest.mark.parametrize("patient_file", sorted(EXPECTED))
def test_hand_written_patient_view(patient_file: str) -> None:
    expected = EXPECTED[patient_file]
    outcome = _outcome(patient_file)
    a = outcome.assessment
    assert a is not None
    assert (a["rules_version"], a["scope"]) == (expected["rules_version"], expected["scope"])
    assert [a["mds"]["min"], a["mds"]["max"]] == expected["mds"]
    assert a["mds"]["group"] == expected["mds_group"]
    assert (a["egfr"]["value"], a["egfr"]["source"]) == (expected["egfr"]["value"], expected["egfr"]["source"])
    assert a["serum_mg"]["value_mmol_l"] == expected["serum_mg"]["mmol_l"]
    assert a["serum_mg"]["category"] == expected["serum_mg"]["category"]
    assert a["ionized_mg"]["category"] == expected["ionized_mg"]["category"]
    assert a["deficiency"] == expected["deficiency"]
    codes = [c["extension"]["org.mgcds.recommendation"] for c in outcome.cards]
    assert codes == expected["recommendations"]
    assert a["recommendations"] == expected["recommendations"]
    for code, count in expected.get("suggestion_counts", {}).items():
        (card,) = [c for c in outcome.cards if c["extension"]["org.mgcds.recommendation"] == code]
        assert len(card.get("suggestions", ())) == count, code
    for drug in expected.get("spacing_advice_for", ()):
        assert any(drug in c["detail"].lower() and "hours" in c["detail"] for c in outcome.cards), drug
    for code, texts in expected.get("detail_contains", {}).items():
        (card,) = [c for c in outcome.cards if c["extension"]["org.mgcds.recommendation"] == code]
        for text in [texts] if isinstance(texts, str) else texts:
            assert text in card["detail"], (code, text)


@pytest.mark.parametrize("case", EXPECTED_ORDERS, ids=[f"{c['hook']}-{c['drafts'][0]}" for c in EXPECTED_ORDERS])
def test_hand_written_order_scenarios(case: dict[str, Any]) -> None:
    outcome = _outcome(case["patient"], case["hook"], tuple(case["drafts"]), tuple(case.get("selections", ())))
    got = [(c["extension"]["org.mgcds.recommendation"], c["indicator"]) for c in outcome.cards]
    assert got == [(c["code"], c["indicator"]) for c in case["cards"]]

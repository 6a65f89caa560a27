"""Every card the test data gives: the hand-written patients (patient-view and their order scenarios), the Synthea
fixtures, the example requests and a generated population, each through the service pipeline (``Evaluator``).

Used by the tests that must hold for every card of every test patient (detail length, clean GFM, coded drafts).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from bench.population import population
from cds_service.cli.evaluate import Evaluator, request_from_bundle, request_from_resources
from cds_service.config import Settings
from hooks import HookOutcome
from tests.conftest import PROJECT_ROOT, SHARED_DIR

PATIENTS = PROJECT_ROOT / "tests" / "data" / "patients"
EXAMPLES = PROJECT_ROOT / "examples"
HAND_WRITTEN_NOW = datetime(2026, 11, 21, 12, tzinfo=UTC)  # tests/data/patients/README.md
# tests/functional/test_synthea_patients.py: the time each Synthea patient is evaluated at.
SYNTHEA_NOW = {
    "Barrett_Cummings": datetime(2021, 2, 22, 12, tzinfo=UTC),
    "Dennis_Durgan": datetime(2008, 11, 11, 12, tzinfo=UTC),
    "Michele_Wolf": datetime(2016, 4, 4, 12, tzinfo=UTC),
    "Oda_Gerlach": datetime(2008, 12, 23, 12, tzinfo=UTC),
    "Alfreda_Wyman": datetime(2020, 12, 2, 12, tzinfo=UTC),
    "Maida_Gerhold": datetime(2020, 6, 1, tzinfo=UTC),
}
GENERATED_PATIENTS = 400
GENERATED_SEED = 15


@dataclass(frozen=True)
class Case:
    """One hook call of the test data and what the pipeline answered."""

    label: str
    hook: str
    outcome: HookOutcome

    @property
    def cards(self) -> list[dict[str, Any]]:
        """The cards answered."""
        return self.outcome.cards


def _load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _hand_written_requests() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path in sorted(PATIENTS.glob("p*.json")):
        bundle = _load(path)
        for entry in bundle["entry"]:
            if entry["resource"]["resourceType"] == "Patient":
                entry["resource"]["id"] = path.name.split("-")[0]
        yield path.name, "patient-view", request_from_bundle(bundle, None, "patient-view")
    for case in _load(PATIENTS / "drafts" / "expected-orders.json"):
        bundle = _load(PATIENTS / case["patient"])
        for entry in bundle["entry"]:
            if entry["resource"]["resourceType"] == "Patient":
                entry["resource"]["id"] = case["patient"].split("-")[0]
        request = request_from_bundle(bundle, None, case["hook"])
        drafts = []
        for name in case["drafts"]:
            draft = _load(PATIENTS / "drafts" / name)
            draft["subject"] = {"reference": f"Patient/{request['context']['patientId']}"}
            drafts.append(draft)
        request["context"]["draftOrders"] = {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": d} for d in drafts],
        }
        if case["hook"] == "order-select":
            request["context"]["selections"] = case["selections"]
        yield f"{case['patient']} {case['hook']} {'+'.join(case['drafts'])}", case["hook"], request


def _run(settings: Settings, now: datetime, requests: Iterator[tuple[str, str, dict[str, Any]]]) -> list[Case]:
    evaluator = Evaluator(settings, now=now)
    try:
        return [Case(label, hook, evaluator.evaluate(body, hook=hook)) for label, hook, body in requests]
    finally:
        evaluator.close()


@lru_cache(maxsize=1)
def all_cases() -> tuple[Case, ...]:
    """Every hook call of the test data, evaluated once per test session (the Synthea ones only with ../shared)."""
    settings = Settings(dev=True)
    cases = _run(settings, HAND_WRITTEN_NOW, _hand_written_requests())
    examples = [(path.name, _load(path)["hook"], _load(path)) for path in sorted(EXAMPLES.glob("*-request.json"))]
    cases += _run(settings, HAND_WRITTEN_NOW, iter(examples))
    synthea = SHARED_DIR / "fixtures" / "synthea-r4"
    for prefix, now in SYNTHEA_NOW.items():
        for path in sorted(synthea.glob(f"{prefix}_*.json")):
            request = request_from_bundle(_load(path), None, "patient-view")
            cases += _run(settings, now, iter([(path.name, "patient-view", request)]))
    generated = (
        (resources[0]["id"], "patient-view", request_from_resources(resources[0], resources[1:], "patient-view"))
        for resources in population(GENERATED_PATIENTS, seed=GENERATED_SEED, now=HAND_WRITTEN_NOW)
    )
    cases += _run(settings, HAND_WRITTEN_NOW, generated)
    return tuple(cases)


def all_cards() -> Iterator[tuple[str, dict[str, Any]]]:
    """(label, card) for every card of every test patient."""
    for case in all_cases():
        for card in case.cards:
            yield case.label, card

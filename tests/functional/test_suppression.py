"""Suppression after feedback (clinical-rules.md 7.5; issue 15 item 4), over HTTP with authenticated callers: a card
overridden on one instance is not shown again by another instance sharing the audit database, for the same patient
and the same EHR issuer, until a newer result changes the picture or, for a critical card, 24 hours have passed."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cds_service import create_app
from cds_service.audit.store import init_audit_store
from cds_service.config import Settings
from tests.functional.conftest import EXAMPLE_NOW, load_example
from tests.support.audit import runtime_of, stored_records
from tests.support.secured_app import PUBLIC_BASE_URL, es384_signing_key
from tests.support.security import SigningKey, jwks_of, live_claims, sign, write_registry

PV = "/cds-services/mg-patient-view"
OSIGN = "/cds-services/mg-order-sign"
ISSUER_A = "https://ehr-a.example.org"
ISSUER_B = "https://ehr-b.example.org"


class Clock:
    """A clock the test moves."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Instances:
    """Two service instances (as two hosts behind a load balancer) on one audit database, one clock."""

    apps: tuple[Any, Any]
    key: SigningKey
    clock: Clock

    def call(self, instance: int, path: str, body: Any, issuer: str = ISSUER_A) -> Any:
        token = sign(self.key, live_claims(issuer, PUBLIC_BASE_URL + path))
        client = self.apps[instance].test_client()
        response = client.post(
            path, data=json.dumps(body), content_type="application/json", headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_json()

    def codes(self, instance: int, body: Any, issuer: str = ISSUER_A) -> list[str]:
        cards = self.call(instance, PV, body, issuer)["cards"]
        return [c["extension"]["org.mgcds.recommendation"] for c in cards]

    def override(self, instance: int, card: dict[str, Any], reason: str = "patient-declined") -> None:
        feedback = {
            "card": card["uuid"],
            "outcome": "overridden",
            "overrideReason": {"reason": {"code": reason, "display": reason}},
            "outcomeTimestamp": self.clock.now.isoformat().replace("+00:00", "Z"),
        }
        self.call(instance, PV + "/feedback", {"feedback": [feedback]})
        # The feedback must be in the shared store before the next call (the writer drains in the background).
        assert runtime_of(self.apps[instance]).audit_writer.flush(10)


@pytest.fixture
def instances(tmp_path: Path) -> Iterator[Instances]:
    key = es384_signing_key()
    issuers = {ISSUER_A: {"fhir_servers": []}, ISSUER_B: {"fhir_servers": []}}
    registry = write_registry(tmp_path / "registry", issuers, jwks_of(key))
    audit_url = f"sqlite:///{tmp_path / 'audit.sqlite3'}"
    init_audit_store(audit_url)
    clock = Clock(EXAMPLE_NOW)
    apps = []
    for name in ("a", "b"):
        settings = Settings(
            instance_path=tmp_path / name,
            public_base_url=PUBLIC_BASE_URL,
            trusted_issuers=registry,
            audit_url=audit_url,
        )
        settings.instance_path.mkdir(parents=True)
        apps.append(create_app(settings, clock=clock))
    yield Instances((apps[0], apps[1]), key, clock)
    for app in apps:
        runtime_of(app).close()


def _serum(mg_dl: float, when: datetime, rid: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": rid,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "19123-9"}]},
        "subject": {"reference": "Patient/example-mg-1"},
        "effectiveDateTime": when.isoformat().replace("+00:00", "Z"),
        "valueQuantity": {"value": mg_dl, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"},
    }


def _request(*observations: dict[str, Any]) -> dict[str, Any]:
    """examples/patient-view-request.json (eGFR 55, furosemide and omeprazole) with these magnesium results."""
    request = copy.deepcopy(load_example("patient-view-request.json"))
    request["prefetch"]["observations"]["entry"] += [{"resource": o} for o in observations]
    return request


def _other_patient(request: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(request).replace("example-mg-1", "example-mg-2"))


# 1.8 mg/dL x 0.4114 = 0.74 mmol/L, low-normal: deficiency possible, eGFR 55 >= 30 -> test-ionized-mg (section 7.2).
LOW_NORMAL = _serum(1.8, EXAMPLE_NOW - timedelta(days=3), "mg-old")
# 1.0 mg/dL x 0.4114 = 0.41 mmol/L, severe-low -> urgent-evaluation, critical.
SEVERE_LOW = _serum(1.0, EXAMPLE_NOW - timedelta(days=1), "mg-severe")


def test_an_overridden_card_is_not_shown_again_by_another_instance(instances: Instances) -> None:
    request = _request(LOW_NORMAL)
    (card,) = instances.call(0, PV, request)["cards"]
    assert card["extension"]["org.mgcds.recommendation"] == "test-ionized-mg"
    instances.override(0, card)
    instances.clock.now += timedelta(minutes=1)
    assert instances.codes(1, request) == []  # instance B, same patient, same EHR
    # The audit record of B's call says what was held back, and by which feedback.
    calls = [r for r in stored_records(instances.apps[1]) if r.event_type == "service-call"]
    feedback = next(r for r in stored_records(instances.apps[1]) if r.event_type == "feedback")
    suppressed = calls[-1].payload["suppressed"]
    assert [(s["code"], s["feedback_record_id"], s["reason"]) for s in suppressed] == [
        ("test-ionized-mg", feedback.record_id, "patient-declined")
    ]
    # patient-declined: 180 days (section 7.5).
    assert suppressed[0]["until"].startswith((EXAMPLE_NOW + timedelta(days=180)).date().isoformat())
    # Another patient still gets the card.
    assert instances.codes(1, _other_patient(request)) == ["test-ionized-mg"]
    # Another EHR (issuer) still gets it: suppression is per issuer.
    assert instances.codes(1, request, issuer=ISSUER_B) == ["test-ionized-mg"]


def test_a_newer_magnesium_result_brings_the_card_back(instances: Instances) -> None:
    request = _request(LOW_NORMAL)
    (card,) = instances.call(0, PV, request)["cards"]
    instances.override(0, card)
    instances.clock.now += timedelta(days=2)
    assert instances.codes(1, request) == []
    # A new serum magnesium, drawn after the feedback: 1.9 mg/dL = 0.78 mmol/L, still low-normal: the card is due
    # again and the picture changed, so the suppression ends early.
    newer = _serum(1.9, instances.clock.now - timedelta(hours=1), "mg-new")
    assert instances.codes(1, _request(LOW_NORMAL, newer)) == ["test-ionized-mg"]


def test_a_critical_card_comes_back_after_24_hours(instances: Instances) -> None:
    request = _request(SEVERE_LOW)
    cards = instances.call(0, PV, request)["cards"]
    urgent = next(c for c in cards if c["extension"]["org.mgcds.recommendation"] == "urgent-evaluation")
    assert urgent["indicator"] == "critical"
    instances.override(0, urgent, reason="patient-declined")  # 180 days for another card; 24 h at most here
    instances.clock.now += timedelta(hours=23)
    assert "urgent-evaluation" not in instances.codes(1, request)
    instances.clock.now += timedelta(hours=2)
    assert "urgent-evaluation" in instances.codes(1, request)


def test_order_entry_cards_are_never_suppressed(instances: Instances) -> None:
    # Safest reading: an order card is about a new draft; an earlier override must not hide it.
    request = load_example("order-sign-request.json")
    (card,) = instances.call(0, OSIGN, request)["cards"]
    feedback = {
        "card": card["uuid"],
        "outcome": "overridden",
        "overrideReason": {"reason": {"code": "not-clinically-relevant"}},
        "outcomeTimestamp": EXAMPLE_NOW.isoformat().replace("+00:00", "Z"),
    }
    instances.call(0, OSIGN + "/feedback", {"feedback": [feedback]})
    assert runtime_of(instances.apps[0]).audit_writer.flush(10)
    instances.clock.now += timedelta(minutes=5)
    again = copy.deepcopy(request)
    again["hookInstance"] = "0d9b3c1e-1111-4c2b-9d35-9a1f4d6f0b55"
    assert [c["extension"]["org.mgcds.recommendation"] for c in instances.call(1, OSIGN, again)["cards"]] == [
        "switch-to-organic"
    ]


def test_a_failing_suppression_store_shows_the_card(instances: Instances) -> None:
    class Broken:
        def active(self, *args: object) -> list[object]:
            raise RuntimeError("store down")

    runtime = runtime_of(instances.apps[1])
    from dataclasses import replace

    object.__setattr__(runtime, "hook_deps", replace(runtime.hook_deps, suppression_source=Broken()))
    request = _request(LOW_NORMAL)
    (card,) = instances.call(0, PV, request)["cards"]
    instances.override(0, card)
    assert instances.codes(1, request) == ["test-ionized-mg"]  # fail open: shown again, the safe direction

"""The review page's insight views over records the service itself wrote: a real patient-view call, feedback that
overrides its card, a second call that holds the card back (clinical-rules.md 7.5), all through the app's HTTP
API with an authenticated EHR; then the reviewer's pages of the same app.

Expected figures, by hand: examples/patient-view-request.json with a serum magnesium of 1.8 mg/dL three days
old (x 0.4114 = 0.74 mmol/L, low-normal, eGFR 55) gets one card, test-ionized-mg (as in test_suppression.py).
It is overridden with patient-declined at EXAMPLE_NOW, 2026-11-21T12:00Z, a Saturday in ISO week 2026-W47
(week 1 starts on Monday 2025-12-29; 2026-11-21 is 327 days later: 46 weeks and 5 days, so week 47, which starts
on Monday 2026-11-16). The second call a minute later shows no card and records the suppression, until 180 days
after the answer (patient-declined, section 7.5): 2027-05-20T12:00Z.
"""

from __future__ import annotations

import copy
import csv
import io
import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from cds_service import create_app
from cds_service.audit.store import init_audit_store
from cds_service.config import Settings
from tests.functional.conftest import EXAMPLE_NOW, load_example
from tests.support.audit import runtime_of, stored_records
from tests.support.secured_app import PUBLIC_BASE_URL, es384_signing_key
from tests.support.security import jwks_of, live_claims, sign, write_registry

PV = "/cds-services/mg-patient-view"
ISSUER = "https://ehr-a.example.org"
REVIEWER = {"Authorization": "Bearer reviewer-token-0123456789abcdef"}


class Clock:
    """A clock the test moves."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def service(tmp_path: Path) -> Iterator[tuple[Flask, Any, Clock]]:
    """One authenticated instance with a SQLite audit log and the reviewer token set."""
    key = es384_signing_key()
    registry = write_registry(tmp_path / "registry", {ISSUER: {"fhir_servers": []}}, jwks_of(key))
    audit_url = f"sqlite:///{tmp_path / 'audit.sqlite3'}"
    init_audit_store(audit_url)
    clock = Clock(EXAMPLE_NOW)
    settings = Settings(
        instance_path=tmp_path / "instance",
        public_base_url=PUBLIC_BASE_URL,
        trusted_issuers=registry,
        audit_url=audit_url,
        reviewer_token=REVIEWER["Authorization"].split()[1],
    )
    settings.instance_path.mkdir(parents=True)
    app = create_app(settings, clock=clock)
    yield app, key, clock
    runtime_of(app).close()


def _post(app: Flask, key: Any, path: str, body: Any) -> Any:
    token = sign(key, live_claims(ISSUER, PUBLIC_BASE_URL + path))
    response = app.test_client().post(
        path, data=json.dumps(body), content_type="application/json", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    assert runtime_of(app).audit_writer.flush(10)
    return response.get_json()


def test_a_held_back_card_is_visible_on_detail_timeline_and_trends(service: tuple[Flask, Any, Clock]) -> None:
    app, key, clock = service
    request = copy.deepcopy(load_example("patient-view-request.json"))
    request["prefetch"]["observations"]["entry"].append(
        {
            "resource": {
                "resourceType": "Observation",
                "id": "mg-old",
                "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "19123-9"}]},
                "subject": {"reference": "Patient/example-mg-1"},
                "effectiveDateTime": (EXAMPLE_NOW - timedelta(days=3)).isoformat().replace("+00:00", "Z"),
                "valueQuantity": {
                    "value": 1.8,
                    "unit": "mg/dL",
                    "system": "http://unitsofmeasure.org",
                    "code": "mg/dL",
                },
            }
        }
    )
    (card,) = _post(app, key, PV, request)["cards"]
    assert card["extension"]["org.mgcds.recommendation"] == "test-ionized-mg"
    _post(
        app,
        key,
        PV + "/feedback",
        {
            "feedback": [
                {
                    "card": card["uuid"],
                    "outcome": "overridden",
                    "overrideReason": {"reason": {"code": "patient-declined", "display": "Patient declined"}},
                    "outcomeTimestamp": "2026-11-21T12:00:00Z",
                }
            ]
        },
    )
    clock.now += timedelta(minutes=1)
    assert _post(app, key, PV, request)["cards"] == []
    records = stored_records(app)
    first, second = (r for r in records if r.event_type == "service-call")
    feedback = next(r for r in records if r.event_type == "feedback")

    reviewer = app.test_client()
    detail = reviewer.get(f"/audit/calls/{second.record_id}", headers=REVIEWER).get_data(as_text=True)
    held = detail[detail.index('data-testid="held-back"') :]
    assert "<code>test-ionized-mg</code>" in held
    assert "overridden: patient-declined" in held
    assert feedback.record_id in held
    assert "2026-11-21T12:00:00.000000Z" in held  # answered
    assert "2027-05-20T12:00:00.000000Z" in held  # until: 180 days later
    assert f'href="/audit/calls/{first.record_id}"' in held  # the call whose card was answered

    timeline = reviewer.get("/audit/patients/example-mg-1", headers=REVIEWER).get_data(as_text=True)
    assert timeline.count('data-testid="timeline-call"') == 2
    assert timeline.count('data-testid="timeline-card"') == 1
    assert "overridden: Patient declined" in timeline
    assert "linked, sealed in the chain" in timeline
    assert timeline.index(first.record_id) < timeline.index(second.record_id)

    page = reviewer.get("/audit/trends", headers=REVIEWER).get_data(as_text=True)
    assert "1 shown · 0 accepted · 1 overridden" in page
    assert 'data-category="2026-W47"' in page
    rows = list(csv.reader(io.StringIO(reviewer.get("/audit/trends.csv", headers=REVIEWER).get_data(as_text=True))))
    assert rows[1:] == [
        ["2026-W47", "2026-11-16", "test-ionized-mg", "shown", "", "", "1"],
        ["2026-W47", "2026-11-16", "test-ionized-mg", "accepted", "", "", "0"],
        ["2026-W47", "2026-11-16", "test-ionized-mg", "overridden", "", "", "1"],
        ["2026-W47", "2026-11-16", "", "override-reason", "patient-declined", "Patient declined", "1"],
    ]

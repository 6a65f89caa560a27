"""No data is not "nothing to say" (issue 15 item 6): with neither the observations nor either medication list from
the prefetch or a FHIR server, the answer is 412 (CDS Hooks: data the service cannot obtain); partial data is 200."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cds_service import create_app
from cds_service.config import Settings
from tests.conftest import PROJECT_ROOT, load_json

PV = "/cds-services/mg-patient-view"
EXAMPLE = load_json(PROJECT_ROOT / "examples" / "patient-view-request.json")


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Any]:
    app = create_app(Settings(dev=True, instance_path=tmp_path))
    yield app.test_client()
    app.extensions["mgcds.runtime"].close()


def _without(*keys: str) -> dict[str, Any]:
    request = copy.deepcopy(EXAMPLE)
    for key in keys:
        del request["prefetch"][key]
    return request


def test_only_the_patient_and_no_fhir_server_is_412_naming_what_is_missing(client: Any) -> None:
    response = client.post(PV, json=_without("observations", "medicationStatements", "medicationRequests"))
    assert response.status_code == 412
    body = response.get_json()
    assert body["status"] == 412
    for key in ("observations", "medicationStatements", "medicationRequests"):
        assert key in body["message"]


def test_an_unreachable_fhir_server_for_all_of_them_is_412(client: Any) -> None:
    request = _without("observations", "medicationStatements", "medicationRequests")
    request["fhirServer"] = "http://127.0.0.1:9/fhir"  # dev mode allows loopback; nothing listens on port 9
    response = client.post(PV, json=request)
    assert response.status_code == 412


@pytest.mark.parametrize(
    "missing",
    [("observations",), ("medicationStatements", "medicationRequests"), ("observations", "medicationStatements")],
)
def test_partial_data_is_answered_with_the_unknowns_named(client: Any, missing: tuple[str, ...]) -> None:
    response = client.post(PV, json=_without(*missing))
    assert response.status_code == 200, response.get_data(as_text=True)
    cards = response.get_json()["cards"]
    if "observations" not in missing:
        # examples/README.md: eGFR 55 alone is 2 points, so the score stays >= 2 and the test card remains; the
        # drug components are unknown ranges.
        (card,) = cards
        assert "(unknown)" in card["detail"] or "Not known" in card["detail"]

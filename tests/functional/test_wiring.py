"""Collaborators wired from Settings: the remote terminology service, and Medications read by reference."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cds_service import create_app
from cds_service.config import Settings
from tests.functional.conftest import EXAMPLE_NOW, load_example
from tests.support.audit import stored_records
from tests.support.fhir_peer import FhirPeer

PV = "/cds-services/mg-patient-view"
# An RxNav answer for a product code the local value sets do not hold (999000001 is deliberately not a real RxCUI).
RELATED = {
    "relatedGroup": {
        "rxcui": "999000001",
        "conceptGroup": [{"tty": "IN", "conceptProperties": [{"rxcui": "4603", "name": "furosemide", "tty": "IN"}]}],
    }
}


def _diuretic_points(app: Any) -> list[int]:
    [record] = [r for r in stored_records(app) if r.event_type == "service-call"]
    component = next(c for c in record.payload["assessment"]["mds"]["components"] if c["name"] == "diuretic")
    points: list[int] = component["points"]
    return points


def _request_with_medication(medication: dict[str, Any]) -> dict[str, Any]:
    request = load_example("patient-view-request.json")
    request["prefetch"]["medicationRequests"]["entry"] = [
        {
            "resource": {
                "resourceType": "MedicationRequest",
                "id": "mr-1",
                "status": "active",
                "intent": "order",
                "subject": {"reference": "Patient/example-mg-1"},
                **medication,
            }
        }
    ]
    return request


def test_unknown_product_code_is_resolved_by_the_configured_rxnav(tmp_path: Path, fhir_peer: FhirPeer) -> None:
    fhir_peer.overrides["/REST/rxcui/999000001/related.json"] = lambda path, query: (200, RELATED)
    request = _request_with_medication(
        {
            "medicationCodeableConcept": {
                "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "999000001"}]
            }
        }
    )
    with_remote = Settings(
        dev=True,
        instance_path=tmp_path / "a",
        terminology_url=fhir_peer.base_url.removesuffix("/fhir"),
        terminology_kind="rxnav",
    )
    app = create_app(with_remote, clock=lambda: EXAMPLE_NOW)
    assert app.test_client().post(PV, json=request).status_code == 200
    assert _diuretic_points(app) == [1, 1]
    app.extensions["mgcds.runtime"].close()

    local_only = create_app(Settings(dev=True, instance_path=tmp_path / "b"), clock=lambda: EXAMPLE_NOW)
    assert local_only.test_client().post(PV, json=request).status_code == 200
    assert _diuretic_points(local_only) == [0, 0], "an unknown code, with no remote lookup, is not a diuretic"
    local_only.extensions["mgcds.runtime"].close()


def test_a_referenced_medication_is_read_from_the_fhir_server(app: Any, fhir_peer: FhirPeer) -> None:
    fhir_peer.add(
        {
            "resourceType": "Medication",
            "id": "med-1",
            "code": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "4603"}]},
        }
    )
    request = _request_with_medication({"medicationReference": {"reference": "Medication/med-1"}})
    request["fhirServer"] = fhir_peer.base_url
    assert app.test_client().post(PV, json=request).status_code == 200
    assert _diuretic_points(app) == [1, 1]
    assert fhir_peer.paths() == ["/fhir/Medication/med-1"]


def test_an_unreadable_medication_makes_the_drug_components_unknown_not_zero(app: Any) -> None:
    # The drug of mr-1 cannot be read (a CodeableConcept of the wrong shape): it might be a diuretic, so the diuretic
    # component is [0, 1], not 0, and the card says which resource could not be read.
    request = _request_with_medication({"medicationCodeableConcept": {"coding": "not-a-list"}})
    response = app.test_client().post(PV, json=request)
    assert response.status_code == 200
    assert _diuretic_points(app) == [0, 1]
    assert any("medicationCodeableConcept is not a valid" in card["detail"] for card in response.get_json()["cards"])

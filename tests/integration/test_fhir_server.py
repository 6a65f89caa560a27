"""The test FHIR server itself: auth, create/read, transactions with urn:uuid, and the searches MgCDS sends.

These pin down what Medplum's MemoryRepository supports, so a service test that fails can be told apart from a
server that cannot answer the query at all.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import requests

from tests.integration.conftest import PATIENTS_DIR, FhirTestServer

pytestmark = pytest.mark.integration

LOINC = "http://loinc.org"
# The search a FHIR client sends for serum magnesium and creatinine (clinical-rules.md sections 2 and 3).
MG_AND_CREATININE = f"{LOINC}|19123-9,{LOINC}|2160-0"


def _bundle_entries(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    assert bundle["resourceType"] == "Bundle"
    assert bundle["type"] == "searchset"
    return [entry["resource"] for entry in bundle.get("entry", [])]


def _observation(patient_ref: str, code: str, value: float, unit: str, when: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "subject": {"reference": patient_ref},
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "effectiveDateTime": when,
        "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit},
    }


@pytest.fixture(scope="module")
def search_patient(fhir_server: FhirTestServer) -> dict[str, Any]:
    """One patient with results and orders in several statuses, posted one by one (so ids are known)."""
    patient = fhir_server.post({"resourceType": "Patient", "gender": "female", "birthDate": "1950-05-05"})
    ref = f"Patient/{patient['id']}"
    ids: dict[str, str] = {}
    for key, resource in {
        "mg": _observation(ref, "19123-9", 1.7, "mg/dL", "2026-11-01T10:00:00Z"),
        "creat_old": _observation(ref, "2160-0", 1.1, "mg/dL", "2026-10-01T10:00:00Z"),
        "creat_new": _observation(ref, "2160-0", 1.0, "mg/dL", "2026-11-10T10:00:00Z"),
        "heart_rate": _observation(ref, "8867-4", 70, "/min", "2026-11-12T10:00:00Z"),
        "mr_active": {
            "resourceType": "MedicationRequest",
            "status": "active",
            "intent": "order",
            "subject": {"reference": ref},
            "medicationCodeableConcept": {"text": "furosemide"},
        },
        "mr_stopped": {
            "resourceType": "MedicationRequest",
            "status": "stopped",
            "intent": "order",
            "subject": {"reference": ref},
            "medicationCodeableConcept": {"text": "omeprazole"},
        },
        **{
            f"ms_{status}": {
                "resourceType": "MedicationStatement",
                "status": status,
                "subject": {"reference": ref},
                "medicationCodeableConcept": {"text": status},
            }
            for status in ("active", "intended", "completed")
        },
        **{
            f"cond_{status}": {
                "resourceType": "Condition",
                "subject": {"reference": ref},
                "clinicalStatus": {
                    "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": status}]
                },
                "code": {"text": status},
            }
            for status in ("active", "resolved")
        },
        **{
            f"sr_{status}": {
                "resourceType": "ServiceRequest",
                "status": status,
                "intent": "order",
                "subject": {"reference": ref},
                "code": {"text": status},
            }
            for status in ("active", "draft", "completed")
        },
    }.items():
        ids[key] = fhir_server.post(resource)["id"]
    return {"id": patient["id"], "ids": ids}


def _ids(bundle: dict[str, Any]) -> list[str]:
    return [resource["id"] for resource in _bundle_entries(bundle)]


def test_request_without_bearer_token_is_rejected_with_401_operation_outcome(
    fhir_server: FhirTestServer,
) -> None:
    response = requests.get(f"{fhir_server.base_url}/Patient", timeout=10)
    assert response.status_code == 401
    assert response.headers["Content-Type"].startswith("application/fhir+json")
    assert response.json()["resourceType"] == "OperationOutcome"


def test_request_with_wrong_bearer_token_is_rejected(fhir_server: FhirTestServer) -> None:
    response = requests.get(
        f"{fhir_server.base_url}/Patient", headers={"Authorization": "Bearer not-the-token"}, timeout=10
    )
    assert response.status_code == 401


def test_create_then_read_returns_the_resource(fhir_server: FhirTestServer) -> None:
    created = fhir_server.post({"resourceType": "Patient", "gender": "male", "birthDate": "1961-02-03"})
    read = fhir_server.get(f"Patient/{created['id']}")
    assert (read["resourceType"], read["gender"], read["birthDate"]) == ("Patient", "male", "1961-02-03")
    assert fhir_server.session.get(f"{fhir_server.base_url}/Patient/{uuid.uuid4()}", timeout=10).status_code == 404


def test_transaction_bundle_resolves_urn_uuid_references(fhir_server: FhirTestServer) -> None:
    patient_urn, obs_urn = f"urn:uuid:{uuid.uuid4()}", f"urn:uuid:{uuid.uuid4()}"
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": patient_urn,
                "resource": {"resourceType": "Patient", "gender": "female"},
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "fullUrl": obs_urn,
                "resource": _observation(patient_urn, "19123-9", 2.0, "mg/dL", "2026-11-20"),
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }
    mapping = fhir_server.load_bundle(bundle)
    assert mapping[patient_urn].startswith("Patient/")
    observation = fhir_server.get(mapping[obs_urn])
    assert observation["subject"]["reference"] == mapping[patient_urn]


def test_observation_search_by_patient_and_codes_sorted_newest_first(
    fhir_server: FhirTestServer, search_patient: dict[str, Any]
) -> None:
    ids = search_patient["ids"]
    bundle = fhir_server.get(
        "Observation", patient=search_patient["id"], code=MG_AND_CREATININE, _sort="-date", _count="100"
    )
    # The heart rate is excluded by code; dates 11-10, 11-01, 10-01 newest first.
    assert _ids(bundle) == [ids["creat_new"], ids["mg"], ids["creat_old"]]


def test_observation_search_accepts_patient_reference_and_subject(
    fhir_server: FhirTestServer, search_patient: dict[str, Any]
) -> None:
    ref = f"Patient/{search_patient['id']}"
    by_patient = fhir_server.get("Observation", patient=ref, code=f"{LOINC}|2160-0", _sort="date")
    by_subject = fhir_server.get("Observation", subject=ref, code="2160-0", _sort="date")
    expected = [search_patient["ids"]["creat_old"], search_patient["ids"]["creat_new"]]
    assert _ids(by_patient) == expected
    assert _ids(by_subject) == expected


def test_medication_request_search_by_status(fhir_server: FhirTestServer, search_patient: dict[str, Any]) -> None:
    bundle = fhir_server.get("MedicationRequest", patient=search_patient["id"], status="active")
    assert _ids(bundle) == [search_patient["ids"]["mr_active"]]


def test_medication_statement_search_by_two_statuses(
    fhir_server: FhirTestServer, search_patient: dict[str, Any]
) -> None:
    bundle = fhir_server.get("MedicationStatement", patient=search_patient["id"], status="active,intended")
    assert sorted(_ids(bundle)) == sorted([search_patient["ids"]["ms_active"], search_patient["ids"]["ms_intended"]])


def test_condition_search_by_clinical_status(fhir_server: FhirTestServer, search_patient: dict[str, Any]) -> None:
    bundle = fhir_server.get("Condition", **{"patient": search_patient["id"], "clinical-status": "active"})
    assert _ids(bundle) == [search_patient["ids"]["cond_active"]]


def test_service_request_search_by_two_statuses(fhir_server: FhirTestServer, search_patient: dict[str, Any]) -> None:
    bundle = fhir_server.get("ServiceRequest", patient=search_patient["id"], status="active,draft")
    assert sorted(_ids(bundle)) == sorted([search_patient["ids"]["sr_active"], search_patient["ids"]["sr_draft"]])


def test_count_truncates_but_there_is_no_next_link(fhir_server: FhirTestServer, search_patient: dict[str, Any]) -> None:
    """Known limitation of MemoryRepository: no paging links (paging is exercised through the fault proxy)."""
    bundle = fhir_server.get("Observation", patient=search_patient["id"], _count="2")
    assert len(_bundle_entries(bundle)) == 2
    assert bundle["total"] == 4
    assert not [link for link in bundle.get("link", []) if link.get("relation") == "next"]


def test_unknown_search_parameter_matches_nothing(fhir_server: FhirTestServer, search_patient: dict[str, Any]) -> None:
    """Known behaviour: an unsupported parameter silently yields an empty Bundle (not 400, not ignored)."""
    bundle = fhir_server.get("Observation", patient=search_patient["id"], **{"no-such-param": "1"})
    assert _bundle_entries(bundle) == []


def test_every_hand_written_patient_loads(fhir_server: FhirTestServer, hand_written_patients: dict[str, str]) -> None:
    expected_files = {p.name for p in PATIENTS_DIR.glob("*.json")} - {"expected.json"}
    assert set(hand_written_patients) == expected_files
    for patient_id in hand_written_patients.values():
        assert fhir_server.get(f"Patient/{patient_id}")["resourceType"] == "Patient"


def test_synthea_bundles_load_and_their_creatinine_is_searchable(
    fhir_server: FhirTestServer, synthea_patients: dict[str, str]
) -> None:
    assert len(synthea_patients) == 6
    found = 0
    for patient_id in synthea_patients.values():
        bundle = fhir_server.get("Observation", patient=patient_id, code=f"{LOINC}|38483-4", _sort="-date")
        found += len(_bundle_entries(bundle))
    # DESIGN.md: Synthea reports creatinine as LOINC 38483-4; at least one of the six patients has some.
    assert found > 0


def test_server_starts_quickly(fhir_server: FhirTestServer) -> None:
    """Start-up (spawn, index the R4 definitions, listen) as measured by the fixture: ~0.5 s here."""
    assert fhir_server.startup_seconds < 10.0

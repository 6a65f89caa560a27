"""Request bodies for the benchmark: one realistic patient, with dates relative to ``now``.

The patient is an older adult with CKD, heart failure and reflux, followed for a year: 60 laboratory Observations
(serum magnesium in both units, ionized magnesium, creatinine, eGFR, drinks per day), 10 medication resources
(6 MedicationRequest, 4 MedicationStatement: a loop and a thiazide diuretic, a PPI, the usual cardiovascular and
diabetes drugs, an inorganic magnesium salt) and 5 active Conditions. Codes are real LOINC, RxNorm and SNOMED CT
codes (those the engine recognises come from terminology/valuesets/, the others are ordinary ones it must skip).
Everything is a plain dict: the same resources feed the prefetch (scenarios A, C) and the FHIR server (B).
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"

PATIENT_ID = "bench-patient-1"

# (LOINC, display, unit, UCUM code, how many, first value, step per result): one year of results, newest first.
_LAB_SERIES: tuple[tuple[str, str, str, str, int, float, float], ...] = (
    ("19123-9", "Magnesium [Mass/volume] in Serum or Plasma", "mg/dL", "mg/dL", 10, 1.6, 0.04),
    ("2601-3", "Magnesium [Moles/volume] in Serum or Plasma", "mmol/L", "mmol/L", 6, 0.68, 0.02),
    ("73573-8", "Magnesium.ionized [Moles/volume] in Blood", "mmol/L", "mmol/L", 6, 0.47, 0.01),
    ("2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "mg/dL", "mg/dL", 14, 1.4, -0.02),
    ("98979-8", "eGFR CKD-EPI 2021", "mL/min/1.73m2", "mL/min/{1.73_m2}", 14, 48.0, 0.5),
    ("74013-4", "Alcoholic drinks per day", "drinks/day", "{drinks}/d", 10, 0.5, 0.0),
)

# (resource type, RxNorm code, display)
_MEDICATIONS: tuple[tuple[str, str, str], ...] = (
    ("MedicationRequest", "315971", "Lasix 40mg"),  # furosemide: loop diuretic
    ("MedicationRequest", "7646", "omeprazole"),  # PPI
    ("MedicationRequest", "29046", "lisinopril"),
    ("MedicationRequest", "6809", "metformin"),
    ("MedicationRequest", "83367", "atorvastatin"),
    ("MedicationRequest", "17767", "amlodipine"),
    ("MedicationStatement", "5487", "hydrochlorothiazide"),  # thiazide diuretic
    ("MedicationStatement", "1191", "aspirin"),
    ("MedicationStatement", "2418", "cholecalciferol"),
    ("MedicationStatement", "6582", "magnesium oxide"),  # inorganic magnesium salt
)

_CONDITIONS: tuple[tuple[str, str], ...] = (
    ("38341003", "Hypertensive disorder"),
    ("44054006", "Diabetes mellitus type 2"),
    ("433144002", "Chronic kidney disease stage 3"),
    ("84114007", "Heart failure"),
    ("235595009", "Gastroesophageal reflux disease"),
)

# The draft orders of scenario C: a loop diuretic, a PPI and a magnesium lab order.
_DRAFTS: tuple[tuple[str, str, str, str], ...] = (
    ("MedicationRequest", RXNORM, "315971", "Lasix 40mg"),
    ("MedicationRequest", RXNORM, "40790", "pantoprazole"),
    ("ServiceRequest", LOINC, "2160-0", "Creatinine [Mass/volume] in Serum or Plasma"),
)


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def patient_resources(now: datetime, patient_id: str = PATIENT_ID) -> dict[str, list[dict[str, Any]]]:
    """The patient's resources by prefetch key; ``now`` must be timezone-aware (UTC)."""
    subject = {"reference": f"Patient/{patient_id}"}
    patient = {
        "resourceType": "Patient",
        "id": patient_id,
        "gender": "female",
        "birthDate": f"{now.year - 74}-03-14",
        "name": [{"family": "Bench", "given": ["Patience"]}],
    }
    observations: list[dict[str, Any]] = []
    for loinc, display, unit, ucum, count, first, step in _LAB_SERIES:
        for index in range(count):
            # Spread over the last year; the newest result is three days old, inside every clinical window.
            taken = now - timedelta(days=3 + index * (360 // count), hours=index)
            observations.append(
                {
                    "resourceType": "Observation",
                    "id": f"obs-{loinc}-{index}",
                    "meta": {"versionId": "1", "lastUpdated": _stamp(taken)},
                    "status": "final",
                    "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": "laboratory"}]}],
                    "code": {"coding": [{"system": LOINC, "code": loinc, "display": display}], "text": display},
                    "subject": subject,
                    "effectiveDateTime": _stamp(taken),
                    "issued": _stamp(taken + timedelta(hours=2)),
                    "valueQuantity": {
                        "value": round(first + step * index, 2),
                        "unit": unit,
                        "system": UCUM,
                        "code": ucum,
                    },
                }
            )
    observations.sort(key=lambda o: str(o["effectiveDateTime"]), reverse=True)
    requests: list[dict[str, Any]] = []
    statements: list[dict[str, Any]] = []
    for index, (resource_type, code, display) in enumerate(_MEDICATIONS):
        concept = {"coding": [{"system": RXNORM, "code": code, "display": display}], "text": display}
        started = (now - timedelta(days=30 + 40 * index)).date().isoformat()
        if resource_type == "MedicationRequest":
            requests.append(
                {
                    "resourceType": "MedicationRequest",
                    "id": f"medreq-{index}",
                    "status": "active",
                    "intent": "order",
                    "medicationCodeableConcept": concept,
                    "subject": subject,
                    "authoredOn": started,
                    "dosageInstruction": [{"text": "1 tablet by mouth once daily"}],
                }
            )
        else:
            statements.append(
                {
                    "resourceType": "MedicationStatement",
                    "id": f"medstmt-{index}",
                    "status": "active",
                    "medicationCodeableConcept": concept,
                    "subject": subject,
                    "effectivePeriod": {"start": started},
                    "dosage": [{"text": "once daily"}],
                }
            )
    conditions = [
        {
            "resourceType": "Condition",
            "id": f"cond-{index}",
            "clinicalStatus": {"coding": [{"system": CONDITION_CLINICAL, "code": "active"}]},
            "code": {"coding": [{"system": SNOMED, "code": code, "display": display}], "text": display},
            "subject": subject,
            "onsetDateTime": _stamp(now - timedelta(days=400 + 100 * index)),
        }
        for index, (code, display) in enumerate(_CONDITIONS)
    ]
    return {
        "patient": [patient],
        "observations": observations,
        "medicationStatements": statements,
        "medicationRequests": requests,
        "conditions": conditions,
        "serviceRequests": [],
    }


def _searchset(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "entry": [
            {
                "fullUrl": f"https://ehr.example.org/fhir/{r['resourceType']}/{r['id']}",
                "resource": r,
                "search": {"mode": "match"},
            }
            for r in resources
        ],
    }


def prefetch(resources: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """The CDS Hooks prefetch object of every MgCDS service for these resources."""
    return {key: (items[0] if key == "patient" else _searchset(items)) for key, items in resources.items()}


def patient_view_request(
    now: datetime,
    *,
    with_prefetch: bool = True,
    patient_id: str = PATIENT_ID,
    fhir_server: str | None = None,
    access_token: str | None = None,
) -> dict[str, Any]:
    """A patient-view request: full prefetch (scenario A), or none and a FHIR server to read from (B)."""
    body: dict[str, Any] = {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/bench", "patientId": patient_id, "encounterId": "bench-enc-1"},
    }
    if with_prefetch:
        body["prefetch"] = prefetch(patient_resources(now, patient_id))
    if fhir_server is not None:
        body["fhirServer"] = fhir_server
        body["fhirAuthorization"] = {
            "access_token": access_token or "bench-token",
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "patient/*.read",
            "subject": "mgcds",
        }
    return body


def draft_orders(patient_id: str = PATIENT_ID) -> dict[str, Any]:
    """The three draft orders of scenario C as a collection Bundle."""
    entries = []
    for index, (resource_type, system, code, display) in enumerate(_DRAFTS):
        concept = {"coding": [{"system": system, "code": code, "display": display}], "text": display}
        resource: dict[str, Any] = {
            "resourceType": resource_type,
            "id": f"draft-{index}",
            "status": "draft",
            "intent": "order",
            "subject": {"reference": f"Patient/{patient_id}"},
            "encounter": {"reference": "Encounter/bench-enc-1"},
        }
        if resource_type == "MedicationRequest":
            resource["medicationCodeableConcept"] = concept
            resource["dosageInstruction"] = [{"text": "1 tablet by mouth once daily"}]
        else:
            resource["code"] = concept
        entries.append({"resource": resource})
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


def order_sign_request(now: datetime, patient_id: str = PATIENT_ID) -> dict[str, Any]:
    """An order-sign request with three draft orders and full prefetch (scenario C)."""
    return {
        "hook": "order-sign",
        "hookInstance": str(uuid.uuid4()),
        "context": {
            "userId": "Practitioner/bench",
            "patientId": patient_id,
            "encounterId": "bench-enc-1",
            "draftOrders": draft_orders(patient_id),
        },
        "prefetch": prefetch(patient_resources(now, patient_id)),
    }


def transaction_bundle(now: datetime) -> dict[str, Any]:
    """The patient as a FHIR transaction for the test FHIR server (server-assigned ids, urn:uuid references)."""
    resources = patient_resources(now, PATIENT_ID)
    patient_urn = f"urn:uuid:{uuid.uuid4()}"
    entries: list[dict[str, Any]] = []
    for key, items in resources.items():
        for resource in items:
            copy = {k: v for k, v in resource.items() if k not in {"id", "meta"}}
            full_url = patient_urn if key == "patient" else f"urn:uuid:{uuid.uuid4()}"
            if "subject" in copy:
                copy["subject"] = {"reference": patient_urn}
            entries.append(
                {"fullUrl": full_url, "resource": copy, "request": {"method": "POST", "url": copy["resourceType"]}}
            )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


# --- the realistic body: a real Synthea patient (issue 17) -------------------------------------------------

SYNTHEA_DIR = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "synthea-r4"
SYNTHEA_PATIENT = "Barrett_Cummings"  # 26 of its Observations match the prefetch's codes, 9 MedicationRequests
TEST_PATIENTS_DIR = Path(__file__).resolve().parents[1] / "tests" / "data" / "patients"
# The hand-written test patients are dated against this fixed clock (tests/data/patients/README.md).
TEST_PATIENTS_NOW = datetime(2026, 11, 21, 12, tzinfo=UTC)
# The newest laboratory result of the shifted patient is this old: inside every clinical window.
NEWEST_RESULT_AGE = timedelta(days=3)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})")


@dataclass(frozen=True)
class RealisticBody:
    """The realistic patient-view body and where it came from (recorded with the results)."""

    body: dict[str, Any]
    source: str
    observations: int
    medication_requests: int
    conditions: int


def _shift_dates(value: Any, shift: timedelta) -> Any:
    """A copy of ``value`` with every FHIR date and dateTime string moved by ``shift`` (same format)."""
    if isinstance(value, dict):
        return {key: _shift_dates(item, shift) for key, item in value.items()}
    if isinstance(value, list):
        return [_shift_dates(item, shift) for item in value]
    if isinstance(value, str):
        if _DATE_TIME.fullmatch(value):
            moved = datetime.fromisoformat(value.replace("Z", "+00:00")) + shift
            text = moved.isoformat(timespec="milliseconds" if "." in value else "seconds")
            return text.replace("+00:00", "Z") if value.endswith("Z") else text
        if _DATE.fullmatch(value):
            return (date.fromisoformat(value) + shift).isoformat()
    return value


def _newest_effective(observations: list[dict[str, Any]]) -> datetime | None:
    moments = [
        datetime.fromisoformat(str(o["effectiveDateTime"]).replace("Z", "+00:00"))
        for o in observations
        if isinstance(o.get("effectiveDateTime"), str) and _DATE_TIME.fullmatch(o["effectiveDateTime"])
    ]
    return max(moments) if moments else None


def _matches_codes(resource: dict[str, Any], codes: set[str]) -> bool:
    codings = resource.get("code", {}).get("coding", [])
    return any(f"{c.get('system')}|{c.get('code')}" in codes for c in codings if isinstance(c, dict))


def realistic_patient_view_request(now: datetime, synthea_dir: Path = SYNTHEA_DIR) -> RealisticBody:
    """patient-view with the prefetch an EHR would send for a real Synthea patient, dates shifted to be recent.

    From ``synthea_dir`` (../shared/fixtures/synthea-r4) when present: the Patient, the Observations the prefetch
    search asks for (its LOINC codes), every MedicationRequest and Condition (about 43 KB). Otherwise the project's
    hand-written test patients merged into one (smaller: about 30 resources). The shift puts the newest laboratory
    result three days before ``now``; every other date moves with it, so intervals and the age stay as recorded.
    """
    from cds_service.cli.evaluate import request_from_bundle
    from terminology import default_terminology

    codes = set(default_terminology().observation_search_codes())
    matches = sorted(synthea_dir.glob(f"{SYNTHEA_PATIENT}_*.json")) if synthea_dir.is_dir() else []
    if matches:
        bundle = json.loads(matches[0].read_text(encoding="utf-8"))
        request = request_from_bundle(bundle, None, "patient-view")
        source = f"synthea: {matches[0].name}"
        prefetch_in = request["prefetch"]
        patient = prefetch_in["patient"]
        by_key = {
            key: [e["resource"] for e in value.get("entry", [])]
            for key, value in prefetch_in.items()
            if key != "patient"
        }
        by_key["observations"] = [o for o in by_key["observations"] if _matches_codes(o, codes)]
        reference_now: datetime | None = None
    else:
        files = sorted(TEST_PATIENTS_DIR.glob("p*.json"))
        source = f"tests/data/patients: {len(files)} hand-written patients merged into one"
        by_key = {
            "observations": [],
            "medicationStatements": [],
            "medicationRequests": [],
            "conditions": [],
            "serviceRequests": [],
        }
        keys = {
            "Observation": "observations",
            "MedicationStatement": "medicationStatements",
            "MedicationRequest": "medicationRequests",
            "Condition": "conditions",
            "ServiceRequest": "serviceRequests",
        }
        patient = {}
        for index, path in enumerate(files):
            bundle = json.loads(path.read_text(encoding="utf-8"))
            for entry in bundle.get("entry", []):
                resource = dict(entry["resource"])
                if resource["resourceType"] == "Patient":
                    patient = patient or {**resource, "id": PATIENT_ID}
                elif resource["resourceType"] in keys:
                    key = keys[resource["resourceType"]]
                    resource.setdefault("id", f"{key}-{index}-{len(by_key[key])}")
                    resource["subject"] = {"reference": f"Patient/{PATIENT_ID}"}
                    by_key[key].append(resource)
        reference_now = TEST_PATIENTS_NOW
    newest = reference_now or _newest_effective(by_key["observations"]) or now
    shift = (now - NEWEST_RESULT_AGE) - newest if reference_now is None else now - reference_now
    shift = timedelta(days=shift.days)  # whole days: times of day stay as recorded
    prefetch_out: dict[str, Any] = {"patient": _shift_dates(patient, shift)}
    for key, items in by_key.items():
        prefetch_out[key] = _searchset(_shift_dates(items, shift))
    body = {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/bench", "patientId": patient["id"]},
        "prefetch": prefetch_out,
    }
    return RealisticBody(
        body=body,
        source=source,
        observations=len(by_key["observations"]),
        medication_requests=len(by_key["medicationRequests"]),
        conditions=len(by_key["conditions"]),
    )


PATIENT_PLACEHOLDER = "__PATIENT__"


def with_patient_placeholder(body: dict[str, Any]) -> str:
    """The body as JSON text with its patient's id replaced by ``__PATIENT__`` everywhere (context, Patient.id,
    every ``Patient/<id>`` reference), for the load generator to put a new id in each call."""
    patient_id = str(body["context"]["patientId"])
    return json.dumps(body).replace(patient_id, PATIENT_PLACEHOLDER)

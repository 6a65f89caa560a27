"""Export: FHIR R4 AuditEvent NDJSON (IHE Basic Audit Log Patterns where they fit) and CSV.

BALP mapping used here: the clinician is the requesting agent (information recipient IRCP for a service
call, author AUT for feedback); the EHR (JWT issuer) is the DICOM Source Role ID (110153) and MgCDS the
Destination Role ID (110152); the patient is an entity with type 1 (Person) and role 1 (Patient); each FHIR
resource the engine used is a System Object entity (type 2) referenced down to its version.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from fhir.resources.R4B.auditevent import AuditEvent

from cds_service.audit.model import StoredRecord
from cds_service.audit.records import AuditEventType

DCM = "http://dicom.nema.org/resources/ontology/DCM"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
MGCDS_EVENT = "urn:mgcds:audit-event-type"
MGCDS_RECORD = "urn:mgcds:audit-record"
MGCDS_CARD = "urn:mgcds:card"
URI_SYSTEM = "urn:ietf:rfc:3986"

_OUTCOME_SUCCESS = "0"
_OUTCOME_MINOR_FAILURE = "4"  # the request was refused (4xx, 412): nothing wrong with the service
_OUTCOME_SERIOUS_FAILURE = "8"


def _reference(kind: str, value: str) -> dict[str, Any]:
    # EHR user ids are usually "Practitioner/123"; anything else stays an identifier, not a made-up reference.
    if "/" in value and value.split("/", 1)[0][:1].isupper():
        return {"reference": value}
    if kind == "Patient":
        return {"reference": f"Patient/{value}"}
    return {"identifier": {"value": value}}


def _detail(name: str, value: Any) -> dict[str, Any]:
    return {"type": name, "valueString": value if isinstance(value, str) else json.dumps(value)}


def _agents(user_id: str | None, user_role: tuple[str, str], issuer: str | None, service_id: str) -> list[Any]:
    agents: list[dict[str, Any]] = []
    if user_id:
        code, display = user_role
        agents.append(
            {
                "type": {"coding": [{"system": PARTICIPATION, "code": code, "display": display}]},
                "who": _reference("User", user_id),
                "requestor": True,
            }
        )
    agents.append(
        {
            "type": {"coding": [{"system": DCM, "code": "110153", "display": "Source Role ID"}]},
            "who": {"identifier": {"system": URI_SYSTEM, "value": issuer}} if issuer else {"display": "unknown EHR"},
            "requestor": not user_id,
        }
    )
    agents.append(
        {
            "type": {"coding": [{"system": DCM, "code": "110152", "display": "Destination Role ID"}]},
            "who": {"identifier": {"system": "urn:mgcds:service", "value": service_id}, "display": "MgCDS"},
            "requestor": False,
        }
    )
    return agents


def _patient_entity(patient_id: str) -> dict[str, Any]:
    return {
        "what": _reference("Patient", patient_id),
        "type": {"system": ENTITY_TYPE, "code": "1", "display": "Person"},
        "role": {"system": OBJECT_ROLE, "code": "1", "display": "Patient"},
    }


def _record_entity(record: StoredRecord, details: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "what": {"identifier": {"system": MGCDS_RECORD, "value": record.record_id}},
        "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
        "description": f"MgCDS audit record #{record.seq}",
        # FHIR strings may not be empty: a detail without a value is left out.
        "detail": [d for d in (*details, _detail("entry_hash", record.entry_hash)) if d["valueString"]],
    }


def _outcome(status: int) -> str:
    if status < 400:
        return _OUTCOME_SUCCESS
    if status < 500:
        return _OUTCOME_MINOR_FAILURE
    return _OUTCOME_SERIOUS_FAILURE


def audit_event(record: StoredRecord, patients: Mapping[str, str | None]) -> dict[str, Any]:
    """One stored record as a validated R4 AuditEvent; ``patients`` maps call record ids to patient ids."""
    p = record.payload
    source = {
        "observer": {"display": f"MgCDS {p['service_id']}"},
        "type": [{"system": SOURCE_TYPE, "code": "4", "display": "Application Server"}],
    }
    if p.get("tenant"):
        source["site"] = p["tenant"]
    if record.event_type == AuditEventType.SERVICE_CALL:
        event: dict[str, Any] = {
            "resourceType": "AuditEvent",
            "id": record.record_id,
            "type": {"system": EVENT_TYPE, "code": "rest", "display": "RESTful Operation"},
            "subtype": [{"system": MGCDS_EVENT, "code": "service-call", "display": "CDS service call"}],
            "action": "E",
            "recorded": record.occurred_at,
            "outcome": _outcome(int(p["http_status"])),
            "agent": _agents(p.get("user_id"), ("IRCP", "information recipient"), p.get("issuer"), p["service_id"]),
            "source": source,
        }
        if p.get("error"):
            event["outcomeDesc"] = p["error"]
        entities: list[dict[str, Any]] = []
        if p.get("patient_id"):
            entities.append(_patient_entity(p["patient_id"]))
        if p.get("encounter_id"):
            entities.append(
                {
                    "what": {"reference": f"Encounter/{p['encounter_id']}"},
                    "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
                }
            )
        for data_source in p.get("data_sources", ()):
            for used in data_source["resources"]:
                if not used.get("resource_id"):
                    continue
                ref = f"{used['resource_type']}/{used['resource_id']}"
                if used.get("version_id"):
                    ref += f"/_history/{used['version_id']}"
                entities.append(
                    {
                        "what": {"reference": ref},
                        "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
                        "description": f"{data_source['key']} ({data_source['origin']})",
                    }
                )
        details = [
            _detail("hook", p.get("hook") or ""),
            _detail("hookInstance", p.get("hook_instance") or ""),
            _detail("ruleVersion", p["rule_version"]),
            _detail("httpStatus", str(p["http_status"])),
            _detail("latencyMs", str(p["latency_ms"])),
            _detail("recommendations", ",".join(card["recommendation"] for card in p.get("cards", ()))),
            _detail("cardUuids", ",".join(card["uuid"] for card in p.get("cards", ()))),
        ]
        entities.append(_record_entity(record, details))
        event["entity"] = entities
    elif record.event_type == AuditEventType.FEEDBACK_CALL:
        # A feedback call that was refused or failed: who sent it and what it was answered (no body was kept).
        event = {
            "resourceType": "AuditEvent",
            "id": record.record_id,
            "type": {"system": EVENT_TYPE, "code": "rest", "display": "RESTful Operation"},
            "subtype": [{"system": MGCDS_EVENT, "code": "feedback-call", "display": "CDS feedback call not accepted"}],
            "action": "C",
            "recorded": record.occurred_at,
            "outcome": _outcome(int(p["http_status"])),
            "agent": _agents(p.get("sender"), ("AUT", "author (originator)"), p.get("issuer"), p["service_id"]),
            "source": source,
        }
        if p.get("error"):
            event["outcomeDesc"] = p["error"]
        details = [
            _detail("httpStatus", str(p["http_status"])),
            _detail("latencyMs", str(p["latency_ms"])),
            _detail("itemsRecorded", str(p.get("items_recorded", 0))),
        ]
        event["entity"] = [_record_entity(record, details)]
    else:
        patient_id = patients.get(record.linked_record_id or "")
        event = {
            "resourceType": "AuditEvent",
            "id": record.record_id,
            "type": {"system": EVENT_TYPE, "code": "rest", "display": "RESTful Operation"},
            "subtype": [{"system": MGCDS_EVENT, "code": "feedback", "display": "CDS card feedback"}],
            "action": "C",
            "recorded": record.occurred_at,
            "outcome": _OUTCOME_SUCCESS,
            "agent": _agents(p.get("sender"), ("AUT", "author (originator)"), p.get("issuer"), p["service_id"]),
            "source": source,
        }
        entities = [_patient_entity(patient_id)] if patient_id else []
        reason = p.get("override_reason") or {}
        accepted = ",".join(p.get("accepted_suggestions", ()))
        if not accepted and p["outcome"] == "accepted":
            accepted = "(none named)"  # the EHR accepted the card without naming a suggestion
        details = [
            _detail("cardUuid", p["card_uuid"]),
            _detail("outcome", p["outcome"]),
            _detail("outcomeTimestamp", p["outcome_timestamp"]),
            # The call that issued the card (same issuer, tenant and service), whichever was stored first.
            _detail("linkedRecordId", record.linked_record_id or "unknown"),
            _detail("acceptedSuggestions", accepted),
        ]
        if reason:
            details.append(_detail("overrideReason", f"{reason.get('system', '')}|{reason.get('code', '')}"))
        entities.append(_record_entity(record, details))
        event["entity"] = entities
    # Validation is the contract of the export: a record that cannot be expressed fails loudly here.
    AuditEvent.model_validate(event)
    return event


def iter_fhir_ndjson(
    records: Iterable[StoredRecord], patient_of: Callable[[str], str | None] | None = None
) -> Iterator[str]:
    """NDJSON lines of AuditEvents, in chain order.

    ``patient_of(call_record_id)`` names the patient of a call not yet seen in the walk: feedback can be stored
    before the call that issued its card (another instance's spool drained later), and its event still names the
    patient.
    """
    patients: dict[str, str | None] = {}
    for record in records:
        if record.event_type == AuditEventType.SERVICE_CALL:
            patients[record.record_id] = record.payload.get("patient_id")
        elif record.linked_record_id and record.linked_record_id not in patients and patient_of is not None:
            patients[record.linked_record_id] = patient_of(record.linked_record_id)
        yield json.dumps(audit_event(record, patients), separators=(",", ":"), ensure_ascii=False)


CSV_COLUMNS = (
    "seq",
    "record_id",
    "event_type",
    "occurred_at",
    "service_id",
    "hook",
    "hook_instance",
    "issuer",
    "tenant",
    "user_id",
    "patient_id",
    "encounter_id",
    "fhir_server",
    "http_status",
    "latency_ms",
    "rule_version",
    "recommendations",
    "card_uuids",
    "error",
    "card_uuid",
    "outcome",
    "override_reason_code",
    "user_comment",
    "sender",
    "linked_record_id",
    "entry_hash",
)


def csv_row(record: StoredRecord) -> dict[str, Any]:
    """One record as a flat CSV row (``CSV_COLUMNS``)."""
    p = record.payload
    reason = p.get("override_reason") or {}
    cards = p.get("cards", ())
    linked = None
    if record.event_type == AuditEventType.FEEDBACK:
        linked = record.linked_record_id or "unknown"
    return {
        "seq": record.seq,
        "record_id": record.record_id,
        "event_type": record.event_type,
        "occurred_at": record.occurred_at,
        "service_id": p.get("service_id"),
        "hook": p.get("hook"),
        "hook_instance": p.get("hook_instance"),
        "issuer": p.get("issuer"),
        "tenant": p.get("tenant"),
        "user_id": p.get("user_id"),
        "patient_id": p.get("patient_id"),
        "encounter_id": p.get("encounter_id"),
        "fhir_server": p.get("fhir_server"),
        "http_status": p.get("http_status"),
        "latency_ms": p.get("latency_ms"),
        "rule_version": p.get("rule_version"),
        "recommendations": " ".join(card["recommendation"] for card in cards),
        "card_uuids": " ".join(card["uuid"] for card in cards),
        "error": p.get("error"),
        "card_uuid": p.get("card_uuid"),
        "outcome": p.get("outcome"),
        "override_reason_code": reason.get("code"),
        "user_comment": p.get("user_comment"),
        "sender": p.get("sender"),
        "linked_record_id": linked,
        "entry_hash": record.entry_hash,
    }


def csv_safe(value: Any) -> Any:
    """The value, a text that starts like a formula prefixed with ``'`` (also for the review page's trends CSV)."""
    # Spreadsheet formula injection: a cell starting with = + - @ would be evaluated when a reviewer opens it.
    if isinstance(value, str) and value[:1] in {"=", "+", "-", "@", "\t", "\r"}:
        return "'" + value
    return value


def iter_csv(records: Iterable[StoredRecord]) -> Iterator[str]:
    """CSV text chunks: a header, then one line per record in chain order."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    yield buffer.getvalue()
    for record in records:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow({key: csv_safe(value) for key, value in csv_row(record).items()})
        yield buffer.getvalue()

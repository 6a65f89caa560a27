"""Prefetch: fill templates, take what the EHR sent, fetch what it did not (CDS Hooks 2.0 "Prefetch").

For each prefetch key of the service:
- present with data: used as sent (a searchset Bundle's further pages are fetched when a FHIR server is given);
- present as ``null``: the EHR says it has no such data; nothing is fetched;
- missing, or an OperationOutcome: fetched from ``fhirServer`` with the EHR's bearer token, all keys of one
  request concurrently.
The Patient is required: when it cannot be obtained the hook answers 412 (spec: "the service SHALL respond with an
HTTP 412"). Any other key that cannot be obtained is evaluated as unknown and named in the cards.

A second round follows the first: a MedicationRequest or MedicationStatement (of the lists, or a draft order) that
points at a ``Medication/<id>`` nobody sent is read from ``fhirServer``, all such reads concurrently, so that
extraction finds every Medication in ``ResolvedData.medications`` and does no I/O itself.

Both rounds are one FHIR call (``FhirReader.for_call``): every read shares one deadline and one byte allowance, so
a slow or hostile server holds the hook for at most that long, and the hook answers with what it has by then.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from cds_service.errors import FhirError, PrerequisiteFailed
from cds_service.fhir.bundles import SearchResult, iter_bundle_resources, next_link
from cds_service.fhir.references import belongs_to_patient, is_fhir_id, medication_key, medication_reference
from cds_service.interfaces import FhirReader
from cds_service.vocabulary import DataOrigin, PrefetchKey

# CDS Hooks 2.0 prefetch tokens: {{context.<field>}} or one of the user identifier tokens, nothing else.
_TOKEN = re.compile(r"\{\{\s*([A-Za-z][A-Za-z0-9_.]*)\s*\}\}")
_USER_TOKENS = {
    "userPractitionerId": "Practitioner",
    "userPractitionerRoleId": "PractitionerRole",
    "userPatientId": "Patient",
    "userRelatedPersonId": "RelatedPerson",
}

# The lists whose entries may reference a Medication (extraction reads medications from these keys only).
MEDICATION_LIST_KEYS = (PrefetchKey.MEDICATION_STATEMENTS, PrefetchKey.MEDICATION_REQUESTS)
MEDICATION_USE_TYPES = frozenset({"MedicationStatement", "MedicationRequest"})
# Most Medications read per call: an active medication list rarely references more than a few dozen. Beyond this
# the payload is hostile or broken, and the work per call must stay bounded (issue 16, B7: 2,000 references were
# 2,000 reads with the EHR's token). The rest are treated as when a read fails: classified by the reference's display
# text, and where there is none the medication cannot be read, which widens each drug component to [0, 1].
MAX_MEDICATION_READS = 50


class TemplateError(ValueError):
    """A prefetch template cannot be filled from this request's context."""


def render_template(template: str, context: Mapping[str, Any]) -> str:
    """Fill a prefetch template's tokens from the hook context (root-level primitives only)."""

    def substitute(match: re.Match[str]) -> str:
        token = match.group(1)
        if token.startswith("context."):
            name = token.removeprefix("context.")
            if "." in name:
                raise TemplateError(f"prefetch token {{{{{token}}}}}: nested paths are not allowed")
            value = context.get(name)
        elif token in _USER_TOKENS:
            user = str(context.get("userId", ""))
            resource_type, _, user_id = user.partition("/")
            value = user_id if resource_type == _USER_TOKENS[token] else None
        else:
            raise TemplateError(f"unknown prefetch token {{{{{token}}}}}")
        if not isinstance(value, str | int) or isinstance(value, bool):
            raise TemplateError(f"prefetch token {{{{{token}}}}} has no primitive value in this context")
        text = str(value)
        # The value lands in a URL: only a FHIR id may go there (no query injection through the context, and no
        # dot segment: Patient/.. would read the FHIR base).
        if not is_fhir_id(text):
            raise TemplateError(f"prefetch token {{{{{token}}}}}: value is not a valid FHIR id")
        return text

    return _TOKEN.sub(substitute, template)


@dataclass
class KeyData:
    """What one prefetch key yielded, and where it came from (for the engine, the cards and the audit log)."""

    key: str
    origin: DataOrigin
    resources: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    note: str | None = None

    @property
    def known(self) -> bool:
        """True when the data is complete enough to say 'none of these' (prefetch, fetched, or the EHR's null)."""
        return self.origin != DataOrigin.FAILED


@dataclass
class ResolvedData:
    """All prefetch keys of one request, resolved, and the Medications their medication lists point at."""

    keys: dict[str, KeyData]
    # Medication resources by "Medication/<id>": those any key carried, then those the second round read.
    medications: dict[str, dict[str, Any]] = field(default_factory=dict)

    def resources(self, key: str) -> list[dict[str, Any]]:
        """The resources under ``key`` (empty when absent or failed)."""
        data = self.keys.get(key)
        return data.resources if data is not None else []

    def known(self, key: str) -> bool:
        """Whether ``key`` was obtained (or declared empty by the EHR)."""
        data = self.keys.get(key)
        return data is not None and data.known


def _is_operation_outcome(value: Any) -> bool:
    return isinstance(value, dict) and value.get("resourceType") == "OperationOutcome"


def _resources_of(value: Mapping[str, Any]) -> list[dict[str, Any]]:
    if value.get("resourceType") == "Bundle":
        return list(iter_bundle_resources(value))
    return [dict(value)]


def resolve_prefetch(
    templates: Mapping[str, str],
    context: Mapping[str, Any],
    prefetch: Mapping[str, Any] | None,
    *,
    client: FhirReader,
    fhir_server: str | None,
    access_token: str | None,
    required_keys: tuple[str, ...] = (PrefetchKey.PATIENT,),
    drafts: Sequence[Mapping[str, Any]] = (),
) -> ResolvedData:
    """Resolve every prefetch key of a service for one request (fetching missing keys concurrently).

    Then read the Medications that the medication lists and ``drafts`` (an order hook's draft orders) reference but
    nobody sent, concurrently.
    """
    sent = prefetch or {}
    keys: dict[str, KeyData] = {}
    pending: dict[str, Future[Any]] = {}
    call = client.for_call()  # one deadline and byte allowance for every read of this hook call

    for key, template in templates.items():
        value = sent.get(key, _MISSING) if key in sent else _MISSING
        if value is None:
            keys[key] = KeyData(key, DataOrigin.ABSENT, note="the EHR sent null: it has no such data")
            continue
        if value is not _MISSING and not _is_operation_outcome(value):
            if not isinstance(value, dict) or not isinstance(value.get("resourceType"), str):
                keys[key] = KeyData(key, DataOrigin.FAILED, error="prefetch value is not a FHIR resource or Bundle")
                continue
            more = next_link(value) if value.get("resourceType") == "Bundle" else None
            if more and fhir_server:
                pending[key] = call.submit(call.continue_bundle, fhir_server, value, access_token)
                keys[key] = KeyData(key, DataOrigin.PREFETCH)
            else:
                note = "prefetched Bundle has more pages but no fhirServer to read them" if more else None
                keys[key] = KeyData(key, DataOrigin.PREFETCH, _resources_of(value), note=note)
            continue
        reason = "the EHR's prefetch held an OperationOutcome" if value is not _MISSING else "not in prefetch"
        if not fhir_server:
            keys[key] = KeyData(key, DataOrigin.FAILED, error=f"{reason} and the request names no fhirServer")
            continue
        try:
            query = render_template(template, context)
        except TemplateError as exc:
            keys[key] = KeyData(key, DataOrigin.FAILED, error=str(exc))
            continue
        keys[key] = KeyData(key, DataOrigin.FETCHED, note=reason)
        if key == PrefetchKey.PATIENT:
            pending[key] = call.submit(call.read, fhir_server, query, access_token)
        else:
            pending[key] = call.submit(call.search, fhir_server, query, access_token)

    for key, future in pending.items():
        data = keys[key]
        try:
            outcome = future.result()
        except FhirError as exc:
            # Fail open for supporting data: the hook still answers, with that data named as unknown, because a
            # missing lab list must not hide the rest of the advice. The Patient is checked below (fail closed).
            data.origin = DataOrigin.FAILED
            data.error = f"{exc.message} ({exc.kind})"
            continue
        if isinstance(outcome, SearchResult):
            data.resources.extend(outcome.resources)
            if outcome.truncated:
                data.note = f"incomplete: {outcome.truncated}"
        else:
            data.resources.append(outcome)

    for key in required_keys:
        required = keys.get(key)
        if required is None or not required.resources:
            why = (required.error or required.note) if required is not None else "no template"
            raise PrerequisiteFailed(f"the {key} could not be obtained: {why}", cause=key)
    resolved = ResolvedData(keys, medications=_medications_sent(keys.values()))
    if fhir_server:
        users = [*(r for key in MEDICATION_LIST_KEYS for r in resolved.resources(key)), *drafts]
        wanted = _missing_medications(users, resolved.medications, context.get("patientId"))
        resolved.medications.update(_read_medications(wanted, call, fhir_server, access_token))
    return resolved


def _medications_sent(items: Iterable[KeyData]) -> dict[str, dict[str, Any]]:
    """The Medication resources any key carried, by ``Medication/<id>``."""
    return {
        f"Medication/{r['id']}": r
        for item in items
        for r in item.resources
        if r.get("resourceType") == "Medication" and isinstance(r.get("id"), str)
    }


def _missing_medications(users: Iterable[Mapping[str, Any]], known: Mapping[str, Any], patient_id: Any) -> list[str]:
    """``Medication/<id>`` of each Medication the patient's medication resources reference and nobody sent."""
    aliases = {f"Patient/{patient_id}"}
    wanted: list[str] = []
    for resource in users:
        # Only what extraction will read: this patient's medication resources that name their drug by reference.
        if resource.get("resourceType") not in MEDICATION_USE_TYPES or not belongs_to_patient(resource, aliases):
            continue
        if resource.get("medicationCodeableConcept") is not None:
            continue
        reference = medication_reference(resource)
        if reference is None or reference.startswith("#"):  # "#id": contained in the resource itself
            continue
        key = medication_key(reference)
        if key is not None and key not in known and key not in wanted:
            wanted.append(key)
    return wanted[:MAX_MEDICATION_READS]


def _read_medications(
    wanted: Sequence[str], client: FhirReader, fhir_server: str, access_token: str | None
) -> dict[str, dict[str, Any]]:
    """The Medications that could be read, all reads concurrently."""
    pending = {key: client.submit(client.read, fhir_server, key, access_token) for key in wanted}
    found: dict[str, dict[str, Any]] = {}
    for key, future in pending.items():
        try:
            medication = future.result()
        except FhirError:
            # Fail open: an unreadable Medication leaves its drug to the reference's display text, with a note.
            continue
        if medication.get("resourceType") == "Medication":
            found[key] = medication
    return found


class _Missing:
    """Sentinel for a prefetch key the EHR did not send at all."""


_MISSING: Any = _Missing()

"""`mgcds evaluate`: run a hook for one patient without an EHR (a request file, any FHIR Bundle, or a live server).

It goes through exactly the pipeline the HTTP service uses (prefetch -> facts -> engine -> cards), with the hook
collaborators built by the same factory helpers, so what it prints is what an EHR would get. Nothing is audited
(no call reached the service). Bad input gets one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from pydantic import ValidationError

from cds_service.cdshooks import HookMismatch, parse_hook_request
from cds_service.cli.common import SettingsSource, Subparsers
from cds_service.config import Settings
from cds_service.engine.vocabulary import Hook
from cds_service.errors import BadRequest, EvaluateError, MgCDSError, PrerequisiteFailed
from cds_service.factory import build_fhir_client, build_hook_deps, build_terminology
from cds_service.fhir.bundles import iter_bundle_resources
from cds_service.interfaces import Clock, TerminologyService
from cds_service.runtime import utc_now
from cds_service.security.identity import CallerIdentity
from cds_service.vocabulary import CardExtension, PrefetchKey
from hooks import HookOutcome, RegisteredService, build_registry

HOOKS = tuple(hook.value for hook in Hook)
EVALUATE_USER = "Practitioner/mgcds-evaluate"

# Which prefetch key a resource of a Bundle belongs to (Medications travel with the medication lists).
_KEY_OF_TYPE = {
    "Observation": PrefetchKey.OBSERVATIONS,
    "MedicationStatement": PrefetchKey.MEDICATION_STATEMENTS,
    "MedicationRequest": PrefetchKey.MEDICATION_REQUESTS,
    "Medication": PrefetchKey.MEDICATION_REQUESTS,
    "Condition": PrefetchKey.CONDITIONS,
    "ServiceRequest": PrefetchKey.SERVICE_REQUESTS,
}


class OperatorNamedServer:
    """The FhirServerGuard of a command: the operator named the server, so any http(s) server is allowed."""

    def check(self, fhir_server: str, caller: CallerIdentity | None) -> None:
        """Refuse only what is not an http(s) URL (an operator tool, not the API: no allowlist)."""
        if not fhir_server.startswith(("http://", "https://")):
            raise BadRequest("the FHIR server must be an http(s) URL", field="fhirServer")

    def check_redirect(self, from_url: str, to_url: str) -> None:
        """Follow any redirect the server sends."""
        return


def _read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise EvaluateError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise EvaluateError(f"{path} is not UTF-8 text") from exc
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise EvaluateError(f"{path} is not valid JSON: {exc}") from exc


def _searchset(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in resources]}


def request_from_bundle(bundle: Any, patient_id: str | None, hook: str) -> dict[str, Any]:
    """A hook request whose prefetch holds the patient's resources from any Bundle (e.g. a Synthea transaction).

    ``patient_id`` may be None when the Bundle holds exactly one Patient.
    """
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise EvaluateError("the file is not a FHIR Bundle")
    patient: dict[str, Any] | None = None
    patient_urls: set[str] = set()
    raw_entries = bundle.get("entry")
    entries: list[Any] = raw_entries if isinstance(raw_entries, list) else []
    patient_ids = [
        e["resource"].get("id")
        for e in entries
        if isinstance(e, dict)
        and isinstance(e.get("resource"), dict)
        and e["resource"].get("resourceType") == "Patient"
    ]
    if patient_id is None:
        if len(patient_ids) != 1:
            raise EvaluateError(f"the bundle holds {len(patient_ids)} Patients; name one with --patient")
        patient_id = str(patient_ids[0])
    for entry in entries:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if (
            isinstance(resource, dict)
            and resource.get("resourceType") == "Patient"
            and resource.get("id") == patient_id
        ):
            patient = resource
            if isinstance(entry.get("fullUrl"), str):
                patient_urls.add(entry["fullUrl"])
    if patient is None:
        shown = ", ".join(str(i) for i in patient_ids[:5]) or "none"
        raise EvaluateError(f"no Patient with id {patient_id!r} in the bundle (Patients in it: {shown})")
    # Transaction bundles reference the patient by its fullUrl (urn:uuid:...): point those at Patient/<id>.
    text = json.dumps(bundle)
    for url in patient_urls:
        text = text.replace(json.dumps(url), json.dumps(f"Patient/{patient_id}"))
    rewritten = json.loads(text)
    grouped: dict[PrefetchKey, list[dict[str, Any]]] = {key: [] for key in dict.fromkeys(_KEY_OF_TYPE.values())}
    for resource in iter_bundle_resources(rewritten):
        key = _KEY_OF_TYPE.get(resource["resourceType"])
        if key is not None:
            grouped[key].append(resource)
    prefetch: dict[str, Any] = {PrefetchKey.PATIENT.value: patient}
    prefetch.update({str(key): _searchset(resources) for key, resources in grouped.items()})
    return {
        "hook": hook,
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": EVALUATE_USER, "patientId": patient_id},
        "prefetch": prefetch,
    }


def request_from_server(fhir_server: str, patient_id: str, token: str | None, hook: str) -> dict[str, Any]:
    """A hook request without prefetch: the pipeline fetches everything from the server."""
    request: dict[str, Any] = {
        "hook": hook,
        "hookInstance": str(uuid.uuid4()),
        "fhirServer": fhir_server,
        "context": {"userId": EVALUATE_USER, "patientId": patient_id},
    }
    if token:
        request["fhirAuthorization"] = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "patient/*.read",
            "subject": "mgcds-evaluate",
        }
    return request


def _service_for(hook: str, registry: Iterable[RegisteredService]) -> RegisteredService:
    for service in registry:
        if service.definition.hook == hook:
            return service
    raise EvaluateError(f"no service for hook {hook!r}")


def evaluate_request(
    body: Any,
    settings: Settings,
    *,
    now: datetime | None,
    terminology: TerminologyService | None = None,
    hook: str | None = None,
) -> HookOutcome:
    """Run a hook request through the service pipeline and return its outcome."""
    if not isinstance(body, dict):
        raise EvaluateError("the request is not a JSON object")
    if hook is not None:
        body = {**body, "hook": hook}
    body.setdefault("hookInstance", str(uuid.uuid4()))
    if body.get("hook") not in HOOKS:
        raise EvaluateError(f"hook must be one of {', '.join(HOOKS)}, not {body.get('hook')!r}")
    try:
        request = parse_hook_request(body, Hook(body["hook"]))
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise EvaluateError(f"not a valid CDS Hooks request: {where}: {first.get('msg')}") from exc
    except HookMismatch as exc:  # pragma: no cover - the hook was checked just above
        raise EvaluateError(str(exc)) from exc
    terminology = terminology or build_terminology(settings)
    guard = OperatorNamedServer()
    client = build_fhir_client(settings, guard)
    fixed_clock: Clock = (lambda: now) if now is not None else utc_now
    deps = build_hook_deps(settings, fhir=client, terminology=terminology, clock=fixed_clock)
    try:
        service = _service_for(request.hook, build_registry(terminology.observation_search_codes()))
        if request.fhirServer:
            guard.check(request.fhirServer, None)
        return service.handle(request, deps)
    except PrerequisiteFailed as exc:
        raise EvaluateError(f"cannot evaluate: {exc.message}") from exc
    except BadRequest as exc:
        raise EvaluateError(exc.message) from exc
    finally:
        client.close()


def _parse_now(raw: str | None) -> datetime | None:
    if raw is None:
        return None
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError as exc:
        raise EvaluateError(f"--now must be an ISO 8601 date-time, got {raw!r}") from exc
    if value.tzinfo is None:
        raise EvaluateError("--now needs a time zone (e.g. 2026-11-21T12:00:00Z)")
    return value


def format_report(outcome: HookOutcome, out: TextIO) -> None:
    """A readable report: the score with its components, the interpretation, the cards."""
    a = outcome.assessment or {}
    mds = a.get("mds", {})
    score = mds.get("min") if mds.get("min") == mds.get("max") else f"{mds.get('min')}-{mds.get('max')}"
    out.write(f"Magnesium Depletion Score: {score} of 5 (group {mds.get('group')})\n")
    for component in mds.get("components") or ():
        low, high = component.get("points", [None, None])
        points = f"{low}" if low == high else f"{low}-{high}"
        out.write(f"  - {component.get('name')}: {points} point(s) ({component.get('basis')})\n")
        for evidence in component.get("evidence") or ():
            parts = (evidence.get(k) for k in ("resource", "display", "value", "unit", "date"))
            out.write("      " + " ".join(str(p) for p in parts if p) + "\n")
    egfr = a.get("egfr", {})
    shown = f"{egfr.get('comparator') or ''}{egfr.get('value')}" if egfr.get("value") is not None else "unknown"
    out.write(f"eGFR: {shown} (source: {egfr.get('source')})\n")
    for key, label in (("serum_mg", "Serum magnesium"), ("ionized_mg", "Ionized magnesium")):
        item = a.get(key, {})
        value = item.get("value_mmol_l")
        out.write(f"{label}: {value if value is not None else '-'} mmol/L ({item.get('category')})\n")
    femg = a.get("femg", {})
    out.write(
        f"FEMg: {femg.get('percent') if femg.get('percent') is not None else '-'} % ({femg.get('interpretation')})\n"
    )
    others = a.get("other_risk_drugs") or []
    out.write(f"Other magnesium-wasting drugs: {', '.join(others) if others else 'none'}\n")
    out.write(f"Deficiency: {a.get('deficiency')}\n")
    out.write(f"Recommendations: {', '.join(a.get('recommendations') or []) or 'none'}\n")
    if outcome.notes:
        out.write("Data notes:\n")
        for note in outcome.notes:
            out.write(f"  - {note}\n")
    out.write(f"\nCards ({len(outcome.cards)}):\n")
    for card in outcome.cards:
        out.write(f"\n[{card['indicator'].upper()}] {card['summary']}\n")
        out.write(f"  recommendation: {card['extension'].get(CardExtension.RECOMMENDATION)}\n")
        for suggestion in card.get("suggestions", ()):
            out.write(f"  suggestion: {suggestion['label']}\n")


def _run(args: argparse.Namespace, get_settings: SettingsSource) -> int:
    try:
        now = _parse_now(args.now)
        settings = get_settings()
        if args.request:
            body = _read_json(Path(args.request))
            hook = args.hook if args.hook_given else None
        elif args.bundle:
            body = request_from_bundle(_read_json(Path(args.bundle)), args.patient, args.hook)
            hook = None
        else:
            if not args.patient:
                raise EvaluateError("--fhir-server needs --patient ID")
            body = request_from_server(args.fhir_server, args.patient, args.token, args.hook)
            hook = None
        outcome = evaluate_request(body, settings, now=now, hook=hook)
    except MgCDSError as exc:
        print(f"mgcds evaluate: {exc}", file=sys.stderr)
        return 1
    if args.json:
        json.dump({"assessment": outcome.assessment, "cards": outcome.cards}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        format_report(outcome, sys.stdout)
    return 0


class _HookAction(argparse.Action):
    def __call__(self, parser: Any, namespace: argparse.Namespace, values: Any, option_string: Any = None) -> None:
        namespace.hook = values
        namespace.hook_given = True


def register(subparsers: Subparsers, get_settings: SettingsSource) -> None:
    """Add `mgcds evaluate` to the CLI."""
    parser = subparsers.add_parser("evaluate", help="evaluate one patient without an EHR")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--request", help="a CDS Hooks request JSON with prefetch")
    source.add_argument("--bundle", help="any FHIR Bundle (e.g. Synthea); --patient unless it holds one Patient")
    source.add_argument("--fhir-server", help="a FHIR R4 base URL to read from; needs --patient")
    parser.add_argument("--patient", help="the patient id")
    parser.add_argument("--token", help="bearer token for --fhir-server")
    parser.add_argument("--hook", choices=HOOKS, default="patient-view", action=_HookAction)
    parser.add_argument("--now", help="evaluate as of this ISO 8601 time (default: now)")
    parser.add_argument("--json", action="store_true", help="print {assessment, cards} as JSON")
    parser.set_defaults(func=lambda args: _run(args, get_settings), hook_given=False)

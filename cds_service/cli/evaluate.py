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
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO, TypeVar

from pydantic import ValidationError

from cds_service.cdshooks import AnyHookRequest, HookMismatch, parse_hook_request
from cds_service.cli.common import SettingsSource, Subparsers
from cds_service.config import Settings
from cds_service.engine.vocabulary import Hook
from cds_service.errors import BadRequest, ConfigurationError, EvaluateError, MgCDSError, PrerequisiteFailed
from cds_service.factory import build_fhir_client, build_hook_deps, build_terminology
from cds_service.fhir.bundles import SearchResult, iter_bundle_resources
from cds_service.fhir.smart import SmartBackendAuth, same_origin
from cds_service.fhir.smart_cli import add_smart_arguments, smart_auth_from_args, smart_settings_from_args
from cds_service.interfaces import Clock, FhirReader, TerminologyService
from cds_service.runtime import utc_now
from cds_service.security.identity import CallerIdentity
from cds_service.vocabulary import CardExtension, PrefetchKey
from hooks import HookOutcome, RegisteredService, build_registry

T = TypeVar("T")
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


class SmartFhirReader:
    """A FhirReader whose every call to the SMART-protected server carries a SMART Backend Services token.

    The token comes from :class:`SmartBackendAuth` on each call, so a long run (``mgcds dry-run``) outlives one
    token, and a 401 fetches a new one once. The hook pipeline is unchanged: it only sees a reader. Calls to any
    other origin keep the token the request named (none, for the CLI), so the SMART token never leaves its server.
    """

    def __init__(self, inner: FhirReader, auth: SmartBackendAuth) -> None:
        self._inner = inner
        self._auth = auth

    def _authorized(self, base_url: str, token: str | None, call: Callable[[str | None], T]) -> T:
        if not same_origin(base_url, self._auth.fhir_base):
            return call(token)
        return self._auth.call(call)

    def read(self, base_url: str, relative: str, token: str | None) -> dict[str, Any]:
        """One resource, with the SMART token."""
        return self._authorized(base_url, token, lambda t: self._inner.read(base_url, relative, t))

    def search(self, base_url: str, query: str, token: str | None) -> SearchResult:
        """A search with its pages, with the SMART token."""
        return self._authorized(base_url, token, lambda t: self._inner.search(base_url, query, t))

    def continue_bundle(self, base_url: str, bundle: Mapping[str, Any], token: str | None) -> SearchResult:
        """A prefetched Bundle's further pages, with the SMART token."""
        return self._authorized(base_url, token, lambda t: self._inner.continue_bundle(base_url, bundle, t))

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        """Run a call on the inner reader's pool."""
        return self._inner.submit(fn, *args)

    def for_call(self) -> SmartFhirReader:
        """A reader for one hook call (one deadline and byte allowance), still carrying the SMART token."""
        return SmartFhirReader(self._inner.for_call(), self._auth)

    def close(self) -> None:
        """Close the inner reader."""
        self._inner.close()


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


def _is_patient_entry(entry: Any) -> bool:
    resource = entry.get("resource") if isinstance(entry, dict) else None
    return isinstance(resource, dict) and resource.get("resourceType") == "Patient"


def entry_patient_id(entry: Any) -> str | None:
    """The id of the Patient in a Bundle entry: its ``id``, else the id its ``fullUrl`` gives; None otherwise.

    A transaction Bundle may leave ``id`` out (the server assigns it): its ``fullUrl`` (``urn:uuid:X``, or
    ``.../Patient/X``) names the Patient instead, and its other entries reference it by that ``fullUrl``.
    """
    if not _is_patient_entry(entry):
        return None
    resource = entry["resource"]
    if isinstance(resource.get("id"), str) and resource["id"]:
        return str(resource["id"])
    full_url = entry.get("fullUrl")
    if isinstance(full_url, str) and full_url:
        tail = full_url.removeprefix("urn:uuid:").removeprefix("urn:oid:").rstrip("/").rsplit("/", 1)[-1]
        return tail or None
    return None


def request_from_resources(patient: dict[str, Any], resources: Iterable[dict[str, Any]], hook: str) -> dict[str, Any]:
    """A hook request whose prefetch holds ``patient`` (with its ``id``) and these resources, by prefetch key."""
    grouped: dict[PrefetchKey, list[dict[str, Any]]] = {key: [] for key in dict.fromkeys(_KEY_OF_TYPE.values())}
    for resource in resources:
        key = _KEY_OF_TYPE.get(resource.get("resourceType", ""))
        if key is not None:
            grouped[key].append(resource)
    prefetch: dict[str, Any] = {PrefetchKey.PATIENT.value: patient}
    prefetch.update({str(key): _searchset(items) for key, items in grouped.items()})
    return {
        "hook": hook,
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": EVALUATE_USER, "patientId": patient["id"]},
        "prefetch": prefetch,
    }


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
    patient_ids = [entry_patient_id(e) for e in entries if _is_patient_entry(e)]
    if patient_id is None:
        if len(patient_ids) != 1:
            raise EvaluateError(f"the bundle holds {len(patient_ids)} Patients; name one with --patient")
        if patient_ids[0] is None:
            raise EvaluateError("the bundle's Patient has neither an id nor a fullUrl")
        patient_id = patient_ids[0]
    for entry in entries:
        if entry_patient_id(entry) == patient_id:
            # The id the fullUrl gave is the id in context: the Patient carries it too.
            patient = {**entry["resource"], "id": patient_id}
            if isinstance(entry.get("fullUrl"), str):
                patient_urls.add(entry["fullUrl"])
    if patient is None:
        shown = ", ".join(str(i) for i in patient_ids[:5]) or "none"
        raise EvaluateError(f"no Patient with id {patient_id!r} in the bundle (Patients in it: {shown})")
    patient_urls.discard(f"Patient/{patient_id}")
    if patient_urls:
        # Transaction bundles reference the patient by its fullUrl (urn:uuid:...): point those at Patient/<id>.
        text = json.dumps(bundle)
        for url in patient_urls:
            text = text.replace(json.dumps(url), json.dumps(f"Patient/{patient_id}"))
        bundle = json.loads(text)
    return request_from_resources(patient, iter_bundle_resources(bundle), hook)


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


def parse_request(body: Any, hook: str | None = None) -> AnyHookRequest:
    """A CDS Hooks request from a JSON body (``hook`` overrides the body's); EvaluateError when it is not one."""
    if not isinstance(body, dict):
        raise EvaluateError("the request is not a JSON object")
    if "resourceType" in body and "hook" not in body:
        # A FHIR resource given where a CDS Hooks request belongs: say which option reads it.
        raise EvaluateError(
            f"this file is a FHIR {body['resourceType']!s:.40}, not a CDS Hooks request: use --bundle for a Bundle"
        )
    if hook is not None:
        body = {**body, "hook": hook}
    body.setdefault("hookInstance", str(uuid.uuid4()))
    if body.get("hook") not in HOOKS:
        raise EvaluateError(f"hook must be one of {', '.join(HOOKS)}, not {body.get('hook')!r}")
    try:
        return parse_hook_request(body, Hook(body["hook"]))
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise EvaluateError(f"not a valid CDS Hooks request: {where}: {first.get('msg')}") from exc
    except HookMismatch as exc:  # pragma: no cover - the hook was checked just above
        raise EvaluateError(str(exc)) from exc


class Evaluator:
    """The service pipeline for requests without an EHR, built once and reused (``evaluate``, ``dry-run``).

    It holds what the HTTP service builds once per process, made by the same factory helpers: the terminology, one
    FHIR client, the hook collaborators and the registry of services.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        now: datetime | None,
        terminology: TerminologyService | None = None,
        wrap_reader: Callable[[FhirReader], FhirReader] | None = None,
    ) -> None:
        self.terminology = terminology or build_terminology(settings)
        self.guard = OperatorNamedServer()
        client: FhirReader = build_fhir_client(settings, self.guard)
        self.fhir = wrap_reader(client) if wrap_reader is not None else client
        fixed_clock: Clock = (lambda: now) if now is not None else utc_now
        self.deps = build_hook_deps(settings, fhir=self.fhir, terminology=self.terminology, clock=fixed_clock)
        self.registry = build_registry(self.terminology.observation_search_codes())

    def service_for(self, hook: str) -> RegisteredService:
        """The registered service of a hook."""
        return _service_for(hook, self.registry)

    def evaluate(self, body: Any, *, hook: str | None = None) -> HookOutcome:
        """Run one hook request (JSON) through the service pipeline and return its outcome."""
        return self.handle(parse_request(body, hook))

    def handle(self, request: AnyHookRequest) -> HookOutcome:
        """Run one parsed hook request through its service, as the HTTP service would."""
        try:
            service = self.service_for(request.hook)
            if request.fhirServer:
                self.guard.check(request.fhirServer, None)
            return service.handle(request, self.deps)
        except PrerequisiteFailed as exc:
            raise EvaluateError(f"cannot evaluate: {exc.message}") from exc
        except BadRequest as exc:
            raise EvaluateError(exc.message) from exc

    def close(self) -> None:
        """Release the FHIR client's connections and threads."""
        self.fhir.close()


def evaluate_request(
    body: Any,
    settings: Settings,
    *,
    now: datetime | None,
    terminology: TerminologyService | None = None,
    hook: str | None = None,
    wrap_reader: Callable[[FhirReader], FhirReader] | None = None,
) -> HookOutcome:
    """Run a hook request through the service pipeline and return its outcome."""
    evaluator = Evaluator(settings, now=now, terminology=terminology, wrap_reader=wrap_reader)
    try:
        return evaluator.evaluate(body, hook=hook)
    finally:
        evaluator.close()


def smart_reader_from_args(args: argparse.Namespace) -> Callable[[FhirReader], FhirReader] | None:
    """A wrapper that authorizes FHIR reads with the ``--smart-*`` flags; None without them.

    The flags mean SMART Backend Services against ``--fhir-server``: without it they are an error.
    """
    if smart_settings_from_args(args) is None:
        return None
    if not getattr(args, "fhir_server", None):
        raise ConfigurationError("the --smart-* flags need --fhir-server")
    auth = smart_auth_from_args(args)
    if auth is None:  # pragma: no cover - smart_settings_from_args said the flags are there
        return None
    return lambda inner: SmartFhirReader(inner, auth)


def parse_now(raw: str | None) -> datetime | None:
    """``--now``: an ISO 8601 date-time with a time zone (None when not given)."""
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
        now = parse_now(args.now)
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
        # SMART Backend Services: the token is fetched (and refreshed after a 401) for every FHIR read.
        wrap_reader = smart_reader_from_args(args)
        outcome = evaluate_request(body, settings, now=now, hook=hook, wrap_reader=wrap_reader)
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
    add_smart_arguments(parser)
    parser.set_defaults(func=lambda args: _run(args, get_settings), hook_given=False)

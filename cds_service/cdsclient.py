"""A CDS Hooks 2.0 client: what an EHR does when a hook fires, as a library (``mgcds invoke`` is its command).

Read the service's discovery document, fill its prefetch templates against the FHIR server, build the hook request
with ``fhirAuthorization``, sign the CDS Hooks JWT, call the service, and build feedback for a card.

Spec: https://cds-hooks.hl7.org/2.0/ ("Discovery", "Prefetch tokens", "Calling a CDS Service", "Trusting CDS
Clients", "Feedback"). The pure helpers (template filling, request and JWT building) take explicit arguments so
they are unit-testable; only :func:`fetch_prefetch`, :func:`get_discovery` and :func:`post_json` talk to the
network, through the session they are given.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import jwt
import requests
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from cds_service.engine.vocabulary import ORDER_HOOKS, Hook
from cds_service.errors import InvokeError, UnfillableTemplate

HOOKS = tuple(hook.value for hook in Hook)  # the hooks a client can fire at MgCDS, as --hook choices
DEFAULT_USER_ID = "Practitioner/example"
DEFAULT_CLIENT_ID = "mgcds-invoke"
# CDS Hooks 2.0 "Trusting CDS Clients": the JWT SHOULD expire within 5 minutes.
JWT_LIFETIME = timedelta(minutes=5)
ACCESS_TOKEN_LIFETIME_SECONDS = 300
FHIR_SCOPE = "patient/*.read"
DEFAULT_TIMEOUT_SECONDS = 30.0
FHIR_JSON = "application/fhir+json"
_TOKEN = re.compile(r"\{\{\s*([^{}]+?)\s*\}\}")
# CDS Hooks 2.0 "Prefetch tokens": user tokens resolve to the id part of context.userId of that resource type.
_USER_TOKENS = {
    "userPractitionerId": "Practitioner",
    "userPractitionerRoleId": "PractitionerRole",
    "userPatientId": "Patient",
    "userRelatedPersonId": "RelatedPerson",
}


# ----------------------------------------------------------------------------------------------------
# Prefetch templates


def fill_prefetch_template(template: str, context: Mapping[str, Any]) -> str:
    """Replace the CDS Hooks prefetch tokens in ``template`` from the hook ``context``.

    ``{{context.<field>}}`` takes a primitive context field (URL-encoded); ``{{userPractitionerId}}`` and its
    siblings take the id of ``context.userId`` when it is of that type; anything else: UnfillableTemplate.
    """

    def replace(match: re.Match[str]) -> str:
        token = match.group(1)
        if token.startswith("context."):
            value = context.get(token.removeprefix("context."))
            if isinstance(value, str | int) and not isinstance(value, bool):
                return quote(str(value), safe="/")
            raise UnfillableTemplate(f"prefetch token {{{{{token}}}}} has no primitive value in the context")
        if token in _USER_TOKENS:
            resource_type, _, user_id = str(context.get("userId", "")).partition("/")
            if resource_type == _USER_TOKENS[token] and user_id:
                return quote(user_id, safe="")
            raise UnfillableTemplate(f"prefetch token {{{{{token}}}}}: the user is not a {_USER_TOKENS[token]}")
        raise UnfillableTemplate(f"unknown prefetch token {{{{{token}}}}}")

    return _TOKEN.sub(replace, template)


def fetch_prefetch(
    session: requests.Session,
    fhir_server: str,
    templates: Mapping[str, str],
    context: Mapping[str, Any],
    token: str | None,
    timeout: float,
) -> tuple[dict[str, Any], dict[str, str]]:
    """Fill and run every prefetch template; return (prefetch, {key: why it was left out})."""
    headers = {"Accept": FHIR_JSON}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    prefetch: dict[str, Any] = {}
    missing: dict[str, str] = {}
    for key, template in templates.items():
        try:
            query = fill_prefetch_template(template, context)
        except UnfillableTemplate as exc:
            missing[key] = str(exc)
            continue
        # Fail open, like an EHR: a failed query is left out of the prefetch so the service fetches it itself.
        try:
            response = session.get(f"{fhir_server.rstrip('/')}/{query.lstrip('/')}", headers=headers, timeout=timeout)
        except requests.RequestException as exc:
            missing[key] = f"FHIR server unreachable ({type(exc).__name__})"
            continue
        if not response.ok:
            missing[key] = f"FHIR server answered HTTP {response.status_code}"
            continue
        try:
            prefetch[key] = response.json()
        except ValueError:
            missing[key] = "FHIR server answered with something that is not JSON"
    return prefetch, missing


# ----------------------------------------------------------------------------------------------------
# Draft orders and the hook request


def draft_orders_bundle(orders: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """``context.draftOrders``: a collection Bundle of the draft resources."""
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": dict(o)} for o in orders]}


# Order resources whose patient element is called `patient` rather than `subject` (FHIR R4).
_PATIENT_ELEMENT = {"NutritionOrder": "patient", "VisionPrescription": "patient"}


def assign_to_patient(order: Mapping[str, Any], patient_id: str) -> dict[str, Any]:
    """The draft with its patient reference set to the context's patient when the file leaves it out."""
    element = _PATIENT_ELEMENT.get(str(order.get("resourceType")), "subject")
    if element in order:
        return dict(order)
    return {**order, element: {"reference": f"Patient/{patient_id}"}}


def build_context(
    hook: str,
    patient_id: str,
    user_id: str,
    draft_orders: Sequence[Mapping[str, Any]] = (),
    selections: Sequence[str] = (),
    encounter_id: str | None = None,
) -> dict[str, Any]:
    """The hook's ``context`` (patient-view, order-select, order-sign as in the CDS Hooks hook library)."""
    context: dict[str, Any] = {"userId": user_id, "patientId": patient_id}
    if encounter_id:
        context["encounterId"] = encounter_id
    if hook in ORDER_HOOKS:
        if not draft_orders:
            raise InvokeError(f"{hook} needs at least one --draft-order file")
        # An EHR's drafts always belong to the patient in context; draft files may leave the reference out.
        draft_orders = [assign_to_patient(order, patient_id) for order in draft_orders]
        context["draftOrders"] = draft_orders_bundle(draft_orders)
    if hook == Hook.ORDER_SELECT:
        known = {f"{o['resourceType']}/{o['id']}" for o in draft_orders}
        chosen = list(selections) or sorted(known)
        unknown = [s for s in chosen if s not in known]
        if unknown:
            raise InvokeError(f"--selection {', '.join(unknown)} is not among the draft orders ({', '.join(known)})")
        context["selections"] = chosen
    elif selections:
        raise InvokeError("--selection only applies to --hook order-select")
    return context


def build_hook_request(
    hook: str,
    context: Mapping[str, Any],
    fhir_server: str | None,
    token: str | None = None,
    client_id: str = DEFAULT_CLIENT_ID,
    prefetch: Mapping[str, Any] | None = None,
    hook_instance: str | None = None,
) -> dict[str, Any]:
    """A CDS Hooks 2.0 request body; ``fhirAuthorization`` only when there is a token to hand over."""
    request: dict[str, Any] = {
        "hook": hook,
        "hookInstance": hook_instance or str(uuid.uuid4()),
        "context": dict(context),
    }
    if fhir_server:
        request["fhirServer"] = fhir_server
    if fhir_server and token:
        request["fhirAuthorization"] = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": ACCESS_TOKEN_LIFETIME_SECONDS,
            "scope": FHIR_SCOPE,
            "subject": client_id,
            "patient": context.get("patientId"),
        }
    if prefetch:
        request["prefetch"] = dict(prefetch)
    return request


# ----------------------------------------------------------------------------------------------------
# The CDS Hooks JWT


def load_signing_key(pem: bytes) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
    """Read a PEM private key (EC or RSA, unencrypted)."""
    try:
        key = load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise InvokeError(f"cannot read the signing key: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise InvokeError("the signing key must be an EC or RSA private key")
    return key


def signing_algorithm(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> str:
    """ES384 for a P-384 key, ES256 for P-256, RS384 for RSA (the spec recommends ES384 and RS384)."""
    if isinstance(key, rsa.RSAPrivateKey):
        return "RS384"
    curves = {"secp384r1": "ES384", "secp256r1": "ES256"}
    if key.curve.name not in curves:
        raise InvokeError(f"EC curve {key.curve.name} is not supported: use P-384 (ES384) or P-256 (ES256)")
    return curves[key.curve.name]


def sign_cds_jwt(
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
    issuer: str,
    kid: str,
    audience: str,
    now: datetime,
    jku: str | None = None,
) -> str:
    """The CDS Hooks JWT for one call: iss, sub (= iss), aud (endpoint URL), iat, exp (+5 min), jti; kid."""
    headers: dict[str, Any] = {"kid": kid, "typ": "JWT"}
    if jku:
        headers["jku"] = jku
    claims = {
        "iss": issuer,
        "sub": issuer,
        "aud": audience,
        "iat": int(now.timestamp()),
        "exp": int((now + JWT_LIFETIME).timestamp()),
        "jti": str(uuid.uuid4()),
    }
    return jwt.encode(claims, key, algorithm=signing_algorithm(key), headers=headers)


# ----------------------------------------------------------------------------------------------------
# Discovery, cards, feedback


def service_base(service_url: str) -> str:
    """The service's base URL, accepting it with or without a trailing ``/cds-services``."""
    return service_url.rstrip("/").removesuffix("/cds-services")


def pick_service(discovery: Mapping[str, Any], hook: str, service_id: str | None) -> dict[str, Any]:
    """The discovery entry to call: the one with ``service_id``, else the only one for ``hook``."""
    services = discovery.get("services")
    if not isinstance(services, list):
        raise InvokeError("the discovery document has no services list")
    if service_id:
        for service in services:
            if isinstance(service, dict) and service.get("id") == service_id:
                if service.get("hook") != hook:
                    raise InvokeError(f"service {service_id} is for hook {service.get('hook')}, not {hook}")
                return service
        raise InvokeError(f"no service with id {service_id} in the discovery document")
    matching = [s for s in services if isinstance(s, dict) and s.get("hook") == hook]
    if len(matching) != 1:
        ids = ", ".join(str(s.get("id")) for s in matching) or "none"
        raise InvokeError(f"{len(matching)} services for hook {hook} ({ids}): choose one with --service-id")
    return matching[0]


def build_feedback(
    card: Mapping[str, Any], outcome: str, now: datetime, override_reason: str | None = None
) -> dict[str, Any]:
    """A feedback body for one card: accepted (its first suggestion) or overridden (with a reason)."""
    if not card.get("uuid"):
        raise InvokeError("the card has no uuid, so no feedback can be sent for it")
    item: dict[str, Any] = {
        "card": card["uuid"],
        "outcome": outcome,
        "outcomeTimestamp": now.astimezone(UTC).isoformat().replace("+00:00", "Z"),
    }
    if outcome == "accepted":
        suggestions = [s for s in card.get("suggestions") or [] if s.get("uuid")]
        if not suggestions:
            raise InvokeError("the card has no suggestion with a uuid to accept: use --feedback overridden")
        item["acceptedSuggestions"] = [{"id": suggestions[0]["uuid"]}]
    elif override_reason:
        offered = {r.get("code"): r for r in card.get("overrideReasons") or []}
        if override_reason not in offered:
            raise InvokeError(f"the card offers no override reason {override_reason} (offered: {', '.join(offered)})")
        item["overrideReason"] = {"reason": {k: v for k, v in offered[override_reason].items() if v is not None}}
    return {"feedback": [item]}


# ----------------------------------------------------------------------------------------------------
# HTTP


def post_json(
    session: requests.Session, url: str, body: Mapping[str, Any], authorization: str | None, timeout: float
) -> dict[str, Any]:
    """POST a JSON body (with the CDS Hooks JWT when given); the answer's JSON object, or InvokeError."""
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if authorization:
        headers["Authorization"] = f"Bearer {authorization}"
    try:
        response = session.post(url, json=body, headers=headers, timeout=timeout)
    except requests.RequestException as exc:
        raise InvokeError(f"cannot reach {url}: {type(exc).__name__}") from exc
    return json_object(response, url)


def json_object(response: requests.Response, what: str) -> dict[str, Any]:
    """The answer's JSON object, or an InvokeError naming ``what`` answered otherwise."""
    if not response.ok:
        raise InvokeError(f"{what} answered HTTP {response.status_code}: {_short(response.text)}")
    try:
        parsed = response.json()
    except ValueError as exc:
        raise InvokeError(f"{what} answered with something that is not JSON") from exc
    if not isinstance(parsed, dict):
        raise InvokeError(f"{what} answered with JSON that is not an object")
    return parsed


def get_discovery(session: requests.Session, base: str, timeout: float) -> dict[str, Any]:
    """The service's discovery document (``GET {base}/cds-services``)."""
    url = f"{base}/cds-services"
    try:
        response = session.get(url, headers={"Accept": "application/json"}, timeout=timeout)
    except requests.RequestException as exc:
        raise InvokeError(f"cannot reach the CDS service at {url}: {type(exc).__name__}") from exc
    return json_object(response, f"discovery {url}")


def _short(text: str, limit: int = 200) -> str:
    return " ".join(text.split())[:limit]

"""`mgcds invoke`: an EHR simulator for integrators (the command; the CDS Hooks client is cds_service.cdsclient).

It does what an EHR does when a hook fires: reads the service's discovery document, fills the service's prefetch
templates against the FHIR server (optional), builds the hook request with ``fhirAuthorization``, signs the CDS
Hooks JWT when given a private key, calls the service, prints the cards, and can send feedback. This module reads
the files named on the command line and prints; :mod:`cds_service.cdsclient` does the protocol.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from cds_service.cdsclient import (
    DEFAULT_CLIENT_ID,
    DEFAULT_TIMEOUT_SECONDS,
    DEFAULT_USER_ID,
    HOOKS,
    build_context,
    build_feedback,
    build_hook_request,
    fetch_prefetch,
    get_discovery,
    load_signing_key,
    pick_service,
    post_json,
    service_base,
    sign_cds_jwt,
)
from cds_service.cli.common import SettingsSource, Subparsers
from cds_service.errors import InvokeError, MgCDSError
from cds_service.fhir.smart_cli import add_smart_arguments, fhir_token_from_args, smart_settings_from_args
from cds_service.vocabulary import CardExtension


def load_draft_orders(paths: Sequence[Path]) -> list[dict[str, Any]]:
    """Read draft order files (a resource or a Bundle each); give every resource an id if it has none."""
    orders: list[dict[str, Any]] = []
    for path in paths:
        try:
            content = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InvokeError(f"cannot read draft order file {path}: {exc}") from exc
        if not isinstance(content, dict) or not isinstance(content.get("resourceType"), str):
            raise InvokeError(f"draft order file {path} is not a FHIR resource (no resourceType)")
        if content["resourceType"] == "Bundle":
            resources = [entry.get("resource") for entry in content.get("entry", [])]
        else:
            resources = [content]
        for resource in resources:
            if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
                raise InvokeError(f"draft order file {path} holds an entry that is not a FHIR resource")
            orders.append({**resource, "id": resource.get("id") or str(uuid.uuid4())})
    return orders


def format_cards(response: Mapping[str, Any]) -> str:
    """The cards as text: number, indicator, summary, recommendation, source, detail, suggestions."""
    cards = response.get("cards") or []
    if not cards:
        return "No cards."
    lines: list[str] = []
    for number, card in enumerate(cards, start=1):
        lines.append(f"{number}. [{str(card.get('indicator', '?')).upper()}] {card.get('summary', '')}")
        code = (card.get("extension") or {}).get(CardExtension.RECOMMENDATION)
        if code:
            lines.append(f"   recommendation: {code}")
        source = card.get("source") or {}
        if source.get("label"):
            lines.append(f"   source: {source['label']}" + (f" <{source['url']}>" if source.get("url") else ""))
        if card.get("detail"):
            wrapped = [
                textwrap.fill(paragraph, width=100, initial_indent="   ", subsequent_indent="   ")
                for paragraph in str(card["detail"]).splitlines()
                if paragraph.strip()
            ]
            lines.extend(wrapped)
        suggestions = card.get("suggestions") or []
        if suggestions:
            behavior = card.get("selectionBehavior")
            lines.append("   suggestions" + (f" ({behavior})" if behavior else "") + ":")
            lines.extend(f"   - {s.get('label', '')}" for s in suggestions)
        reasons = card.get("overrideReasons") or []
        if reasons:
            lines.append("   override reasons: " + ", ".join(str(r.get("code")) for r in reasons))
        lines.append(f"   uuid: {card.get('uuid', '')}")
    return "\n".join(lines)


def run(args: argparse.Namespace, clock: Callable[[], datetime] | None = None) -> int:
    """Execute `mgcds invoke`; prints cards to stdout, a one-line error to stderr (exit 1) on failure."""
    now = clock or (lambda: datetime.now(UTC))
    try:
        return _run(args, now)
    except InvokeError as exc:
        print(f"mgcds invoke: {exc}", file=sys.stderr)
        return 1


def _fhir_token(args: argparse.Namespace) -> str | None:
    """``--token``, or a SMART Backend Services token for ``--fhir-server``."""
    # The token fills the prefetch and goes to the service as fhirAuthorization, as an EHR hands over its own.
    if smart_settings_from_args(args) is not None and not args.fhir_server:
        raise InvokeError("the --smart-* flags need --fhir-server")
    try:
        return fhir_token_from_args(args, args.fhir_server)
    except MgCDSError as exc:
        raise InvokeError(f"SMART Backend Services: {exc}") from exc


def _run(args: argparse.Namespace, now: Callable[[], datetime]) -> int:
    if args.sign_key and not (args.iss and args.kid):
        raise InvokeError("--sign-key needs --iss and --kid")
    key = None
    if args.sign_key:
        try:
            key = load_signing_key(Path(args.sign_key).read_bytes())
        except OSError as exc:
            raise InvokeError(f"cannot read the signing key file {args.sign_key}: {exc.strerror}") from exc
    token = _fhir_token(args)
    draft_orders = load_draft_orders([Path(p) for p in args.draft_order or []])
    context = build_context(args.hook, args.patient, args.user, draft_orders, args.selection or [], args.encounter)
    base = service_base(args.service_url)

    def bearer(url: str) -> str | None:
        return sign_cds_jwt(key, args.iss, args.kid, url, now(), args.jku) if key is not None else None

    with requests.Session() as session:
        service = pick_service(get_discovery(session, base, args.timeout), args.hook, args.service_id)
        endpoint = f"{base}/cds-services/{service['id']}"
        prefetch: dict[str, Any] = {}
        if args.prefetch and args.fhir_server:
            prefetch, missing = fetch_prefetch(
                session, args.fhir_server, service.get("prefetch") or {}, context, token, args.timeout
            )
            for prefetch_key, reason in missing.items():
                print(f"mgcds invoke: prefetch {prefetch_key} left out: {reason}", file=sys.stderr)
        request = build_hook_request(args.hook, context, args.fhir_server, token, args.client_id, prefetch)
        response = post_json(session, endpoint, request, bearer(endpoint), args.timeout)
        print(json.dumps(response, indent=2) if args.json else format_cards(response))
        if args.feedback:
            cards = response.get("cards") or []
            if not 1 <= args.card <= len(cards):
                raise InvokeError(f"--card {args.card}: the service returned {len(cards)} card(s)")
            feedback = build_feedback(cards[args.card - 1], args.feedback, now(), args.override_reason)
            feedback_url = f"{endpoint}/feedback"
            post_json(session, feedback_url, feedback, bearer(feedback_url), args.timeout)
            print(f"mgcds invoke: feedback sent: card {args.card} {args.feedback}", file=sys.stderr)
    return 0


def register(subparsers: Subparsers, get_settings: SettingsSource) -> None:
    """Add `mgcds invoke` to the CLI (no Settings needed: it is a client of the service, not the service)."""
    parser = subparsers.add_parser("invoke", help="act as an EHR: fire a hook at a CDS service and print the cards")
    add_arguments(parser)
    parser.set_defaults(func=run)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `mgcds invoke`."""
    parser.add_argument("--service-url", required=True, help="the CDS service base URL (discovery at /cds-services)")
    parser.add_argument("--fhir-server", help="the FHIR R4 base URL sent as fhirServer and used for prefetch")
    parser.add_argument("--patient", required=True, help="the patient id (context.patientId)")
    parser.add_argument("--hook", choices=HOOKS, default="patient-view")
    parser.add_argument("--service-id", help="which service to call (default: the only one for the hook)")
    parser.add_argument("--user", default=DEFAULT_USER_ID, help=f"context.userId (default {DEFAULT_USER_ID})")
    parser.add_argument("--encounter", help="context.encounterId")
    parser.add_argument("--draft-order", action="append", metavar="FILE", help="a draft order (resource or Bundle)")
    parser.add_argument("--selection", action="append", metavar="TYPE/ID", help="order-select: a selected draft")
    parser.add_argument(
        "--prefetch",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="fill the service's prefetch templates against --fhir-server (default) or send none",
    )
    parser.add_argument("--token", help="FHIR access token handed to the service in fhirAuthorization")
    parser.add_argument("--client-id", default=DEFAULT_CLIENT_ID, help="fhirAuthorization.subject")
    parser.add_argument("--sign-key", metavar="PEM", help="private key (EC P-384/P-256 or RSA) to sign the JWT")
    parser.add_argument("--iss", help="JWT issuer (with --sign-key)")
    parser.add_argument("--kid", help="JWT key id (with --sign-key)")
    parser.add_argument("--jku", help="JWT jku header: the issuer's JWKS URL (optional)")
    parser.add_argument("--json", action="store_true", help="print the service's answer as JSON")
    parser.add_argument("--feedback", choices=("accepted", "overridden"), help="send feedback on a card")
    parser.add_argument("--card", type=int, default=1, help="which card (1-based, as printed) the feedback is on")
    parser.add_argument("--override-reason", metavar="CODE", help="override reason code offered by the card")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_SECONDS, help="seconds per HTTP call")
    add_smart_arguments(parser)


def main(argv: Sequence[str] | None = None, clock: Callable[[], datetime] | None = None) -> int:
    """`mgcds invoke` on its own (tests, or ``python -m cds_service.cli.invoke``)."""
    parser = argparse.ArgumentParser(prog="mgcds invoke", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv), clock)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

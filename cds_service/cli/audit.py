"""``mgcds audit init | verify | replay | redrive | quarantine | list | show | export``: the audit log, by hand.

``verify``, ``list``, ``show``, ``export`` and ``quarantine`` read through an AuditReader (a read-only connection,
no spool): they cannot change the store and leave the spool as they found it (``verify`` only counts what waits).
Only ``replay`` and ``redrive`` (and ``init``, the schema) write.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import datetime
from typing import IO, Any

from cds_service.audit.export import iter_csv, iter_fhir_ndjson
from cds_service.audit.model import CallFilter, StoredRecord
from cds_service.audit.quarantine import Quarantine, quarantine_path
from cds_service.audit.records import parse_moment
from cds_service.audit.spool import Spool
from cds_service.cli.common import SettingsSource, Subparsers
from cds_service.config import Settings
from cds_service.errors import AuditStoreError
from cds_service.factory import build_audit_reader, build_audit_writer, init_audit_schema

EXIT_OK = 0
EXIT_BROKEN = 1  # verify found a broken link
EXIT_STORE = 2  # the store could not be reached or is not initialised
EXIT_QUARANTINED = 3  # the chain holds, but records the store refused wait in the quarantine: it is incomplete


def _since(text: str) -> datetime:
    try:
        return parse_moment(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _until(text: str) -> datetime:
    try:
        return parse_moment(text, end_of_day=True)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _count(maximum: int, *, minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if not minimum <= value <= maximum:
            raise argparse.ArgumentTypeError(f"must be from {minimum} to {maximum}, got {value}")
        return value

    return parse


def register(subparsers: Subparsers, get_settings: SettingsSource) -> None:
    """Add ``audit`` and its sub-commands; each sets ``func(args) -> int`` (the exit status)."""
    audit = subparsers.add_parser("audit", help="the append-only audit log")
    commands = audit.add_subparsers(dest="audit_command", required=True)

    def bind(parser: argparse.ArgumentParser, handler: Callable[[argparse.Namespace, Settings], int]) -> None:
        parser.set_defaults(func=lambda args: handler(args, get_settings()))

    bind(commands.add_parser("init", help="create the audit schema (explicit; safe to repeat)"), _cmd_init)
    bind(
        commands.add_parser("verify", help="walk the hash chain; non-zero exit at the first broken link"),
        _cmd_verify,
    )
    bind(commands.add_parser("replay", help="store the records waiting in the spool"), _cmd_replay)
    bind(
        commands.add_parser("redrive", help="hand the quarantined records to the store again (after fixing the cause)"),
        _cmd_redrive,
    )
    quarantine = commands.add_parser("quarantine", help="list the records the store refused, with the reason")
    quarantine.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    bind(quarantine, _cmd_quarantine)

    listing = commands.add_parser("list", help="list service calls with their cards and feedback")
    listing.add_argument("--patient", help="patient id")
    listing.add_argument("--user", help="user id (context.userId)")
    listing.add_argument("--hook-instance", help="the call's hookInstance (the EHR's id of that hook invocation)")
    listing.add_argument("--since", type=_since, help="ISO 8601 date or date-time (UTC if no offset)")
    listing.add_argument("--until", type=_until, help="ISO 8601 date or date-time; a bare date includes that day")
    listing.add_argument("--recommendation", help="recommendation code, e.g. test-serum-mg")
    listing.add_argument("--outcome", choices=["accepted", "overridden", "none"], help="feedback outcome")
    listing.add_argument("--limit", type=_count(100_000, minimum=1), default=100)
    listing.add_argument("--offset", type=_count(2**62, minimum=0), default=0)  # within every store's OFFSET
    listing.add_argument("--json", action="store_true", help="JSON instead of a table")
    bind(listing, _cmd_list)

    show = commands.add_parser("show", help="one record in full, with its place in the chain")
    show.add_argument("record_id")
    bind(show, _cmd_show)

    export = commands.add_parser("export", help="every record, in chain order")
    export.add_argument("--format", choices=["fhir", "csv"], required=True, help="fhir: NDJSON AuditEvents (R4)")
    export.add_argument("--output", "-o", help="file to write (default: standard output)")
    bind(export, _cmd_export)


def _cmd_init(_args: argparse.Namespace, settings: Settings) -> int:
    try:
        init_audit_schema(settings)
    except AuditStoreError as exc:
        print(f"audit init failed: {exc}", file=sys.stderr)
        return EXIT_STORE
    print("audit store ready")
    return EXIT_OK


def _cmd_verify(_args: argparse.Namespace, settings: Settings) -> int:
    log = build_audit_reader(settings)
    try:
        report = log.verify()
    except AuditStoreError as exc:
        print(f"audit verify failed: {exc}", file=sys.stderr)
        return EXIT_STORE
    finally:
        log.close()
    print(report.describe(), file=sys.stdout if report.ok else sys.stderr)
    if not report.ok:
        return EXIT_BROKEN
    # The chain holds what reached the store; say what has not (this instance's spool and quarantine).
    spool_path = settings.resolved_spool_path
    backlog = Spool(spool_path).backlog(exact=True) if spool_path.parent.exists() else None
    if backlog is not None and backlog.records:
        print(
            f"note: {backlog.records} records wait in the spool {spool_path} (oldest from "
            f"{backlog.oldest_occurred_at}); `mgcds audit replay` stores them now"
        )
    held = Quarantine(quarantine_path(spool_path)).count() if spool_path.parent.exists() else 0
    if held:
        print(
            f"INCOMPLETE: {held} records the store refused are quarantined in {quarantine_path(spool_path)} and are "
            "not in the chain; see `mgcds audit quarantine`, fix the cause, then `mgcds audit redrive`",
            file=sys.stderr,
        )
        return EXIT_QUARANTINED
    return EXIT_OK


def _cmd_replay(_args: argparse.Namespace, settings: Settings) -> int:
    log = build_audit_writer(settings, asynchronous=False)
    try:
        stored = log.replay()
    except AuditStoreError as exc:
        print(f"audit replay failed, records stay in the spool: {exc}", file=sys.stderr)
        return EXIT_STORE
    finally:
        log.close()
    print(f"replayed {stored} records")
    return EXIT_OK


def _cmd_redrive(_args: argparse.Namespace, settings: Settings) -> int:
    log = build_audit_writer(settings, asynchronous=False)
    try:
        stored, refused = log.redrive()
    except AuditStoreError as exc:
        print(f"audit redrive failed, records stay quarantined: {exc}", file=sys.stderr)
        return EXIT_STORE
    finally:
        log.close()
    print(f"re-drove the quarantine: {stored} records stored, {refused} still refused")
    return EXIT_OK if refused == 0 else EXIT_QUARANTINED


def _cmd_quarantine(args: argparse.Namespace, settings: Settings) -> int:
    quarantine = Quarantine(quarantine_path(settings.resolved_spool_path))
    held = list(quarantine.entries())
    for item in held:
        if args.json:
            print(
                json.dumps(
                    {"quarantined_at": item.quarantined_at, "record_id": item.record_id, "reason": item.reason},
                    ensure_ascii=False,
                )
            )
        else:
            print(f"{item.quarantined_at:27}  {item.record_id or '(unreadable)':32}  {item.reason}")
    if not args.json:
        print(f"{len(held)} records quarantined in {quarantine.path}")
    return EXIT_OK if not held else EXIT_QUARANTINED


def call_summary(call: StoredRecord, feedback: list[StoredRecord]) -> dict[str, Any]:
    """The listing view of one call (``list --json``)."""
    p = call.payload
    return {
        "record_id": call.record_id,
        "seq": call.seq,
        "occurred_at": call.occurred_at,
        "service_id": p["service_id"],
        "hook": p.get("hook"),
        "hook_instance": p.get("hook_instance"),
        "patient_id": p.get("patient_id"),
        "user_id": p.get("user_id"),
        "http_status": p.get("http_status"),
        "error": p.get("error"),
        "cards": [
            {k: card[k] for k in ("uuid", "recommendation", "indicator", "summary")} for card in p.get("cards", ())
        ],
        "feedback": [
            {
                "record_id": item.record_id,
                "card_uuid": item.payload["card_uuid"],
                "outcome": item.payload["outcome"],
                "override_reason": item.payload.get("override_reason"),
                "accepted_suggestions": item.payload.get("accepted_suggestions", []),
            }
            for item in feedback
        ],
        "suppressed": p.get("suppressed", []),
    }


def _cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    filters = CallFilter(
        patient_id=args.patient,
        user_id=args.user,
        hook_instance=args.hook_instance,
        since=args.since,
        until=args.until,
        recommendation=args.recommendation,
        outcome=args.outcome,
    )
    log = build_audit_reader(settings)
    try:
        calls, total = log.list_calls(filters, limit=args.limit, offset=args.offset)
        feedback = log.feedback_for([call.record_id for call in calls])
    except AuditStoreError as exc:
        print(f"audit list failed: {exc}", file=sys.stderr)
        return EXIT_STORE
    finally:
        log.close()
    rows = [call_summary(call, feedback[call.record_id]) for call in calls]
    if args.json:
        print(json.dumps({"total": total, "calls": rows}, indent=2, ensure_ascii=False))
        return EXIT_OK
    header = f"{'#':>6}  {'occurred_at':27}  {'record_id':32}  {'patient':14}  {'user':20}"
    print(f"{header}  status  cards / outcomes")
    for row in rows:
        cards = ", ".join(card["recommendation"] for card in row["cards"]) or "-"
        outcomes = ", ".join(item["outcome"] for item in row["feedback"]) or "no feedback"
        print(
            f"{row['seq']:>6}  {row['occurred_at']:27}  {row['record_id']:32}  "
            f"{str(row['patient_id'])[:14]:14}  {str(row['user_id'])[:20]:20}  "
            f"{row['http_status']!s:6}  {cards} / {outcomes}"
        )
    print(f"{len(rows)} of {total} calls")
    return EXIT_OK


def _cmd_show(args: argparse.Namespace, settings: Settings) -> int:
    log = build_audit_reader(settings)
    try:
        record = log.get(args.record_id)
        feedback = log.feedback_for([args.record_id]).get(args.record_id, []) if record else []
    except AuditStoreError as exc:
        print(f"audit show failed: {exc}", file=sys.stderr)
        return EXIT_STORE
    finally:
        log.close()
    if record is None:
        print(f"no audit record {args.record_id}", file=sys.stderr)
        return EXIT_BROKEN
    shown: dict[str, Any] = {
        "seq": record.seq,
        "record_id": record.record_id,
        "event_type": record.event_type,
        # The link as read (by the card index, whichever record landed first), and the one sealed into the chain.
        "linked_record_id": record.linked_record_id,
        "sealed_link": record.sealed_link,
        "payload_sha256": record.payload_sha256,
        "prev_hash": record.prev_hash,
        "entry_hash": record.entry_hash,
        "payload": record.payload,
        "feedback": [{"record_id": item.record_id, **item.payload} for item in feedback],
    }
    if record.event_type == "service-call":
        # The cards this call did not show because of earlier feedback (clinical-rules.md 7.5), and why.
        shown["suppressed"] = record.payload.get("suppressed", [])
    print(json.dumps(shown, indent=2, ensure_ascii=False))
    return EXIT_OK


def _cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    log = build_audit_reader(settings)
    out: IO[str] = open(args.output, "w", encoding="utf-8", newline="") if args.output else sys.stdout  # noqa: SIM115
    try:
        if args.format == "fhir":

            def patient_of(call_id: str) -> str | None:
                call = log.get(call_id)
                return call.payload.get("patient_id") if call is not None else None

            for line in iter_fhir_ndjson(log.iter_records(), patient_of):
                out.write(line + "\n")
        else:
            for chunk in iter_csv(log.iter_records()):
                out.write(chunk)
    except AuditStoreError as exc:
        print(f"audit export failed: {exc}", file=sys.stderr)
        return EXIT_STORE
    finally:
        if out is not sys.stdout:
            out.close()
        log.close()
    return EXIT_OK

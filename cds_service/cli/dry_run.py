"""`mgcds dry-run`: how many cards a population would get, for whom and why, before the service is switched on.

Every patient is evaluated at ``--now`` through the patient-view pipeline that ``mgcds evaluate`` and the HTTP
service run (see :mod:`cds_service.dryrun`), from Bundle files, a Bulk FHIR NDJSON export or a FHIR server. Nothing
is audited unless ``--audit`` is given. Bad input gets one line on stderr and a non-zero exit, never a traceback;
a patient that cannot be evaluated is skipped and reported with its reason.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, TextIO

from cds_service.cli.common import SettingsSource, Subparsers
from cds_service.cli.evaluate import OperatorNamedServer, parse_now
from cds_service.config import Settings
from cds_service.errors import CommandError, MgCDSError
from cds_service.fhir.smart_cli import add_smart_arguments, smart_auth_from_args, smart_settings_from_args

PROG = "mgcds dry-run"


class DryRunError(CommandError):
    """The dry run cannot start or cannot write its reports."""


def _open_output(path: str, stack: ExitStack) -> IO[str]:
    try:
        return stack.enter_context(Path(path).open("w", encoding="utf-8", newline=""))
    except OSError as exc:
        raise DryRunError(f"cannot write {path}: {exc.strerror or exc}") from exc


def _check_output(path: str) -> None:
    """Fail before the run, not after it, when a report cannot be written."""
    folder = Path(path).resolve().parent
    if not folder.is_dir():
        raise DryRunError(f"cannot write {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise DryRunError(f"cannot write {path}: the folder {folder} is not writable")


def _server_token(args: argparse.Namespace) -> str | None:
    """The static --token, after checking the SMART flags (a token is fetched once now, so a bad one stops here)."""
    auth = smart_auth_from_args(args, args.fhir_server)
    if auth is not None:
        # Fail closed, and early: without a token no patient could be read, so the run would only list skips.
        auth.access_token()
        return None
    token: str | None = args.token
    return token


def _patient_ids_from_search(args: argparse.Namespace, settings: Settings, token: str | None) -> Iterator[str]:
    from cds_service.dryrun.sources import search_patient_ids
    from cds_service.factory import build_fhir_client

    client = build_fhir_client(settings, OperatorNamedServer())
    auth = smart_auth_from_args(args, args.fhir_server)
    try:

        def get_json(url: str) -> dict[str, Any]:
            # Each page is a call of its own: one deadline and byte allowance, the URL vetted under the server.
            call = client.for_call()
            if auth is not None:
                return auth.call(lambda t: call.get_json(url, args.fhir_server, t)[0])
            return call.get_json(url, args.fhir_server, token)[0]

        yield from search_patient_ids(get_json, args.fhir_server, args.patient_search or "", args.limit)
    finally:
        client.close()


def run(args: argparse.Namespace, get_settings: SettingsSource, out: TextIO = sys.stdout) -> int:
    """Execute `mgcds dry-run`; the summary goes to ``out``, a one-line error to stderr (exit 1) on failure."""
    try:
        return _run(args, get_settings, out)
    except MgCDSError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace, get_settings: SettingsSource, out: TextIO) -> int:
    from cds_service.dryrun import sources
    from cds_service.dryrun.aggregate import Aggregator
    from cds_service.dryrun.ndjson import NdjsonStore, ndjson_files
    from cds_service.dryrun.reports import CsvReport, html_report
    from cds_service.dryrun.runner import run_jobs
    from cds_service.dryrun.worker import WorkerConfig

    now = parse_now(args.now) or datetime.now(UTC)
    workers = args.workers if args.workers is not None else (os.cpu_count() or 1)
    if workers < 1:
        raise DryRunError("--workers must be at least 1")
    if args.limit is not None and args.limit < 1:
        raise DryRunError("--limit must be at least 1")
    for path in (args.csv, args.html):
        if path:
            _check_output(path)
    smart_given = smart_settings_from_args(args) is not None
    if (smart_given or args.token) and not args.fhir_server:
        raise DryRunError("--token and the --smart-* flags need --fhir-server")
    if args.fhir_server and not (args.patient or args.patient_search is not None):
        raise DryRunError("--fhir-server needs --patient ID... or --patient-search QUERY")
    if (args.patient or args.patient_search is not None) and not args.fhir_server:
        raise DryRunError("--patient and --patient-search need --fhir-server")
    settings = get_settings()
    if args.audit:
        _check_audit(settings)

    aggregator = Aggregator()
    input_info: dict[str, Any]
    with ExitStack() as stack:
        csv_report = CsvReport(_open_output(args.csv, stack)) if args.csv else None
        total: int | None = None
        config = WorkerConfig(settings=settings, now=now, audit=args.audit)
        if args.bundle:
            files = sources.bundle_files(Path(p) for p in args.bundle)
            jobs: Iterator[sources.Job] = sources.bundle_jobs(files)
            input_info = {"kind": "bundles", "files": len(files)}
        elif args.ndjson:
            files = ndjson_files(Path(p) for p in args.ndjson)
            work_dir = _work_dir(args.work_dir, stack)
            store = NdjsonStore(work_dir / "group-by-patient.sqlite")
            stack.callback(store.close)
            ingest_started = time.perf_counter()
            report = store.ingest(files)
            # Patients that resources name but the export has no Patient for cannot be evaluated: say so.
            total = store.patient_count() + store.orphan_count()
            input_info = {
                "kind": "ndjson",
                **report.as_dict(),
                "grouping_seconds": round(time.perf_counter() - ingest_started, 3),
            }
            config = WorkerConfig(settings=settings, now=now, audit=args.audit, store_path=str(store.path))
            jobs = _ndjson_jobs(store)
        else:
            token = _server_token(args)
            config = WorkerConfig(
                settings=settings,
                now=now,
                audit=args.audit,
                fhir_server=args.fhir_server,
                token=token,
                smart=smart_settings_from_args(args),
            )
            if args.patient:
                ids: Iterator[str] = iter(dict.fromkeys(args.patient))
                total = len(dict.fromkeys(args.patient))
            else:
                ids = _patient_ids_from_search(args, settings, token)
                total = args.limit
            jobs = sources.batched_jobs(sources.SERVER, ids, size=4)
            input_info = {"kind": "fhir-server", "fhir_server": args.fhir_server, "smart": smart_given}

        def on_result(result: Any) -> None:
            aggregator.add(result)
            if csv_report is not None:
                csv_report.add(result)

        stats = run_jobs(
            config,
            jobs,
            on_result,
            workers=workers,
            total=total,
            progress=_show_progress(args),
        )
    summary = {"now": now.isoformat(), "input": input_info, **aggregator.summary(), "run": stats.as_dict()}
    if args.html:
        try:
            Path(args.html).write_text(html_report(summary), encoding="utf-8")
        except OSError as exc:
            raise DryRunError(f"cannot write {args.html}: {exc.strerror or exc}") from exc
    if args.json:
        json.dump(summary, out, indent=2)
        out.write("\n")
    else:
        _print_summary(summary, out)
    run_info = summary["run"]
    print(
        f"{PROG}: {summary['patients']['seen']} patients in {run_info['elapsed_seconds']:.1f} s "
        f"({run_info['patients_per_second']} patients/s, {stats.workers} worker process(es)); "
        f"{summary['patients']['evaluated']} evaluated, {summary['patients']['skipped']} skipped",
        file=sys.stderr,
    )
    if summary["patients"]["evaluated"] == 0:
        print(f"{PROG}: no patient could be evaluated", file=sys.stderr)
        return 1
    return 0


def _ndjson_jobs(store: Any) -> Iterator[Any]:
    from cds_service.dryrun.sources import NDJSON, batched_jobs

    yield from batched_jobs(NDJSON, store.patient_ids())
    # The worker finds no Patient for these and reports each one as skipped with that reason.
    yield from batched_jobs(NDJSON, (patient_id for patient_id, _count in store.orphans()))


def _work_dir(requested: str | None, stack: ExitStack) -> Path:
    if requested:
        path = Path(requested)
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DryRunError(f"cannot use --work-dir {requested}: {exc.strerror or exc}") from exc
        scratch = Path(tempfile.mkdtemp(prefix="mgcds-dry-run-", dir=path))
    else:
        scratch = Path(tempfile.mkdtemp(prefix="mgcds-dry-run-"))
    stack.callback(shutil.rmtree, scratch, ignore_errors=True)
    return scratch


def _check_audit(settings: Settings) -> None:
    """--audit writes through the configured audit writer: its store must be ready now, not after the run."""
    from cds_service.factory import build_audit_writer, init_audit_schema

    if settings.dev and settings.resolved_audit_url.startswith("sqlite"):
        init_audit_schema(settings)  # as `mgcds serve --dev` does
    writer = build_audit_writer(settings, asynchronous=False)
    try:
        writer.check_ready()
    finally:
        writer.close()


def _show_progress(args: argparse.Namespace) -> bool:
    if args.progress is not None:
        return bool(args.progress)
    return sys.stderr.isatty()


def _print_summary(summary: dict[str, Any], out: TextIO) -> None:
    patients = summary["patients"]
    cards = summary["cards"]
    no_mg = summary["magnesium"]["no_result_in_window"]
    out.write(f"Rules version: {summary['rules_version']}; evaluated at {summary['now']}\n")
    files = summary["skipped"]["files"]
    out.write(f"Patients: {patients['evaluated']} evaluated, {patients['skipped']} skipped")
    out.write(f"; {files} file(s) held no readable patient\n" if files else "\n")
    out.write(
        f"Cards: {cards['total']} ({cards['per_100_patients']} per 100 patients); "
        f"patients with a card: {patients['with_cards']} ({patients['with_cards_per_100_patients']} per 100)\n"
    )
    for code, item in cards["by_recommendation"].items():
        out.write(f"  {code}: {item['cards']} ({item['per_100_patients']} per 100)\n")
    out.write("By indicator: " + ", ".join(f"{k} {v['cards']}" for k, v in cards["by_indicator"].items()) + "\n")
    out.write("MDS groups: " + ", ".join(f"{k} {v}" for k, v in summary["mds"]["groups"].items()) + "\n")
    out.write(f"No magnesium result in the window: {no_mg['patients']} ({100 * no_mg['share']:.1f} %)\n")
    for reason, count in list(summary["skipped"]["by_reason"].items())[:10]:
        out.write(f"Skipped ({count}): {reason}\n")


def register(subparsers: Subparsers, get_settings: SettingsSource) -> None:
    """Add `mgcds dry-run` to the CLI."""
    parser = subparsers.add_parser(
        "dry-run",
        help="evaluate a whole population at patient-view and report the alert burden",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--bundle", nargs="+", metavar="PATH", help="FHIR Bundle files or folders of them (transaction, collection)"
    )
    source.add_argument(
        "--ndjson", nargs="+", metavar="PATH", help="a Bulk FHIR $export folder (or its .ndjson/.ndjson.gz files)"
    )
    source.add_argument("--fhir-server", metavar="URL", help="a FHIR R4 base URL to read the patients from")
    parser.add_argument("--patient", nargs="+", action="extend", metavar="ID", help="with --fhir-server: these ids")
    parser.add_argument(
        "--patient-search",
        metavar="QUERY",
        help="with --fhir-server: the Patients a search finds (e.g. 'address-state=MA'; '' for all)",
    )
    parser.add_argument("--limit", type=int, metavar="N", help="with --patient-search: at most N patients")
    parser.add_argument("--token", help="bearer token for --fhir-server")
    parser.add_argument("--now", help="evaluate as of this ISO 8601 time (default: now)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    parser.add_argument("--csv", metavar="FILE", help="write one row per patient")
    parser.add_argument("--html", metavar="FILE", help="write a self-contained page with the charts")
    parser.add_argument("--workers", type=int, metavar="N", help="worker processes (default: one per core)")
    parser.add_argument("--work-dir", metavar="DIR", help="where the NDJSON grouping store goes (default: temp)")
    parser.add_argument(
        "--audit", action="store_true", help="write an audit record per patient through the configured audit log"
    )
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr (default: only when stderr is a terminal)",
    )
    add_smart_arguments(parser)
    parser.set_defaults(handler=lambda args, out: run(args, get_settings, out))

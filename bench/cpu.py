"""CPU per hook call, in one process, by stage: robust to a busy machine (CPU time, not wall time).

    .venv/bin/python bench/cpu.py                        # 300 patient-view calls with the realistic body
    .venv/bin/python bench/cpu.py --body A --calls 500   # the synthetic patient of scenario A
    .venv/bin/python bench/cpu.py --pyinstrument         # also print pyinstrument's call tree

The app is the real one (`create_app`, development mode, audit in a temporary SQLite file with its writer thread),
called through Flask's test client. Each stage is timed with the calling thread's CPU clock (`time.thread_time`)
by wrapping the function where the hook path looks it up (the realistic body gets a new patient id per call);
"whole call" is the process's CPU time
(`time.process_time`, so the audit writer thread's share is in it) divided by the calls. The first calls are
warm-up and not counted. Results: a table on stdout, and JSON with `--output`.
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

from bench import scenarios  # noqa: E402 - needs the project root on sys.path when run as a script

WARMUP_CALLS = 20

# (label, module, attribute): where the hook path looks each stage up. Nested stages are not double counted in
# "other": each is measured on its own and "other" is the whole call minus the top-level ones.
STAGES: tuple[tuple[str, str, str], ...] = (
    ("parse body (JSON)", "cds_service.api.cds", "read_json_body"),
    ("hook request model", "cds_service.api.cds", "parse_hook_request"),
    ("prefetch resolve", "hooks.pipeline", "resolve_prefetch"),
    ("extract facts", "hooks.pipeline", "extract_facts"),
    ("engine: assess", "hooks.pipeline", "assess"),
    ("engine: recommend", "hooks.pipeline", "recommend"),
    ("suppression read", "hooks.pipeline", "apply_suppressions"),
    ("cards", "hooks.pipeline", "build_cards"),
    ("assessment as dict", "hooks.pipeline", "assessment_to_dict"),
    ("response: model validate", "cds_service.api.cds", "CardsResponse.model_validate"),
    ("response: jsonify", "cds_service.api.cds", "jsonify"),
    ("audit record build", "cds_service.audit.recorder", "AuditRecorder._call_record"),
    ("audit write (spool)", "cds_service.audit.writer", "SpoolingAuditWriter.record_call"),
)


def _resolve(module_name: str, attribute: str) -> tuple[Any, str, Any] | None:
    import importlib

    owner: Any = importlib.import_module(module_name)
    *path, name = attribute.split(".")
    for part in path:
        owner = getattr(owner, part, None)
        if owner is None:
            return None
    original = getattr(owner, name, None)
    return (owner, name, original) if original is not None else None


@contextmanager
def timed_stages(totals: dict[str, list[float]]) -> Iterator[list[str]]:
    """Wrap every stage that exists in this version of the code; yields the labels found."""
    patched: list[tuple[Any, str, Any]] = []
    found: list[str] = []
    for label, module_name, attribute in STAGES:
        resolved = _resolve(module_name, attribute)
        if resolved is None:
            continue
        owner, name, original = resolved

        def wrapper(*args: Any, __original: Callable[..., Any] = original, __label: str = label, **kwargs: Any) -> Any:
            started = time.thread_time()
            try:
                return __original(*args, **kwargs)
            finally:
                totals[__label].append(time.thread_time() - started)

        setattr(owner, name, wrapper)
        patched.append((owner, name, original))
        found.append(label)
    try:
        yield found
    finally:
        for owner, name, original in reversed(patched):
            setattr(owner, name, original)


def body_for(name: str, now: datetime) -> tuple[str, bytes, str]:
    """The path, body and a description of the body named ``name`` (realistic, A or C)."""
    if name == "realistic":
        realistic = scenarios.realistic_patient_view_request(now)
        template = scenarios.with_patient_placeholder(realistic.body).encode()
        return "/cds-services/mg-patient-view", template, realistic.source
    if name == "A":
        return "/cds-services/mg-patient-view", json.dumps(scenarios.patient_view_request(now)).encode(), "A"
    return "/cds-services/mg-order-sign", json.dumps(scenarios.order_sign_request(now)).encode(), "C"


def measure(body_name: str, calls: int, profile: bool) -> dict[str, Any]:
    """Run ``calls`` hook calls in-process; CPU per call overall and by stage (milliseconds)."""
    from cds_service import create_app
    from cds_service.config import Settings

    now = datetime.now(UTC)
    path, template, source = body_for(body_name, now)
    # A new patient per call, as an EHR sends (the realistic body): no one patient's audit history grows meanwhile.
    patients = (f"cpu-patient-{n}".encode() for n in itertools.count())
    body = template.replace(b"__PATIENT__", b"cpu-patient")
    with tempfile.TemporaryDirectory(prefix="mgcds-cpu-") as tmp:
        app = create_app(Settings(dev=True, instance_path=Path(tmp) / "instance", log_level="INFO"))
        client = app.test_client()
        headers = {"Content-Type": "application/json"}
        for _ in range(WARMUP_CALLS):
            response = client.post(path, data=body, headers=headers)
            if response.status_code != 200:
                raise RuntimeError(f"{path}: HTTP {response.status_code} {response.get_data(as_text=True)[:500]}")
        cards = len(response.get_json()["cards"])
        totals: dict[str, list[float]] = defaultdict(list)
        per_call: list[float] = []
        profiler = None
        if profile:
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.0005)
            profiler.start()
        with timed_stages(totals) as found:
            process_started = time.process_time()
            for _ in range(calls):
                started = time.thread_time()
                client.post(path, data=template.replace(b"__PATIENT__", next(patients)), headers=headers)
                per_call.append(time.thread_time() - started)
            # The writer thread drains in batches after a short wait: let it finish what these calls spooled.
            time.sleep(0.3)
            process_cpu = time.process_time() - process_started
        if profiler is not None:
            profiler.stop()
            print(profiler.output_text(unicode=True, color=False, show_all=False))
        app.extensions["mgcds.runtime"].close()
    stages = {label: round(sum(totals[label]) / calls * 1000, 3) for label in found}
    top_level = sum(v for k, v in stages.items() if k not in {"audit write (spool)"})
    thread_ms = sum(per_call) / calls * 1000
    return {
        "body": body_name,
        "body_source": source,
        "body_bytes": len(body),
        "cards": cards,
        "calls": calls,
        "cpu_ms_per_call_process": round(process_cpu / calls * 1000, 3),
        "cpu_ms_per_call_request_thread": round(thread_ms, 3),
        "cpu_ms_request_thread_p50": round(statistics.median(per_call) * 1000, 3),
        "stages_ms": stages,
        "other_ms": round(thread_ms - top_level, 3),
    }


def main(argv: list[str] | None = None) -> int:
    """Measure and print; exit 0."""
    parser = argparse.ArgumentParser(prog="bench/cpu.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--body", choices=("realistic", "A", "C"), default="realistic")
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=1, help="measure this many times, report each")
    parser.add_argument("--pyinstrument", action="store_true", help="print pyinstrument's tree (dev extras)")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    runs = [measure(args.body, args.calls, args.pyinstrument and i == 0) for i in range(args.repeat)]
    for run in runs:
        print(
            f"{run['body']} ({run['body_source']}, {run['body_bytes']} bytes, {run['cards']} cards): "
            f"{run['cpu_ms_per_call_process']:.3f} ms CPU per call (process), "
            f"{run['cpu_ms_per_call_request_thread']:.3f} ms in the request thread "
            f"(p50 {run['cpu_ms_request_thread_p50']:.3f})"
        )
        for label, value in run["stages_ms"].items():
            print(f"  {label:<24} {value:8.3f} ms")
        print(f"  {'other (Flask, logging)':<24} {run['other_ms']:8.3f} ms")
    if args.output:
        summary = {"date": datetime.now(UTC).isoformat(), "python": platform.python_version(), "runs": runs}
        args.output.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

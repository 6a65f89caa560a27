"""The MgCDS benchmark: start `mgcds serve` (gunicorn) on loopback, drive it with wrk (or locust), print a table.

    .venv/bin/python bench/run.py                       # every scenario, 20 s each, 32 clients
    .venv/bin/python bench/run.py --duration 5 --scenarios A,D --clients 4 --driver locust

Scenarios (docs/performance.md):
  A       patient-view, full prefetch of a realistic patient (60 Observations, 10 medications, 5 Conditions)
  B-cold  patient-view without prefetch: the service reads the real test FHIR server (tests/integration) through a
          proxy adding 50 ms per request; a new access token per call, so the token-keyed cache never helps
  B-warm  the same with one token: after the first call per worker the service's FHIR cache answers
  B-replay  as B-cold, but the proxy replays the server's recorded answers (still 50 ms each): the test server's
          own search time (about 150 ms for the Observation search, one Node thread) is taken out, what is left
          is the service's own cost with five concurrent 50 ms queries
  C       order-sign, three draft orders, full prefetch
  D       the floor: POST /bench/floor (mounted by MGCDS_BENCH_FLOOR=1) parses the same body, answers a fixed card

The service runs in development mode (no caller authentication) with its audit log in a temporary SQLite file
(or --audit-url, e.g. postgresql://postgres@127.0.0.1:5432/test). After the run the audit log is replayed,
verified (`mgcds audit verify`) and its records counted against the calls answered. Results go to
bench/results/<UTC time>.json with the machine's core count, load, Python version and the settings used.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

PROJECT_ROOT = Path(__file__).resolve().parents[1]
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

from bench import scenarios  # noqa: E402 - needs the project root on sys.path when run as a script

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
ALL_SCENARIOS = ("D", "A", "C", "B-cold", "B-warm", "B-replay")
FHIR_DELAY_SECONDS = 0.050
WARMUP_CALLS = 5
# Replaced in each body by the driver: one fixed token (warm cache) or a new one per call (cold cache).
TOKEN_PLACEHOLDER = "__TOKEN__"  # noqa: S105 - a placeholder, not a secret
START_TIMEOUT_SECONDS = 60.0


@dataclass
class ScenarioResult:
    """One scenario's figures (latencies in milliseconds)."""

    name: str
    path: str
    requests: int
    duration_s: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    error_detail: dict[str, int] = field(default_factory=dict)
    warmup_calls: int = 0
    audited: bool = True


@dataclass
class Scenario:
    """What to send: the path, the body file, whether each call gets a fresh access token."""

    name: str
    path: str
    body_file: Path
    fresh_token: bool = False
    audited: bool = True
    replay_fhir: bool = False


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --- the load generator ------------------------------------------------------------------------------------


def ensure_wrk() -> str | None:
    """The wrk executable; installs Debian's package when missing and we are root; None if unavailable."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return None
    print("bench: installing wrk (apt-get install -y wrk)", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    installed = subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], env=env, capture_output=True, check=False)
    if installed.returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, check=False)
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], env=env, capture_output=True, check=False)
    return shutil.which("wrk")


def run_wrk(wrk: str, base_url: str, scenario: Scenario, clients: int, duration: int, threads: int) -> ScenarioResult:
    """Drive one scenario with wrk; its Lua script writes the summary as JSON."""
    with tempfile.TemporaryDirectory(prefix="mgcds-wrk-") as tmp:
        result_file = Path(tmp) / "result.json"
        env = {
            **os.environ,
            "BENCH_BODY_FILE": str(scenario.body_file),
            "BENCH_FRESH_TOKEN": "1" if scenario.fresh_token else "0",
            "BENCH_RESULT_FILE": str(result_file),
        }
        command = [
            wrk,
            f"-t{max(1, min(threads, clients))}",
            f"-c{clients}",
            f"-d{duration}s",
            "--timeout",
            "10s",
            "-s",
            str(BENCH_DIR / "wrk_post.lua"),
            base_url + scenario.path,
        ]
        completed = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if completed.returncode != 0 or not result_file.exists():
            raise RuntimeError(f"wrk failed ({completed.returncode}): {completed.stderr[-2000:]}")
        raw = json.loads(result_file.read_text(encoding="utf-8"))
    seconds = raw["duration_us"] / 1e6
    detail = {k.removeprefix("errors_"): int(v) for k, v in raw.items() if k.startswith("errors_") and v}
    return ScenarioResult(
        name=scenario.name,
        path=scenario.path,
        requests=int(raw["requests"]),
        duration_s=round(seconds, 3),
        rps=round(raw["requests"] / seconds, 1),
        p50_ms=raw["p50_us"] / 1000,
        p90_ms=raw["p90_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        max_ms=raw["max_us"] / 1000,
        errors=sum(detail.values()),
        error_detail=detail,
        audited=scenario.audited,
    )


def run_locust(base_url: str, scenario: Scenario, clients: int, duration: int) -> ScenarioResult:
    """Drive one scenario with locust headless (one process); read its CSV summary."""
    with tempfile.TemporaryDirectory(prefix="mgcds-locust-") as tmp:
        prefix = Path(tmp) / "stats"
        env = {
            **os.environ,
            "BENCH_PATH": scenario.path,
            "BENCH_BODY_FILE": str(scenario.body_file),
            "BENCH_FRESH_TOKEN": "1" if scenario.fresh_token else "0",
        }
        locust = Path(sys.executable).with_name("locust")
        command = [
            str(locust) if locust.exists() else "locust",
            "-f",
            str(BENCH_DIR / "locustfile.py"),
            "--headless",
            "--users",
            str(clients),
            "--spawn-rate",
            str(clients),
            "--run-time",
            f"{duration}s",
            "--host",
            base_url,
            "--csv",
            str(prefix),
            "--only-summary",
            "--loglevel",
            "WARNING",
        ]
        started = time.monotonic()
        completed = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        elapsed = time.monotonic() - started
        stats_file = Path(f"{prefix}_stats.csv")
        if not stats_file.exists():
            raise RuntimeError(f"locust failed ({completed.returncode}): {completed.stderr[-2000:]}")
        import csv

        with stats_file.open(encoding="utf-8") as handle:
            rows = [row for row in csv.DictReader(handle) if row["Name"] == "Aggregated"]
    row = rows[0]
    count = int(row["Request Count"])
    failures = int(row["Failure Count"])
    return ScenarioResult(
        name=scenario.name,
        path=scenario.path,
        requests=count,
        duration_s=round(min(elapsed, float(duration)), 3),
        rps=round(float(row["Requests/s"]), 1),
        p50_ms=float(row["50%"]),
        p90_ms=float(row["90%"]),
        p99_ms=float(row["99%"]),
        max_ms=float(row["Max Response Time"]),
        errors=failures,
        error_detail={"failures": failures} if failures else {},
        audited=scenario.audited,
    )


# --- the service and the FHIR server -----------------------------------------------------------------------


def service_env(instance: Path, args: argparse.Namespace) -> dict[str, str]:
    """The environment of `mgcds serve` and of the audit commands run afterwards."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MGCDS_")}
    env.update(
        {
            "MGCDS_INSTANCE_PATH": str(instance),
            "MGCDS_BENCH_FLOOR": "1",
            "MGCDS_LOG_LEVEL": args.log_level,
            "MGCDS_FHIR_MAX_CONCURRENCY": str(args.fhir_max_concurrency),
            "PYTHONPATH": str(PROJECT_ROOT),
        }
    )
    if args.audit_url:
        env["MGCDS_AUDIT_URL"] = args.audit_url
    if args.worker_connections is not None:
        env["MGCDS_WORKER_CONNECTIONS"] = str(args.worker_connections)
    return env


@contextmanager
def running_service(env: dict[str, str], port: int, args: argparse.Namespace, log_file: Path) -> Iterator[str]:
    """`mgcds serve --dev` under gunicorn on 127.0.0.1:port until the block ends (then SIGTERM, graceful)."""
    command = [
        sys.executable,
        "-m",
        "cds_service.cli",
        "serve",
        "--dev",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(args.workers),
        "--threads",
        str(args.threads),
    ]
    with log_file.open("w", encoding="utf-8") as log:
        process = subprocess.Popen(command, env=env, cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT)
        base_url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + START_TIMEOUT_SECONDS
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"mgcds serve exited ({process.returncode}); see {log_file}")
                try:
                    if requests.get(base_url + "/healthz", timeout=1).status_code == 200:
                        break
                except requests.RequestException:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"mgcds serve did not answer within {START_TIMEOUT_SECONDS:.0f} s")
                time.sleep(0.2)
            yield base_url
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)


@dataclass
class DelayedFhir:
    """The proxy in front of the test FHIR server, and the benchmark patient's id there."""

    proxy: Any
    patient_id: str
    observation_search_ms: float


@contextmanager
def delayed_fhir_server(now: datetime) -> Iterator[DelayedFhir]:
    """The integration tests' FHIR server with the patient loaded, behind a proxy adding 50 ms per request.

    The proxy stands for an EHR's gateway: it accepts whatever token the service sends and forwards with the
    server's own, so that scenario B-cold can use a new token per call. With ``replay`` set it answers a request
    it has seen from its recording of the server's answer (same 50 ms delay): scenario B-replay.
    """
    from tests.integration.conftest import start_fhir_server
    from tests.integration.fault_proxy import Fault, FaultProxy

    class GatewayProxy(FaultProxy):
        """FaultProxy that replaces the caller's bearer token with the upstream's, and can replay answers."""

        def __init__(self, upstream: str, token: str) -> None:
            super().__init__(upstream=upstream)
            self._upstream_token = token
            self._recorded: dict[tuple[str, str], tuple[int, str, bytes]] = {}
            self.replay = False

        def _handler_class(self) -> Any:
            base = super()._handler_class()

            class NoDelayHandler(base):  # type: ignore[misc, valid-type]
                # The handler writes headers and body separately: without TCP_NODELAY, Nagle's algorithm and
                # the client's delayed ACK add about 40 ms to every answer, which is not the latency we model.
                disable_nagle_algorithm = True

            return NoDelayHandler

        def _forward(self, handler: Any, method: str, body: bytes) -> tuple[int, str, bytes]:
            key = (method, str(handler.path))
            if self.replay and key in self._recorded:
                return self._recorded[key]
            del handler.headers["Authorization"]
            handler.headers["Authorization"] = f"Bearer {self._upstream_token}"
            answer = super()._forward(handler, method, body)
            if answer[0] == 200:
                self._recorded[key] = answer
            return answer

    server = start_fhir_server()
    try:
        patient_id = server.patient_id(server.load_bundle(scenarios.transaction_bundle(now)))
        search_ms = observation_search_time(server, patient_id)
        with GatewayProxy(server.base_url, server.token) as proxy:
            # socketserver listens with a backlog of 5: bursts of new connections from the service would overflow
            # it and wait a second for the SYN to be retried. Listening again on Linux just raises the backlog.
            proxy._server.socket.listen(1024)
            proxy.add_rule(r".", Fault.DELAY, delay_seconds=FHIR_DELAY_SECONDS)
            yield DelayedFhir(proxy, patient_id, search_ms)
    finally:
        server.stop()


def observation_search_time(server: Any, patient_id: str) -> float:
    """The test server's own time for the service's Observation search (best of five, no proxy, no load)."""
    from cds_service.vocabulary import PrefetchKey
    from hooks.base import prefetch_templates
    from terminology import default_terminology

    template = prefetch_templates(default_terminology().observation_search_codes())[PrefetchKey.OBSERVATIONS]
    query = template.replace("{{context.patientId}}", patient_id)
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        server.get(query)
        best = min(best, time.perf_counter() - started)
    return round(best * 1000, 1)


# --- audit check -------------------------------------------------------------------------------------------


def audit_check(env: dict[str, str]) -> dict[str, Any]:
    """Replay what waits in the spool, verify the chain with `mgcds audit verify`, count the stored records."""
    mgcds = [sys.executable, "-m", "cds_service.cli", "audit"]
    replay = subprocess.run([*mgcds, "replay"], env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, check=False)
    verify = subprocess.run([*mgcds, "verify"], env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, check=False)
    count_code = (
        "from cds_service.config import load_settings\n"
        "from cds_service.factory import build_audit_reader\n"
        "reader = build_audit_reader(load_settings())\n"
        "print(reader.count())\n"
        "reader.close()\n"
    )
    counted = subprocess.run(
        [sys.executable, "-c", count_code], env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, check=False
    )
    return {
        "replay": (replay.stdout + replay.stderr).strip(),
        "verify_ok": verify.returncode == 0,
        "verify": (verify.stdout + verify.stderr).strip()[-500:],
        "records": int(counted.stdout.strip()) if counted.returncode == 0 else None,
        "count_error": counted.stderr[-500:] if counted.returncode != 0 else None,
    }


# --- the run -----------------------------------------------------------------------------------------------


def write_bodies(folder: Path, now: datetime, fhir: DelayedFhir | None) -> dict[str, Scenario]:
    """Write each scenario's request body to a file; returns the scenarios by name."""

    def dump(name: str, body: dict[str, Any]) -> Path:
        path = folder / f"{name}.json"
        path.write_text(json.dumps(body), encoding="utf-8")
        return path

    patient_view = dump("A", scenarios.patient_view_request(now))
    chosen = {
        "A": Scenario("A", "/cds-services/mg-patient-view", patient_view),
        "C": Scenario("C", "/cds-services/mg-order-sign", dump("C", scenarios.order_sign_request(now))),
        "D": Scenario("D", "/bench/floor", patient_view, audited=False),
    }
    if fhir is not None:
        body = scenarios.patient_view_request(
            now,
            with_prefetch=False,
            patient_id=fhir.patient_id,
            fhir_server=fhir.proxy.base_url,
            access_token=TOKEN_PLACEHOLDER,
        )
        template = dump("B", body)
        path = "/cds-services/mg-patient-view"
        chosen["B-cold"] = Scenario("B-cold", path, template, fresh_token=True)
        chosen["B-warm"] = Scenario("B-warm", path, template)
        chosen["B-replay"] = Scenario("B-replay", path, template, fresh_token=True, replay_fhir=True)
    return chosen


def warm_up(base_url: str, scenario: Scenario) -> int:
    """A few sequential calls: each must answer 200 with a cards list (else the run stops here)."""
    body = scenario.body_file.read_bytes().replace(b"__TOKEN__", b"bench-warm-token")
    for _ in range(WARMUP_CALLS):
        response = requests.post(
            base_url + scenario.path, data=body, headers={"Content-Type": "application/json"}, timeout=30
        )
        if response.status_code != 200 or not isinstance(response.json().get("cards"), list):
            raise RuntimeError(f"scenario {scenario.name}: HTTP {response.status_code} {response.text[:500]}")
    return WARMUP_CALLS


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages (other work on the machine shows here)."""
    return [round(x, 2) for x in os.getloadavg()]


def ratio(numerator: ScenarioResult | None, denominator: ScenarioResult | None) -> float | None:
    """Throughput ratio of two scenarios, when both ran."""
    if numerator is None or denominator is None or denominator.rps == 0:
        return None
    return round(numerator.rps / denominator.rps, 3)


def format_table(results: list[ScenarioResult]) -> str:
    """The results as a fixed-width table."""
    columns = ("req/s", "p50 ms", "p90 ms", "p99 ms", "max ms")
    header = f"{'scenario':<8} " + " ".join(f"{c:>8}" for c in columns) + f" {'errors':>7} {'calls':>7}"
    lines = [header, "-" * len(header)]
    for r in results:
        lines.append(
            f"{r.name:<8} {r.rps:>8.1f} {r.p50_ms:>8.1f} {r.p90_ms:>8.1f} {r.p99_ms:>8.1f} {r.max_ms:>8.1f} "
            f"{r.errors:>7d} {r.requests:>7d}"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=20, help="seconds per scenario (default 20)")
    parser.add_argument("--clients", type=int, default=32, help="concurrent connections (default 32)")
    parser.add_argument("--scenarios", default=",".join(ALL_SCENARIOS), help="comma-separated, e.g. A,D")
    parser.add_argument("--driver", choices=("auto", "wrk", "locust"), default="auto", help="load generator")
    parser.add_argument("--wrk-threads", type=int, default=1, help="wrk threads (default 1: leave cores to us)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (MGCDS_WORKERS)")
    parser.add_argument("--threads", type=int, default=4, help="gunicorn threads per worker (MGCDS_THREADS)")
    parser.add_argument(
        "--worker-connections", type=int, default=None, help="MGCDS_WORKER_CONNECTIONS (default: the service's)"
    )
    parser.add_argument("--fhir-max-concurrency", type=int, default=32, help="MGCDS_FHIR_MAX_CONCURRENCY")
    parser.add_argument("--log-level", default="INFO", help="MGCDS_LOG_LEVEL of the service (default INFO)")
    parser.add_argument("--audit-url", default="", help="audit store URL (default: a temporary SQLite file)")
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="audit in a fresh schema of the PostgreSQL on 127.0.0.1:5432 (database test, dropped afterwards)",
    )
    parser.add_argument("--output", type=Path, default=None, help="results JSON (default bench/results/<time>.json)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit 1 when any scenario had errors or the audit log misses calls."""
    args = parse_args(argv)
    wanted = [name.strip() for name in args.scenarios.split(",") if name.strip()]
    unknown = sorted(set(wanted) - set(ALL_SCENARIOS))
    if unknown:
        print(f"bench: unknown scenarios {unknown}; choose from {', '.join(ALL_SCENARIOS)}", file=sys.stderr)
        return 2
    wrk = ensure_wrk() if args.driver in {"auto", "wrk"} else None
    if args.driver == "wrk" and wrk is None:
        print("bench: wrk is not installed and could not be installed", file=sys.stderr)
        return 2
    driver = "wrk" if wrk else "locust"
    now = datetime.now(UTC)
    started_at = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    load_before = load_average()
    results: list[ScenarioResult] = []
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mgcds-bench-")))
        instance = tmp / "instance"
        if args.postgres:
            from tests.unit.audit.helpers import postgres_schema

            args.audit_url = stack.enter_context(postgres_schema())
        fhir = stack.enter_context(delayed_fhir_server(now)) if any(n.startswith("B") for n in wanted) else None
        chosen = write_bodies(tmp, now, fhir)
        env = service_env(instance, args)
        if args.audit_url:
            # Outside SQLite development mode the schema is created explicitly, as in production.
            subprocess.run(
                [sys.executable, "-m", "cds_service.cli", "audit", "init"], env=env, cwd=PROJECT_ROOT, check=True
            )
        log_file = tmp / "service.log"
        port = free_port()
        try:
            with running_service(env, port, args, log_file) as base_url:
                for name in [n for n in ALL_SCENARIOS if n in wanted]:
                    scenario = chosen[name]
                    if fhir is not None:
                        fhir.proxy.replay = scenario.replay_fhir
                    warmups = warm_up(base_url, scenario)
                    print(
                        f"bench: {name} ({scenario.path}) {args.clients} clients, {args.duration} s ...",
                        file=sys.stderr,
                    )
                    if wrk:
                        result = run_wrk(wrk, base_url, scenario, args.clients, args.duration, args.wrk_threads)
                    else:
                        result = run_locust(base_url, scenario, args.clients, args.duration)
                    result.warmup_calls = warmups
                    results.append(result)
        except Exception:
            print(log_file.read_text(encoding="utf-8")[-3000:], file=sys.stderr)
            raise
        audit = audit_check(env)
        fhir_search_ms = fhir.observation_search_ms if fhir is not None else None
    load_after = load_average()
    by_name = {r.name: r for r in results}
    # Every call that got an answer must be in the audit log; calls still in flight when the driver stopped
    # were answered too (gunicorn finishes them on SIGTERM), so the store may hold a few more.
    expected_audited = sum(r.requests + r.warmup_calls for r in results if r.audited)
    audit["calls_answered_by_audited_scenarios"] = expected_audited
    audit["all_calls_recorded"] = audit["records"] is not None and audit["records"] >= expected_audited
    summary = {
        "date": started_at,
        "machine": {
            "cores": os.cpu_count(),
            "load_average_before": load_before,
            "load_average_after": load_after,
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "settings": {
            "driver": driver,
            "wrk_threads": args.wrk_threads if wrk else None,
            "clients": args.clients,
            "duration_s": args.duration,
            "workers": args.workers,
            "threads": args.threads,
            "worker_connections": args.worker_connections or "default (1000)",
            "worker_class": "gthread",
            "fhir_max_concurrency": args.fhir_max_concurrency,
            "fhir_delay_ms": FHIR_DELAY_SECONDS * 1000,
            "fhir_server_observation_search_ms": fhir_search_ms,
            "log_level": args.log_level,
            "audit_store": "postgresql" if args.audit_url.startswith("postgres") else "sqlite (temporary file)",
            "dev_mode": True,
        },
        "scenarios": [asdict(r) for r in results],
        "ratios": {
            "A/D": ratio(by_name.get("A"), by_name.get("D")),
            "C/D": ratio(by_name.get("C"), by_name.get("D")),
            "B-warm p50 / A p50": round(by_name["B-warm"].p50_ms / by_name["A"].p50_ms, 3)
            if "B-warm" in by_name and "A" in by_name and by_name["A"].p50_ms
            else None,
            "B-warm p90 / A p90": round(by_name["B-warm"].p90_ms / by_name["A"].p90_ms, 3)
            if "B-warm" in by_name and "A" in by_name and by_name["A"].p90_ms
            else None,
        },
        "audit": audit,
    }
    output = args.output or RESULTS_DIR / f"{started_at.replace(':', '')}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(format_table(results))
    print()
    print(f"ratios: {json.dumps(summary['ratios'])}")
    print(
        f"audit: {audit['records']} records, {expected_audited} calls answered; chain "
        f"{'verified' if audit['verify_ok'] else 'BROKEN: ' + audit['verify']}"
    )
    print(f"machine: {os.cpu_count()} cores, load {load_before} -> {load_after}; driver {driver}; results {output}")
    failed = any(r.errors for r in results) or not audit["verify_ok"] or not audit["all_calls_recorded"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

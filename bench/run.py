"""The MgCDS benchmark: start `mgcds serve` (gunicorn) on loopback, drive it with wrk (or locust), print a table.

    .venv/bin/python bench/run.py                       # every scenario, 20 s each: S and F at 1/8/16/64, others at 16
    .venv/bin/python bench/run.py --duration 5 --scenarios S,F --sweep 1,16 --driver locust

Scenarios (docs/performance.md):
  S       patient-view with a real Synthea patient as prefetch (about 45 KB: 26 laboratory Observations, 9
          MedicationRequests, 5 Conditions; dates shifted to be recent), run at each connection count of --sweep
  F       the floor for S: a bare Flask app (bench/floor_app.py) under the same gunicorn configuration, parsing the
          same body and answering a fixed card; its own server, also at each connection count of --sweep
  A       patient-view, full prefetch of a realistic patient (60 Observations, 10 medications, 5 Conditions)
  B-cold  patient-view without prefetch: the service reads the real test FHIR server (tests/integration) through a
          proxy adding 50 ms per request; a new access token per call, so the token-keyed cache never helps
  B-warm  the same with one token: after the first call per worker the service's FHIR cache answers
  B-replay  as B-cold, but the proxy replays the server's recorded answers (still 50 ms each): the test server's
          own search time (about 150 ms for the Observation search, one Node thread) is taken out, what is left
          is the service's own cost with five concurrent 50 ms queries
  C       order-sign, three draft orders, full prefetch
  D       the floor: POST /bench/floor (mounted by MGCDS_BENCH_FLOOR=1) parses the same body, answers a fixed card

Each scenario also reports the CPU time its workers spent per call, from the kernel's accounting of every worker
process (utime + stime in /proc/<pid>/stat, before and after), and how that CPU was shared between the workers.
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
ALL_SCENARIOS = ("F", "S", "D", "A", "C", "B-cold", "B-warm", "B-replay")
SWEPT_SCENARIOS = ("F", "S")  # run at every connection count of --sweep
DEFAULT_SWEEP = "1,8,16,64"
FHIR_DELAY_SECONDS = 0.050
WARMUP_CALLS = 5
# Replaced in each body by the driver: one fixed token (warm cache) or a new one per call (cold cache).
TOKEN_PLACEHOLDER = "__TOKEN__"  # noqa: S105 - a placeholder, not a secret
START_TIMEOUT_SECONDS = 60.0
# Above this share of the cores used by other processes during a run, the figures are flagged as taken on a busy
# machine (the load average cannot tell: the benchmark itself keeps both cores busy).
BUSY_OTHER_CPU_SHARE = 0.1


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
    clients: int = 0
    # CPU time of the server's worker processes during the run, per call answered, and each worker's share of it.
    cpu_ms_per_call: float | None = None
    worker_cpu_shares: list[float] = field(default_factory=list)
    master_cpu_ms: float | None = None
    # Share of all cores that other processes used during the run (0 on a quiet machine, 1 = every core busy).
    other_cpu_share: float | None = None

    @property
    def label(self) -> str:
        """The scenario and its connection count, e.g. S@16."""
        return f"{self.name}@{self.clients}"


@dataclass
class Scenario:
    """What to send: the path, the body file, whether each call gets a fresh access token."""

    name: str
    path: str
    body_file: Path
    fresh_token: bool = False
    fresh_patient: bool = False  # a new patient id per call (__PATIENT__ in the body)
    audited: bool = True
    replay_fhir: bool = False
    floor_server: bool = False  # served by bench/floor_app.py, not by the service


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
            "BENCH_FRESH_PATIENT": "1" if scenario.fresh_patient else "0",
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
            "BENCH_FRESH_PATIENT": "1" if scenario.fresh_patient else "0",
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


# --- CPU accounting of the server's processes ---------------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def child_pids(pid: int) -> list[int]:
    """The direct children of ``pid`` (gunicorn's workers when ``pid`` is its master), from /proc."""
    children: list[int] = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text(encoding="ascii").rsplit(")", 1)[1].split()
        except (OSError, IndexError, UnicodeDecodeError):
            continue  # the process ended meanwhile
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return sorted(children)


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process (every thread), from /proc/<pid>/stat; None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # After the command name: state is field 3, utime and stime are fields 14 and 15 (proc(5)).
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine_busy_seconds() -> float:
    """CPU seconds every core has spent busy since boot (/proc/stat: user, nice, system, irq, softirq).

    Not idle or iowait; not steal (the hypervisor's) nor guest (already in user time, proc(5)).
    """
    fields = [int(v) for v in Path("/proc/stat").read_text(encoding="ascii").split("\n", 1)[0].split()[1:]]
    user, nice, system = fields[0], fields[1], fields[2]
    irq, softirq = (fields[5], fields[6]) if len(fields) > 6 else (0, 0)
    return (user + nice + system + irq + softirq) / CLOCK_TICKS


def children_cpu_seconds() -> float:
    """CPU seconds of this process's finished children (the load generator after each run)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass
class CpuSample:
    """CPU seconds of the master and of each worker at one moment."""

    master: float
    workers: dict[int, float]


def sample_cpu(master_pid: int) -> CpuSample:
    """The master's and every worker's CPU time now."""
    workers = {pid: cpu_seconds(pid) for pid in child_pids(master_pid)}
    return CpuSample(cpu_seconds(master_pid) or 0.0, {pid: v for pid, v in workers.items() if v is not None})


def attach_cpu(result: ScenarioResult, before: CpuSample, after: CpuSample) -> None:
    """Fill in the run's worker CPU per call and each worker's share (a worker restarted meanwhile counts from 0)."""
    spent = {pid: after.workers[pid] - before.workers.get(pid, 0.0) for pid in after.workers}
    total = sum(spent.values())
    if result.requests and total > 0:
        result.cpu_ms_per_call = round(total / result.requests * 1000, 3)
        result.worker_cpu_shares = sorted((round(v / total, 3) for v in spent.values()), reverse=True)
    result.master_cpu_ms = round((after.master - before.master) * 1000, 1)


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
    if args.reuse_port != "default":
        env["MGCDS_REUSE_PORT"] = "1" if args.reuse_port == "on" else "0"
    return env


@dataclass
class RunningServer:
    """A server started by the benchmark: where it answers and its gunicorn master's pid."""

    base_url: str
    pid: int


def server_flags(args: argparse.Namespace, port: int) -> list[str]:
    """The flags both servers take: address and worker processes and threads."""
    return ["--host", "127.0.0.1", "--port", str(port), "--workers", str(args.workers), "--threads", str(args.threads)]


def service_command(args: argparse.Namespace, port: int) -> list[str]:
    """`mgcds serve --dev` on 127.0.0.1:port."""
    return [sys.executable, "-m", "cds_service.cli", "serve", "--dev", *server_flags(args, port)]


def floor_command(args: argparse.Namespace, port: int) -> list[str]:
    """The bare Flask floor app (bench/floor_app.py) under the same gunicorn configuration."""
    return [sys.executable, "-m", "bench.floor_app", *server_flags(args, port)]


@contextmanager
def running_server(command: list[str], env: dict[str, str], port: int, log_file: Path) -> Iterator[RunningServer]:
    """A gunicorn server on 127.0.0.1:port until the block ends (then SIGTERM: it finishes the calls in flight)."""
    with log_file.open("w", encoding="utf-8") as log:
        process = subprocess.Popen(command, env=env, cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT)
        base_url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + START_TIMEOUT_SECONDS
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"{command[2]} exited ({process.returncode}); see {log_file}")
                try:
                    if requests.get(base_url + "/healthz", timeout=1).status_code == 200:
                        break
                except requests.RequestException:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{command[2]} did not answer within {START_TIMEOUT_SECONDS:.0f} s")
                time.sleep(0.2)
            # Every worker answers /healthz once it is up; wait until all are there (their CPU is measured).
            while len(child_pids(process.pid)) < int(command[command.index("--workers") + 1]):
                if time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            yield RunningServer(base_url, process.pid)
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
    realistic = folder / "S.json"
    realistic.write_text(
        scenarios.with_patient_placeholder(scenarios.realistic_patient_view_request(now).body), encoding="utf-8"
    )
    path = "/cds-services/mg-patient-view"
    chosen = {
        "S": Scenario("S", path, realistic, fresh_patient=True),
        "F": Scenario("F", path, realistic, fresh_patient=True, audited=False, floor_server=True),
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
    body = body.replace(b"__PATIENT__", b"bench-patient")
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
    header = (
        f"{'scenario':<11} "
        + " ".join(f"{c:>8}" for c in columns)
        + f" {'errors':>7} {'calls':>7} {'CPU ms':>7} {'others':>6}  worker CPU split"
    )
    lines = [header, "-" * len(header)]
    for r in results:
        cpu = f"{r.cpu_ms_per_call:>7.2f}" if r.cpu_ms_per_call is not None else f"{'-':>7}"
        split = "/".join(f"{share * 100:.0f}" for share in r.worker_cpu_shares)
        others = f"{r.other_cpu_share:>6.0%}" if r.other_cpu_share is not None else f"{'-':>6}"
        lines.append(
            f"{r.label:<11} {r.rps:>8.1f} {r.p50_ms:>8.1f} {r.p90_ms:>8.1f} {r.p99_ms:>8.1f} {r.max_ms:>8.1f} "
            f"{r.errors:>7d} {r.requests:>7d} {cpu} {others}  {split}"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=20, help="seconds per scenario (default 20)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent connections of D, A, C and B (default 16)")
    parser.add_argument(
        "--sweep", default=DEFAULT_SWEEP, help=f"connection counts of S and F (default {DEFAULT_SWEEP})"
    )
    parser.add_argument("--scenarios", default=",".join(ALL_SCENARIOS), help="comma-separated, e.g. A,D")
    parser.add_argument("--driver", choices=("auto", "wrk", "locust"), default="auto", help="load generator")
    parser.add_argument("--wrk-threads", type=int, default=1, help="wrk threads (default 1: leave cores to us)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (MGCDS_WORKERS)")
    parser.add_argument("--threads", type=int, default=4, help="gunicorn threads per worker (MGCDS_THREADS)")
    parser.add_argument(
        "--worker-connections", type=int, default=None, help="MGCDS_WORKER_CONNECTIONS (default: the service's)"
    )
    parser.add_argument(
        "--reuse-port",
        choices=("default", "on", "off"),
        default="default",
        help="MGCDS_REUSE_PORT: one listening socket per worker (default: the service's)",
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


def run_scenario(
    wrk: str | None, server: RunningServer, scenario: Scenario, clients: int, args: argparse.Namespace
) -> ScenarioResult:
    """Warm up, then drive one scenario at ``clients`` connections, with the workers' CPU time around the run."""
    warmups = warm_up(server.base_url, scenario)
    print(f"bench: {scenario.name} ({scenario.path}) {clients} clients, {args.duration} s ...", file=sys.stderr)
    before = sample_cpu(server.pid)
    machine_before, children_before, own_before = machine_busy_seconds(), children_cpu_seconds(), time.process_time()
    started = time.monotonic()
    if wrk:
        result = run_wrk(wrk, server.base_url, scenario, clients, args.duration, args.wrk_threads)
    else:
        result = run_locust(server.base_url, scenario, clients, args.duration)
    after = sample_cpu(server.pid)
    attach_cpu(result, before, after)
    # What else ran on the machine meanwhile: all busy CPU minus the server's, the load generator's (a child of this
    # process) and this process's own (the B scenarios' proxy), as a share of every core for the run's duration.
    # Near 0 on a quiet machine; the B scenarios' Node FHIR server counts as "other".
    elapsed = time.monotonic() - started
    server_spent = (after.master - before.master) + sum(
        after.workers[pid] - before.workers.get(pid, 0.0) for pid in after.workers
    )
    ours = (children_cpu_seconds() - children_before) + (time.process_time() - own_before) + server_spent
    others = (machine_busy_seconds() - machine_before) - ours
    result.other_cpu_share = round(max(0.0, others) / ((os.cpu_count() or 1) * elapsed), 3) if elapsed > 0 else None
    result.warmup_calls = warmups
    result.clients = clients
    return result


@dataclass(frozen=True)
class Target:
    """One of issue 17's targets, with the figure the run measured."""

    what: str
    figure: str
    met: bool | None  # None: not measured in this run


def evaluate_targets(results: list[ScenarioResult], audit: dict[str, Any]) -> list[Target]:
    """The targets of issue 17 against this run's figures (docs/performance.md, round 2)."""
    by_label = {r.label: r for r in results}
    sweep = {r.clients: r for r in results if r.name == "S"}

    def ratio_target(what: str, numerator: str, denominator: str, threshold: float) -> Target:
        value = ratio(by_label.get(numerator), by_label.get(denominator))
        if value is None:
            return Target(what, "not run", None)
        return Target(what, f"{value:.3f}", value >= threshold)

    targets = [
        ratio_target("throughput S@16 / floor F@16 >= 0.25 (stretch 0.5)", "S@16", "F@16", 0.25),
        ratio_target("throughput S@16 / S@8 >= 0.85", "S@16", "S@8", 0.85),
        ratio_target("throughput S@64 / S@8 >= 0.85", "S@64", "S@8", 0.85),
    ]
    s16, s1 = by_label.get("S@16"), by_label.get("S@1")
    targets.append(
        Target("p99 at 16 connections < 25 ms", f"{s16.p99_ms:.1f} ms", s16.p99_ms < 25)
        if s16
        else Target("p99 at 16 connections < 25 ms", "not run", None)
    )
    targets.append(
        Target("p50 at 1 connection < 5 ms", f"{s1.p50_ms:.1f} ms", s1.p50_ms < 5)
        if s1
        else Target("p50 at 1 connection < 5 ms", "not run", None)
    )
    many = {clients: r for clients, r in sweep.items() if clients >= 8}
    if len(many) >= 2:
        best = max(r.rps for r in many.values())
        worst = min(r.rps for r in many.values())
        figure = ", ".join(f"{c}: {r.rps:.0f}" for c, r in sorted(sweep.items()))
        targets.append(
            Target(
                "every sweep point >= 8 connections within 15 % of the best", f"{figure} req/s", worst >= 0.85 * best
            )
        )
    s_cpu = [r.cpu_ms_per_call for r in sweep.values() if r.cpu_ms_per_call is not None and r.clients >= 8]
    if s_cpu:
        worst_cpu = max(s_cpu)
        targets.append(
            Target("CPU per patient-view call under load <= 1.0 ms", f"{worst_cpu:.2f} ms (workers)", worst_cpu <= 1.0)
        )
    replay = next((r for r in results if r.name == "B-replay"), None)
    targets.append(
        Target(
            "FHIR fallback (B-replay) p50 < 120 ms",
            f"{replay.p50_ms:.1f} ms at {replay.clients} connections",
            replay.p50_ms < 120,
        )
        if replay
        else Target("FHIR fallback (B-replay) p50 < 120 ms", "not run", None)
    )
    errors = sum(r.errors for r in results)
    targets.append(Target("zero errors", str(errors), errors == 0))
    targets.append(
        Target(
            "every call in the audit log, chain verified",
            f"{audit['records']} records for {audit['calls_answered_by_audited_scenarios']} calls; "
            f"chain {'verified' if audit['verify_ok'] else 'BROKEN'}",
            bool(audit["all_calls_recorded"] and audit["verify_ok"]),
        )
    )
    return targets


def served_options(env: dict[str, str], args: argparse.Namespace) -> dict[str, Any]:
    """The gunicorn configuration the service ran with (recorded with the results)."""
    from cds_service.config import load_settings

    served = load_settings({k: v for k, v in env.items() if k.startswith("MGCDS_")}).with_overrides(
        workers=args.workers, threads=args.threads
    )
    try:
        from cds_service.cli.serve import gunicorn_options
    except ImportError:  # a checkout from before round 2 (measuring "before"): gthread, shared socket
        return {"worker_class": "gthread", "workers": served.workers, "threads": served.threads}
    return {
        k: v for k, v in gunicorn_options(served).items() if isinstance(v, str | int | bool) and k != "control_socket"
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit 1 when any scenario had errors or the audit log misses calls."""
    args = parse_args(argv)
    wanted = [name.strip() for name in args.scenarios.split(",") if name.strip()]
    unknown = sorted(set(wanted) - set(ALL_SCENARIOS))
    if unknown:
        print(f"bench: unknown scenarios {unknown}; choose from {', '.join(ALL_SCENARIOS)}", file=sys.stderr)
        return 2
    sweep = [int(n) for n in args.sweep.split(",") if n.strip()]
    wrk = ensure_wrk() if args.driver in {"auto", "wrk"} else None
    if args.driver == "wrk" and wrk is None:
        print("bench: wrk is not installed and could not be installed", file=sys.stderr)
        return 2
    driver = "wrk" if wrk else "locust"
    now = datetime.now(UTC)
    started_at = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    load_before = load_average()
    results: list[ScenarioResult] = []
    realistic = scenarios.realistic_patient_view_request(now)
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
        order = [n for n in ALL_SCENARIOS if n in wanted]
        floor_names = [n for n in order if chosen[n].floor_server]
        service_names = [n for n in order if not chosen[n].floor_server]
        for names, command, log_name in (
            (floor_names, floor_command, "floor.log"),
            (service_names, service_command, "service.log"),
        ):
            if not names:
                continue
            log_file = tmp / log_name
            port = free_port()
            try:
                with running_server(command(args, port), env, port, log_file) as server:
                    for name in names:
                        scenario = chosen[name]
                        if fhir is not None:
                            fhir.proxy.replay = scenario.replay_fhir
                        for clients in sweep if name in SWEPT_SCENARIOS else [args.clients]:
                            results.append(run_scenario(wrk, server, scenario, clients, args))
            except Exception:
                print(log_file.read_text(encoding="utf-8")[-3000:], file=sys.stderr)
                raise
        audit = audit_check(env)
        fhir_search_ms = fhir.observation_search_ms if fhir is not None else None
    load_after = load_average()
    by_label = {r.label: r for r in results}
    first = {r.name: r for r in reversed(results)}  # a scenario's first connection count
    # Every call that got an answer must be in the audit log; calls still in flight when the driver stopped
    # were answered too (gunicorn finishes them on SIGTERM), so the store may hold a few more.
    expected_audited = sum(r.requests + r.warmup_calls for r in results if r.audited)
    audit["calls_answered_by_audited_scenarios"] = expected_audited
    audit["all_calls_recorded"] = audit["records"] is not None and audit["records"] >= expected_audited
    targets = evaluate_targets(results, audit)
    server_options = served_options(env, args)
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
            "sweep": sweep,
            "duration_s": args.duration,
            "server": server_options,
            "fhir_max_concurrency": args.fhir_max_concurrency,
            "fhir_delay_ms": FHIR_DELAY_SECONDS * 1000,
            "fhir_server_observation_search_ms": fhir_search_ms,
            "log_level": args.log_level,
            "audit_store": "postgresql" if args.audit_url.startswith("postgres") else "sqlite (temporary file)",
            "dev_mode": True,
            "realistic_body": {
                "source": realistic.source,
                "bytes": len(json.dumps(realistic.body)),
                "observations": realistic.observations,
                "medication_requests": realistic.medication_requests,
                "conditions": realistic.conditions,
            },
        },
        "scenarios": [{**asdict(r), "label": r.label} for r in results],
        "ratios": {
            "S@16/F@16": ratio(by_label.get("S@16"), by_label.get("F@16")),
            "S@16/S@8": ratio(by_label.get("S@16"), by_label.get("S@8")),
            "S@64/S@8": ratio(by_label.get("S@64"), by_label.get("S@8")),
            "A/D": ratio(first.get("A"), first.get("D")),
            "C/D": ratio(first.get("C"), first.get("D")),
            "B-warm p50 / A p50": round(first["B-warm"].p50_ms / first["A"].p50_ms, 3)
            if "B-warm" in first and "A" in first and first["A"].p50_ms
            else None,
            "B-warm p90 / A p90": round(first["B-warm"].p90_ms / first["A"].p90_ms, 3)
            if "B-warm" in first and "A" in first and first["A"].p90_ms
            else None,
        },
        "targets": [asdict(t) for t in targets],
        "audit": audit,
    }
    output = args.output or RESULTS_DIR / f"{started_at.replace(':', '')}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(format_table(results))
    print()
    print(f"ratios: {json.dumps(summary['ratios'])}")
    print(f"realistic body: {json.dumps(summary['settings']['realistic_body'])}")  # type: ignore[index]
    print("targets:")
    for target in targets:
        verdict = {True: "met", False: "NOT met", None: "not measured"}[target.met]
        print(f"  {verdict:<12} {target.what}: {target.figure}")
    print(
        f"audit: {audit['records']} records, {expected_audited} calls answered; chain "
        f"{'verified' if audit['verify_ok'] else 'BROKEN: ' + audit['verify']}"
    )
    others = max((r.other_cpu_share or 0.0 for r in results if not r.name.startswith("B")), default=0.0)
    busy = (
        f" (BUSY machine: other processes used up to {others:.0%} of the cores during a run; throughput and latency "
        "are not comparable)"
        if others > BUSY_OTHER_CPU_SHARE
        else f" (other processes used at most {others:.0%} of the cores during a run)"
    )
    print(
        f"machine: {os.cpu_count()} cores, load {load_before} -> {load_after}{busy}; driver {driver}; results {output}"
    )
    failed = any(r.errors for r in results) or not audit["verify_ok"] or not audit["all_calls_recorded"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

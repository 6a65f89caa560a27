"""Issue 16 B11 measured: a hook call's latency while 32 parallel wrong basic-auth guesses hit /audit.

    .venv/bin/python bench/review_guessing.py                  # throttled (the defaults), then unthrottled
    .venv/bin/python bench/review_guessing.py --duration 10 --modes throttled

Starts `mgcds serve --dev` (gunicorn, 2 workers x 4 threads, as shipped) on loopback with a basic-auth reviewer
credential (werkzeug's default scrypt hash). 32 threads send wrong guesses to /audit/ as fast as they are answered
while one client calls mg-patient-view (full prefetch, examples/patient-view-request.json) one call at a time.
"unthrottled" sets both budgets to 1000000/second, which is what the service did before: every guess hashed.
"no-credential" is the control: the same 32 threads send no Authorization header at all (401 with nothing
checked), so it shows what a flood of requests costs the hooks by itself, hashing or not.
Prints one JSON line per mode: hook latency percentiles (ms), guesses answered 401 (each ran scrypt) and 429
(none did). Before the attack starts, the hook latency alone is measured as the baseline.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import requests
from werkzeug.security import generate_password_hash

ROOT = Path(__file__).resolve().parents[1]
HOOK = "/cds-services/mg-patient-view"
GUESSERS = 32
UNTHROTTLED = "1000000/second"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def serve(instance: Path, port: int, extra_env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """`mgcds serve --dev` with two workers on 127.0.0.1:port until the block ends."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MGCDS_")}
    env.update({"MGCDS_INSTANCE_PATH": str(instance), "PYTHONPATH": str(ROOT), **extra_env})
    command = [sys.executable, "-m", "cds_service.cli", "serve", "--dev", "--port", str(port), "--workers", "2"]
    log = (instance.parent / f"serve-{port}.log").open("wb")
    process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"mgcds serve exited {process.returncode}")
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("mgcds serve did not become ready")
            time.sleep(0.2)
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        log.close()


def _percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {}

    def at(share: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(share * len(ordered)))], 1)

    return {"n": len(ordered), "p50": at(0.5), "p95": at(0.95), "max": round(ordered[-1], 1)}


def _hook_latencies(base: str, body: dict[str, Any], stop: threading.Event, seconds: float) -> list[float]:
    latencies: list[float] = []
    session = requests.Session()
    end = time.monotonic() + seconds
    while time.monotonic() < end and not stop.is_set():
        started = time.perf_counter()
        response = session.post(base + HOOK, json=body, timeout=30)
        latencies.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise RuntimeError(f"hook call answered {response.status_code}")
    return latencies


def measure(mode: str, duration: float) -> dict[str, Any]:
    """One run: the baseline hook latency, then the latency and the answers during the attack."""
    body = json.loads((ROOT / "examples" / "patient-view-request.json").read_text(encoding="utf-8"))
    env = {"MGCDS_REVIEWER_PASSWORD_HASH": generate_password_hash("the right one")}
    if mode == "unthrottled":
        env.update({"MGCDS_REVIEWER_AUTH_CLIENT_LIMIT": UNTHROTTLED, "MGCDS_REVIEWER_AUTH_GLOBAL_LIMIT": UNTHROTTLED})
    wrong = {"Authorization": "Basic " + base64.b64encode(b"reviewer:guess").decode()}
    if mode == "no-credential":
        wrong = {}
    with TemporaryDirectory() as folder:
        port = _free_port()
        base = f"http://127.0.0.1:{port}"
        with serve(Path(folder) / "instance", port, env):
            for _ in range(20):  # warm both workers
                requests.post(base + HOOK, json=body, timeout=30)
            baseline = _hook_latencies(base, body, threading.Event(), min(3.0, duration))
            answers: Counter[int] = Counter()
            lock = threading.Lock()
            stop = threading.Event()

            def guess() -> None:
                session = requests.Session()
                while not stop.is_set():
                    status = session.get(base + "/audit/", headers=wrong, timeout=60).status_code
                    with lock:
                        answers[status] += 1

            guessers = [threading.Thread(target=guess, daemon=True) for _ in range(GUESSERS)]
            for thread in guessers:
                thread.start()
            time.sleep(0.5)  # the attack is under way
            try:
                during = _hook_latencies(base, body, stop, duration)
            finally:
                stop.set()
                for thread in guessers:
                    thread.join(timeout=60)
    return {
        "mode": mode,
        "duration_s": duration,
        "cores": os.cpu_count(),
        "load_1min": round(os.getloadavg()[0], 2),
        "hook_ms_alone": _percentiles(baseline),
        "hook_ms_under_attack": _percentiles(during),
        "hook_ms_under_attack_mean": round(statistics.fmean(during), 1) if during else None,
        "guesses": dict(sorted(answers.items())),
    }


def main() -> int:
    """Run the modes asked for and print one JSON line each."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=15.0, help="seconds of hook calls under attack")
    parser.add_argument(
        "--modes",
        default="throttled,unthrottled,no-credential",
        help="comma-separated: throttled, unthrottled, no-credential",
    )
    args = parser.parse_args()
    for mode in args.modes.split(","):
        print(json.dumps(measure(mode.strip(), args.duration)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

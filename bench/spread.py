"""How keep-alive connections spread over gunicorn's workers: the collapse of issue 17 measured directly.

    .venv/bin/python bench/spread.py                          # 20 trials each of 8, 16 and 64 connections
    .venv/bin/python bench/spread.py --trials 50 --connections 16

Throughput on a shared machine moves by +-30 % between identical runs; where connections land does not depend on
how busy the cores are, only on how the server accepts. Each trial opens N connections at once (as wrk and an
EHR's connection pool do), sends one patient-view call with the realistic body on each, waits for every answer,
then counts with `ss` which worker process holds each connection. A connection a worker holds serves every later
request on it (keep-alive): a worker with none idles, whatever the load. Configurations compared: the shared
listening socket (MGCDS_REUSE_PORT=0, gunicorn's greedy accept), one SO_REUSEPORT socket per worker (the
default), and the shared socket with MGCDS_WORKER_CONNECTIONS capped at the threads per worker.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

from bench import run, scenarios  # noqa: E402 - needs the project root on sys.path when run as a script

ANSWER_TIMEOUT_SECONDS = 5.0


def request_bytes(port: int, body: bytes) -> bytes:
    """One keep-alive HTTP/1.1 patient-view call."""
    head = (
        f"POST /cds-services/mg-patient-view HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def read_answer(sock: socket.socket, deadline: float) -> bool:
    """Read one HTTP answer (headers and Content-Length body); False when none came before the deadline."""
    data = b""
    while b"\r\n\r\n" not in data:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except OSError:
            return False
        if not chunk:
            return False
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = next(
        (int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")),
        0,
    )
    while len(rest) < length:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except OSError:
            return False
        if not chunk:
            return False
        rest += chunk
    return head.startswith(b"HTTP/1.1 200")


def holders(port: int) -> Counter[int]:
    """How many established connections to ``port`` each process holds (from `ss -tnpH`)."""
    listing = subprocess.run(
        ["ss", "-tnpH", "state", "established", f"( sport = :{port} )"], capture_output=True, text=True, check=True
    ).stdout
    counts: Counter[int] = Counter()
    for line in listing.splitlines():
        if "pid=" in line:
            counts[int(line.split("pid=", 1)[1].split(",", 1)[0])] += 1
    return counts


def trial(port: int, payload: bytes, connections: int) -> dict[str, Any]:
    """Open the connections at once, one call on each, then see which worker holds which."""
    sockets = []
    for _ in range(connections):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.connect(("127.0.0.1", port))
        sockets.append(sock)
    for sock in sockets:
        sock.sendall(payload)
    deadline = time.monotonic() + ANSWER_TIMEOUT_SECONDS
    answered = sum(read_answer(sock, deadline) for sock in sockets)
    counts = holders(port)
    for sock in sockets:
        sock.close()
    split = sorted(counts.values(), reverse=True)
    return {"answered": answered, "split": split}


def measure(config: str, env_extra: dict[str, str], args: argparse.Namespace, body: bytes) -> list[dict[str, Any]]:
    """Every trial of one configuration, at each connection count."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="mgcds-spread-") as tmp:
        namespace = argparse.Namespace(
            log_level="WARNING",
            fhir_max_concurrency=8,
            audit_url="",
            worker_connections=None,
            reuse_port="default",
            workers=args.workers,
            threads=args.threads,
        )
        env = {**run.service_env(Path(tmp) / "instance", namespace), **env_extra}
        port = run.free_port()
        with run.running_server(run.service_command(namespace, port), env, port, Path(tmp) / "service.log"):
            payload = request_bytes(port, body)
            for connections in args.connections:
                for _ in range(args.trials):
                    result = trial(port, payload, connections)
                    rows.append({"config": config, "connections": connections, **result})
                    time.sleep(0.2)  # closed connections leave their workers before the next trial
    return rows


def summarise(rows: list[dict[str, Any]], workers: int) -> list[dict[str, Any]]:
    """Per configuration and connection count: how often a worker held no connection, the mean largest share."""
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["config"], row["connections"]), []).append(row)
    table = []
    for (config, connections), group in groups.items():
        largest = [max(r["split"], default=0) / connections for r in group]
        idle = [len(r["split"]) < workers for r in group]
        table.append(
            {
                "config": config,
                "connections": connections,
                "trials": len(group),
                "trials_with_an_idle_worker": sum(idle),
                "mean_largest_share": round(sum(largest) / len(largest), 3),
                "worst_split": max((r["split"] for r in group), key=lambda s: s[0] if s else 0),
                "unanswered_calls": sum(connections - r["answered"] for r in group),
            }
        )
    return table


def main(argv: list[str] | None = None) -> int:
    """Measure every configuration; print the table, write JSON with --output."""
    parser = argparse.ArgumentParser(prog="bench/spread.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--connections", type=lambda s: [int(n) for n in s.split(",")], default=[8, 16, 64])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    body = json.dumps(scenarios.realistic_patient_view_request(datetime.now(UTC)).body).encode()
    configs = {
        "shared socket (greedy accept)": {"MGCDS_REUSE_PORT": "0"},
        "SO_REUSEPORT per worker": {"MGCDS_REUSE_PORT": "1"},
        f"shared socket, worker_connections={args.threads}": {
            "MGCDS_REUSE_PORT": "0",
            "MGCDS_WORKER_CONNECTIONS": str(args.threads),
        },
    }
    load_before = run.load_average()
    rows = [row for config, extra in configs.items() for row in measure(config, extra, args, body)]
    table = summarise(rows, args.workers)
    print(f"{'configuration':<40} {'conns':>5} {'trials':>6} {'idle worker':>11} {'largest share':>13}  worst split")
    for line in table:
        print(
            f"{line['config']:<40} {line['connections']:>5} {line['trials']:>6} "
            f"{line['trials_with_an_idle_worker']:>11} {line['mean_largest_share']:>13.2f}  "
            f"{'/'.join(map(str, line['worst_split']))}"
            + (f"  ({line['unanswered_calls']} calls unanswered)" if line["unanswered_calls"] else "")
        )
    if args.output:
        summary = {
            "date": datetime.now(UTC).isoformat(),
            "load_average": [load_before, run.load_average()],
            "workers": args.workers,
            "threads": args.threads,
            "table": table,
            "trials": rows,
        }
        args.output.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A few seconds of the benchmark (scenarios A, D, S and the floor app F, two clients) so bench/run.py cannot rot.

It asserts that the runner starts the real server, drives it with the load generator, writes its JSON and finds
every call in the audit log with zero errors; it does not assert any latency (that is the benchmark's job, on a
machine that is not running the test suite).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT

pytestmark = pytest.mark.slow


def test_benchmark_smoke_run(tmp_path: Path) -> None:
    output = tmp_path / "bench.json"
    completed = subprocess.run(
        [
            sys.executable,
            str(PROJECT_ROOT / "bench" / "run.py"),
            "--duration",
            "2",
            "--clients",
            "2",
            "--scenarios",
            "A,D,S,F",
            "--sweep",
            "2",
            # locust comes with the dev extras; the default driver may try to install wrk with apt-get.
            "--driver",
            "locust",
            "--output",
            str(output),
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-3000:]
    assert "scenario" in completed.stdout  # the table was printed

    result = json.loads(output.read_text(encoding="utf-8"))
    by_name = {s["name"]: s for s in result["scenarios"]}
    assert set(by_name) == {"A", "D", "S", "F"}
    for scenario in by_name.values():
        assert scenario["requests"] > 0
        assert scenario["errors"] == 0
    assert result["machine"]["cores"] >= 1
    assert result["settings"]["driver"] == "locust"
    assert result["ratios"]["A/D"] is not None
    # The workers' own CPU accounting was read around each run, and both workers of each server were found.
    for scenario in by_name.values():
        assert scenario["cpu_ms_per_call"] is not None
        assert scenario["cpu_ms_per_call"] > 0
        assert len(scenario["worker_cpu_shares"]) == 2
    body = result["settings"]["realistic_body"]
    assert body["bytes"] > 10_000
    assert body["observations"] > 0
    targets = {t["what"]: t for t in result["targets"]}
    assert targets["zero errors"]["met"] is True
    audit = result["audit"]
    assert audit["verify_ok"], audit
    # Scenario D (the floor) is not audited; every call of A, warm-up included, must be in the store.
    audited = ("A", "S")
    assert audit["records"] >= sum(by_name[n]["requests"] + by_name[n]["warmup_calls"] for n in audited)
    assert audit["all_calls_recorded"]

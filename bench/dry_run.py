"""Measure `mgcds dry-run` on a generated population (issue 18): patients per second, wall time, peak memory.

    .venv/bin/python bench/dry_run.py                        # 10,000 patients, NDJSON, one worker per core
    .venv/bin/python bench/dry_run.py --patients 2000 --workers 1

It writes the population with bench/population.py into a temporary folder (as a Bulk FHIR export), runs
`mgcds dry-run --ndjson ... --json` as its own process, and reports what the run says of itself (patients/s of the
evaluation, the grouping time, peak RSS of the parent and of the largest worker) beside the wall time measured from
outside. Results go to bench/results/dry-run-<UTC time>.json with the machine's core count and load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.population import DEFAULT_NOW, population, write_ndjson  # noqa: E402 - after the path is set


def main(argv: list[str] | None = None) -> int:
    """Generate, run, print and save one measurement."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--workers", type=int, help="worker processes (default: mgcds's default, one per core)")
    parser.add_argument("--output", type=Path, help="result file (default: bench/results/dry-run-<time>.json)")
    args = parser.parse_args(argv)
    now = datetime.fromisoformat(DEFAULT_NOW)
    with tempfile.TemporaryDirectory(prefix="mgcds-bench-dry-run-") as scratch:
        export = Path(scratch) / "export"
        started = time.perf_counter()
        lines = write_ndjson(population(args.patients, args.seed, now), export, args.seed)
        generated = time.perf_counter() - started
        size = sum(p.stat().st_size for p in export.iterdir())
        command = [str(ROOT / ".venv" / "bin" / "mgcds"), "dry-run", "--ndjson", str(export), "--now", DEFAULT_NOW]
        command += ["--json", "--work-dir", scratch, "--no-progress"]
        if args.workers:
            command += ["--workers", str(args.workers)]
        load_before = os.getloadavg()
        started = time.perf_counter()
        completed = subprocess.run(
            command, capture_output=True, text=True, check=False, env={**os.environ, "MGCDS_DEV": "1"}
        )
        wall = time.perf_counter() - started
        load_after = os.getloadavg()
    if completed.returncode != 0:
        print(completed.stderr, file=sys.stderr)
        return 1
    summary = json.loads(completed.stdout)
    run = summary["run"]
    result = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "patients": args.patients,
        "export": {"files": len(lines), "lines": sum(lines.values()), "mib": round(size / 2**20, 1)},
        "generation_seconds": round(generated, 1),
        "wall_seconds": round(wall, 1),
        "grouping_seconds": summary["input"]["grouping_seconds"],
        "evaluation_seconds": run["elapsed_seconds"],
        "patients_per_second_evaluation": run["patients_per_second"],
        "patients_per_second_wall": round(args.patients / wall, 1),
        "workers": run["workers"],
        "cores": os.cpu_count(),
        "peak_rss_mib": run["peak_rss_mib"],
        "evaluated": summary["patients"]["evaluated"],
        "skipped": summary["patients"]["skipped"],
        "cards_per_100_patients": summary["cards"]["per_100_patients"],
        "load_average_before_after": [round(load_before[0], 2), round(load_after[0], 2)],
        "python": platform.python_version(),
    }
    print(json.dumps(result, indent=2))
    output = args.output or ROOT / "bench" / "results" / f"dry-run-{datetime.now(UTC):%Y-%m-%dT%H%M%SZ}.json"
    output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"written to {output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

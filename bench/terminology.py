"""Terminology micro-benchmark: how long the local value-set lookups take, and what the indexes cost in memory.

    .venv/bin/python bench/terminology.py                 # prints a table, writes bench/results/terminology-<time>.json
    .venv/bin/python bench/terminology.py --repeat 20000

Issue 4 asks for "dictionary-fast" lookups over the local sets, with indexes built once at start-up. That is a speed
goal, so it is measured here rather than asserted in a timed unit test: each case calls the public API the engine
uses (`classify_medication`, `classify_observation`, `convert`) on a warm, in-process `Terminology` with no remote
lookup configured, and reports the median and 99th percentile per call over batches.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from terminology import CodeRef, Terminology, load_terminology  # noqa: E402

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ATC = "http://www.whocc.no/atc"
LOINC = "http://loinc.org"
RESULTS = Path(__file__).resolve().parent / "results"
BATCH = 100  # calls per timed batch: one perf_counter pair per batch keeps the timer's own cost out of the figure


def cases(term: Terminology) -> dict[str, Callable[[], object]]:
    """Lookups of the shapes real EHR data has (issue 4): product code, ingredient code, ATC, brand, generic text."""
    product = [CodeRef(RXNORM, "315971", "Lasix 40mg")]
    ingredient = [CodeRef(RXNORM, "4603", None)]
    atc = [CodeRef(ATC, "A02BC01", None)]
    unknown_local = [CodeRef("http://example.org/local-formulary", "X1", None)]
    creatinine = [CodeRef(LOINC, "38483-4", None)]
    iv_sulfate = [CodeRef(RXNORM, "1658244", None)]
    return {
        "medication: RxNorm product code": lambda: term.classify_medication(product, "Lasix 40mg"),
        "medication: RxNorm ingredient code": lambda: term.classify_medication(ingredient),
        "medication: ATC code": lambda: term.classify_medication(atc),
        "medication: brand name in text": lambda: term.classify_medication([], "Prilosec OTC 20 mg"),
        "medication: combination in text": lambda: term.classify_medication([], "Triamterene/HCTZ 37.5-25 mg"),
        "medication: unrelated local code + text": lambda: term.classify_medication(
            unknown_local, "Amoxicillin / Clavulanate 875 MG / 125 MG Oral Tablet"
        ),
        "medication: parenteral check (code, no route)": lambda: term.is_parenteral(iv_sulfate, None),
        "observation: creatinine LOINC": lambda: term.classify_observation(creatinine),
        "quantity: creatinine umol/L -> mg/dL": lambda: term.convert(88.4, "umol/L", "serum-creatinine"),
    }


def time_case(call: Callable[[], object], repeat: int) -> dict[str, float]:
    for _ in range(BATCH):  # warm caches and the interpreter's specialisations
        call()
    per_call_us: list[float] = []
    for _ in range(max(1, repeat // BATCH)):
        started = time.perf_counter()
        for _ in range(BATCH):
            call()
        per_call_us.append((time.perf_counter() - started) / BATCH * 1e6)
    per_call_us.sort()
    return {
        "median_us": round(statistics.median(per_call_us), 2),
        "p99_us": round(per_call_us[min(len(per_call_us) - 1, int(len(per_call_us) * 0.99))], 2),
    }


def measure_build() -> dict[str, float]:
    """Start-up cost: loading and validating every value set and building the indexes, and their memory."""
    tracemalloc.start()
    started = time.perf_counter()
    load_terminology()
    elapsed_ms = (time.perf_counter() - started) * 1000
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    tracemalloc.start()
    kept = load_terminology()
    current, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del kept
    return {"build_ms": round(elapsed_ms, 1), "retained_kib": round(current / 1024), "peak_kib": round(peak / 1024)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/terminology.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=10_000, help="calls per case (default 10000)")
    parser.add_argument("--output", type=Path, default=None, help="results JSON (default bench/results/...)")
    args = parser.parse_args(argv)

    build = measure_build()
    term = load_terminology()
    results: dict[str, Any] = {name: time_case(call, args.repeat) for name, call in cases(term).items()}

    width = max(len(name) for name in results)
    print(f"index build {build['build_ms']} ms, retained {build['retained_kib']} KiB, peak {build['peak_kib']} KiB")
    print(f"{'case':<{width}}  {'median µs':>10}  {'p99 µs':>8}")
    for name, figures in results.items():
        print(f"{name:<{width}}  {figures['median_us']:>10}  {figures['p99_us']:>8}")

    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H%M%SZ")
    output = args.output or RESULTS / f"terminology-{stamp}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "when": stamp,
        "python": platform.python_version(),
        "repeat": args.repeat,
        "build": build,
        "cases": results,
    }
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

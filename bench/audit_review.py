"""What the review page's trends and timelines cost on a large audit log (docs/audit.md, "The review page").

    .venv/bin/python bench/audit_review.py                       # 100,000 records in a temporary SQLite file
    .venv/bin/python bench/audit_review.py --url postgresql://postgres@127.0.0.1:5432/test --schema

It fills a store with ``--records`` records through the normal append path (hash chain and index tables): three
calls in four carry cards (one or two, four recommendation codes), the rest are feedback on those cards (a third
overridden with one of five reasons), over 52 weeks and 5,000 patients (pat-1 has one call in a hundred). Then
it times, median of ``--repeat`` runs on a warm store (PostgreSQL analysed first, as autovacuum would): the
reader's ``trends`` (all, the last four weeks, one code), the list page's ``summary`` for comparison, one
patient's timeline reads, and the pages as the Flask test client renders them. Results go to
bench/results/audit-review-<backend>-<UTC time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cds_service.audit.entries import make_entry  # noqa: E402
from cds_service.audit.model import CallFilter  # noqa: E402
from cds_service.audit.records import AuditEventType, parse_moment  # noqa: E402
from cds_service.audit.sqlread import SqlAuditReader  # noqa: E402
from cds_service.audit.store import SqlAuditStore  # noqa: E402
from cds_service.audit.trends import TrendFilter  # noqa: E402

START = datetime(2025, 12, 1, tzinfo=UTC)
CODES = ("test-serum-mg", "supplement-organic", "review-mg-losing-drugs", "urgent-evaluation")
REASONS = ("patient-declined", "already-ordered", "not-relevant", "contraindicated", "other")
RESULTS = Path(__file__).resolve().parent / "results"


def _call(rng: random.Random, at: datetime, patient: str) -> dict[str, Any]:
    cards = []
    for code in rng.sample(CODES, rng.choice((1, 1, 2))):
        card_uuid = str(uuid.uuid4())
        cards.append(
            {
                "uuid": card_uuid,
                "summary": f"{code}: MDS 3/5",
                "indicator": "warning",
                "recommendation": code,
                "suggestion_uuids": [],
                "card": {"uuid": card_uuid, "summary": f"{code}: MDS 3/5", "indicator": "warning"},
            }
        )
    return {
        "occurred_at": at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "service_id": "mgcds-patient-view",
        "hook": "patient-view",
        "hook_instance": str(uuid.uuid4()),
        "issuer": "https://ehr.example.org",
        "tenant": "hospital-a",
        "user_id": f"Practitioner/{rng.randrange(200)}",
        "patient_id": patient,
        "encounter_id": None,
        "fhir_server": None,
        "data_sources": [],
        "assessment": {"mds": {"min": 3, "max": 3}},
        "cards": cards,
        "rule_version": "bench",
        "http_status": 200,
        "latency_ms": 40.0,
        "error": None,
        "suppressed": [],
    }


def _feedback(rng: random.Random, card_uuid: str, at: datetime) -> dict[str, Any]:
    overridden = rng.random() < 1 / 3
    reason = rng.choice(REASONS)
    return {
        "occurred_at": at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "service_id": "mgcds-patient-view",
        "card_uuid": card_uuid,
        "outcome": "overridden" if overridden else "accepted",
        "accepted_suggestions": [],
        "override_reason": {"system": "https://x/reason", "code": reason, "display": reason.title()}
        if overridden
        else None,
        "user_comment": None,
        "outcome_timestamp": at.isoformat(),
        "issuer": "https://ehr.example.org",
        "tenant": "hospital-a",
        "sender": "Practitioner/1",
    }


def fill(store: SqlAuditStore, records: int, seed: int = 18) -> float:
    """Append ``records`` records; returns the seconds it took."""
    rng = random.Random(seed)
    calls = records * 3 // 4
    feedback_left = records - calls
    batch: list[Any] = []
    started = time.perf_counter()
    for i in range(calls):
        at = START + timedelta(seconds=i * (52 * 7 * 86400) / calls)
        # One call in a hundred is pat-1's: a chart opened often, more calls than one timeline page.
        payload = _call(rng, at, "pat-1" if rng.random() < 0.01 else f"pat-{rng.randrange(2, 5000)}")
        batch.append(make_entry(AuditEventType.SERVICE_CALL, payload))
        # Feedback for about one card in three, a few minutes later, until the feedback share is used.
        if feedback_left and rng.random() < (records - calls) / calls * 1.05:
            card = rng.choice(payload["cards"])
            batch.append(make_entry(AuditEventType.FEEDBACK, _feedback(rng, card["uuid"], at + timedelta(minutes=3))))
            feedback_left -= 1
        if len(batch) >= 1000:
            store.append(batch)
            batch = []
    while feedback_left:  # top up so the store holds exactly ``records``
        batch.append(make_entry(AuditEventType.FEEDBACK, _feedback(rng, str(uuid.uuid4()), START)))
        feedback_left -= 1
    if batch:
        store.append(batch)
    return time.perf_counter() - started


def timed(fn: Callable[[], Any], repeat: int) -> dict[str, float]:
    """Median and max wall time of ``fn`` in milliseconds (one warm-up run first)."""
    fn()
    runs = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - t) * 1000)
    return {"median_ms": round(statistics.median(runs), 1), "max_ms": round(max(runs), 1)}


def measure(url: str, records: int, repeat: int) -> dict[str, Any]:
    """Fill the store at ``url`` and time the review reads."""
    store = SqlAuditStore(url)
    store.init_schema()
    fill_seconds = fill(store, records)
    if store.backend == "postgresql":
        # As autovacuum would soon after a bulk load: without statistics the planner misjudges the feedback table
        # (a sequential scan, and a cost estimate high enough to JIT-compile a 4 ms query for 220 ms).
        from sqlalchemy import text

        with store.engine.begin() as conn:
            conn.execute(text("ANALYZE"))
    reader = SqlAuditReader.open_read_only(url)
    from flask import Flask

    from cds_service.api.review import create_review_blueprint

    app = Flask(__name__)
    app.register_blueprint(
        create_review_blueprint(reader, reviewer_token="t" * 32, reviewer_user="r", reviewer_password_hash="")
    )
    client = app.test_client()
    headers = {"Authorization": "Bearer " + "t" * 32}
    last_weeks = TrendFilter(since=parse_moment("2026-10-31"))
    busiest = "pat-1"
    calls, total = reader.list_calls(CallFilter(patient_id=busiest), limit=100)

    def timeline_reads() -> None:
        found, _ = reader.list_calls(CallFilter(patient_id=busiest), limit=100)
        reader.feedback_on_cards([c["uuid"] for call in found for c in call.payload["cards"]])

    def page(path: str) -> Callable[[], None]:
        def get() -> None:
            response = client.get(path, headers=headers)
            assert response.status_code == 200, response.status_code  # noqa: S101 - a benchmark's sanity check

        return get

    trends = reader.trends(TrendFilter())
    result = {
        "backend": store.backend,
        "records": store.count(),
        "cards": sum(sum(s["shown"]) for s in trends.per_recommendation.values()),
        "weeks": len(trends.weeks),
        "fill_seconds": round(fill_seconds, 1),
        "timings": {
            "trends_all": timed(lambda: reader.trends(TrendFilter()), repeat),
            "trends_last_4_weeks": timed(lambda: reader.trends(last_weeks), repeat),
            "trends_one_code": timed(lambda: reader.trends(TrendFilter(recommendation="test-serum-mg")), repeat),
            "summary_all_for_comparison": timed(lambda: reader.summary(CallFilter()), repeat),
            "timeline_reads_one_patient": timed(timeline_reads, repeat),
            "page_trends": timed(page("/audit/trends"), repeat),
            "page_trends_csv": timed(page("/audit/trends.csv"), repeat),
            "page_timeline": timed(page(f"/audit/patients/{busiest}"), repeat),
        },
        "timeline_patient_calls": total,
        "machine": {"cpus": os.cpu_count(), "load": os.getloadavg(), "python": platform.python_version()},
        "at": datetime.now(UTC).strftime("%Y-%m-%dT%H%M%SZ"),
    }
    reader.close()
    store.close()
    return result


def main() -> None:
    """Run it and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--url", help="a store URL (default: a SQLite file in a temporary folder)")
    parser.add_argument("--schema", action="store_true", help="PostgreSQL: work in a fresh schema, dropped after")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        url = args.url or f"sqlite:///{Path(folder) / 'audit.sqlite3'}"
        if args.schema:
            import psycopg

            schema = f"mgcds_bench_{uuid.uuid4().hex[:10]}"
            admin = psycopg.connect(args.url, autocommit=True)
            admin.execute(f'CREATE SCHEMA "{schema}"')
            url = f"{args.url}?options=-csearch_path%3D{schema}"
        try:
            result = measure(url, args.records, args.repeat)
        finally:
            if args.schema:
                admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
                admin.close()
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"audit-review-{result['backend']}-{result['at']}.json"
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))
    print(f"written to {out}")


if __name__ == "__main__":
    main()

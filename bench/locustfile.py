"""Locust user of bench/run.py (the fallback driver when wrk is unavailable, and the smoke test's driver).

Environment: BENCH_PATH (URL path), BENCH_BODY_FILE (the JSON body), BENCH_FRESH_TOKEN=1 to replace ``__TOKEN__``
with a unique value per request, BENCH_FRESH_PATIENT=1 to replace ``__PATIENT__`` with a unique patient id per
request. Closed loop like wrk: each user sends its next request as soon as one returns.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

from locust import constant, task
from locust.contrib.fasthttp import FastHttpUser

_PATH = os.environ.get("BENCH_PATH", "/")
_TEMPLATE = Path(os.environ.get("BENCH_BODY_FILE", os.devnull)).read_text(encoding="utf-8")
_FRESH_TOKEN = os.environ.get("BENCH_FRESH_TOKEN") == "1"
_FRESH_PATIENT = os.environ.get("BENCH_FRESH_PATIENT") == "1"
_WARM_BODY = _TEMPLATE.replace("__TOKEN__", "bench-warm-token").replace("__PATIENT__", "bench-patient")
_COUNTER = itertools.count()
_HEADERS = {"Content-Type": "application/json"}


class HookCaller(FastHttpUser):
    """Posts the scenario's body again and again."""

    wait_time = constant(0)

    @task
    def call(self) -> None:
        """One hook call; anything but 200 counts as a failure."""
        body = _WARM_BODY
        if _FRESH_TOKEN or _FRESH_PATIENT:
            unique = f"{os.getpid()}-{next(_COUNTER)}"
            body = _TEMPLATE
            if _FRESH_TOKEN:
                body = body.replace("__TOKEN__", f"bench-cold-{unique}")
            if _FRESH_PATIENT:
                body = body.replace("__PATIENT__", f"bench-patient-{unique}")
            body = body.replace("__TOKEN__", "bench-warm-token")
        with self.client.post(_PATH, data=body, headers=_HEADERS, catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}")

"""Drive the jobs through a process pool, in order, with a bounded window of jobs in flight.

Workers are started with ``spawn``: a fresh interpreter inherits no thread, lock, socket or SQLite connection of the
parent (``fork`` with any of those alive is unsafe), and it behaves the same on every platform. Results are taken
back in submission order, so the CSV follows the input; the window (a few jobs per worker) keeps every core busy
while the parent holds only those jobs' results.
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import IO, Any

from cds_service.dryrun import worker
from cds_service.dryrun.ndjson import DryRunInputError
from cds_service.dryrun.results import PatientResult
from cds_service.dryrun.sources import Job

JOBS_PER_WORKER_IN_FLIGHT = 4


@dataclass
class RunStats:
    """How the run went: workers, wall time and peak memory."""

    workers: int
    patients: int
    seconds: float
    parent_peak_rss_mib: float
    worker_peak_rss_mib: float | None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, with patients per second."""
        return {
            "workers": self.workers,
            "cores": os.cpu_count(),
            "elapsed_seconds": round(self.seconds, 3),
            "patients_per_second": round(self.patients / self.seconds, 1) if self.seconds > 0 else None,
            "peak_rss_mib": {"parent": self.parent_peak_rss_mib, "largest_worker": self.worker_peak_rss_mib},
        }


def _peak_mib(who: int) -> float:
    # Linux reports ru_maxrss in KiB, macOS in bytes (a figure for people, not a decision).
    peak = resource.getrusage(who).ru_maxrss
    kib = peak / 1024 if sys.platform == "darwin" else peak
    return round(kib / 1024, 1)


class _Progress:
    """A progress bar on a terminal (tqdm), nothing otherwise."""

    def __init__(self, total: int | None, enabled: bool, stream: IO[str]) -> None:
        self._bar: Any = None
        if enabled:
            from tqdm import tqdm

            # No monitor thread: the bar is refreshed by the results themselves.
            tqdm.monitor_interval = 0
            self._bar = tqdm(total=total, unit="patient", file=stream, dynamic_ncols=True, smoothing=0.1)

    def update(self, count: int) -> None:
        if self._bar is not None:
            self._bar.update(count)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def run_jobs(
    config: worker.WorkerConfig,
    jobs: Iterable[Job],
    on_result: Callable[[PatientResult], None],
    *,
    workers: int,
    total: int | None = None,
    progress: bool = False,
    progress_stream: IO[str] | None = None,
) -> RunStats:
    """Evaluate every job (in this process when ``workers`` is 1) and hand each result to ``on_result``."""
    started = time.perf_counter()
    count = 0
    bar = _Progress(total, progress, progress_stream or sys.stderr)

    def take(results: list[PatientResult]) -> None:
        nonlocal count
        for result in results:
            on_result(result)
        count += len(results)
        bar.update(len(results))

    try:
        if workers <= 1:
            local = worker.Worker(config)
            try:
                for job in jobs:
                    take(local.run(job))
            finally:
                local.close()
            worker_peak = None
        else:
            _in_pool(config, jobs, take, workers)
            # The pool's processes have been joined: RUSAGE_CHILDREN now holds the largest one's peak.
            worker_peak = _peak_mib(resource.RUSAGE_CHILDREN)
    finally:
        bar.close()
    return RunStats(workers, count, time.perf_counter() - started, _peak_mib(resource.RUSAGE_SELF), worker_peak)


def _in_pool(
    config: worker.WorkerConfig, jobs: Iterable[Job], take: Callable[[list[PatientResult]], None], workers: int
) -> None:
    window = workers * JOBS_PER_WORKER_IN_FLIGHT
    pending: deque[Future[list[PatientResult]]] = deque()
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=worker.initialize, initargs=(config,)) as pool:
        try:
            for job in jobs:
                pending.append(pool.submit(worker.run_job, job))
                if len(pending) >= window:
                    take(pending.popleft().result())
            while pending:
                take(pending.popleft().result())
        except BrokenProcessPool as exc:
            raise DryRunInputError(
                "a dry-run worker process died (out of memory, killed, or its set-up failed); no result is reliable"
            ) from exc
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise

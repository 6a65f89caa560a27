"""The one watchdog thread that keeps every audit-store time limit (cds_service/audit/deadline.py)."""

from __future__ import annotations

import os
import threading
import time

import pytest

from cds_service.audit.deadline import Watchdog


def test_a_callback_runs_after_its_deadline_not_before() -> None:
    watchdog = Watchdog()
    fired = threading.Event()
    armed = time.monotonic()
    watchdog.arm(0.2, fired.set)
    assert not fired.wait(0.1)
    assert fired.wait(5)
    assert time.monotonic() - armed >= 0.2


def test_a_cancelled_callback_never_runs() -> None:
    watchdog = Watchdog()
    fired = threading.Event()
    watchdog.cancel(watchdog.arm(0.05, fired.set))
    assert not fired.wait(0.3)


def test_a_later_armed_earlier_deadline_fires_first() -> None:
    watchdog = Watchdog()
    order: list[str] = []
    done = threading.Event()
    watchdog.arm(0.4, lambda: (order.append("late"), done.set()))
    watchdog.arm(0.05, lambda: order.append("early"))
    assert done.wait(5)
    assert order == ["early", "late"]


def test_a_failing_callback_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    watchdog = Watchdog()
    fired = threading.Event()

    def fail() -> None:
        raise RuntimeError("boom")

    watchdog.arm(0.01, fail)
    watchdog.arm(0.1, fired.set)
    assert fired.wait(5)
    assert "a time-limit callback failed" in caplog.text


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
# Python 3.12+ warns about fork() in a process with threads: here that is the point (gunicorn forks its workers).
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_gets_a_working_watchdog() -> None:
    watchdog = Watchdog()
    watchdog.arm(30, lambda: None)  # the parent's thread is running and holds a deadline
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        fired = threading.Event()
        watchdog.arm(0.01, fired.set)
        os.write(write_end, b"1" if fired.wait(5) else b"0")
        os._exit(0)
    os.close(write_end)
    try:
        assert os.read(read_end, 1) == b"1"
    finally:
        os.close(read_end)
        os.waitpid(pid, 0)

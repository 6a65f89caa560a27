"""The FHIR client's deadline thread (cds_service/fhir/egress.py Watchdog) expires each call's budget on time.

It is woken only when a new budget has the earliest deadline (every hook call arms one, and waking it for a later
deadline cost 5 % of a worker under load, docs/performance.md round 2): so a short budget armed after a long one
must still expire first and on time, and a long one armed after a short one must not be expired early.
"""

from __future__ import annotations

import time

from cds_service.fhir.egress import CallBudget, Watchdog


def _wait_until(condition: object, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return True
        time.sleep(0.01)
    return False


def test_a_shorter_budget_armed_after_a_longer_one_expires_on_time() -> None:
    watchdog = Watchdog()
    try:
        long_budget, short_budget = CallBudget(30, 1000), CallBudget(0.2, 1000)
        watchdog.watch(long_budget)
        watchdog.watch(short_budget)
        assert _wait_until(lambda: short_budget.expired, 5)
        assert not long_budget.expired
    finally:
        watchdog.stop()


def test_a_later_budget_does_not_expire_before_its_deadline() -> None:
    watchdog = Watchdog()
    try:
        first, second = CallBudget(0.1, 1000), CallBudget(0.6, 1000)
        watchdog.watch(first)
        watchdog.watch(second)  # a later deadline: the thread is not woken for it
        assert _wait_until(lambda: first.expired, 5)
        time.sleep(0.2)
        assert not second.expired
        assert _wait_until(lambda: second.expired, 5)
        assert second.remaining() <= 0
    finally:
        watchdog.stop()


def test_stop_expires_what_is_pending() -> None:
    watchdog = Watchdog()
    budget = CallBudget(30, 1000)
    watchdog.watch(budget)
    watchdog.stop()
    assert budget.expired

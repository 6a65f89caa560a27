"""Replay caches: a jti is accepted once within its lifetime, in memory, in SQLite and in PostgreSQL.

CDS Hooks 2.0: the jti "uniquely identifies this authentication JWT (used to protect against replay attacks)".
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from cds_service.errors import InvalidCallerToken
from cds_service.interfaces import ReplayCache
from cds_service.security.replay import InMemoryReplayCache, SqlReplayCache

POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


class Clock:
    """A settable clock."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def assert_replay_semantics(cache: ReplayCache, clock: Clock) -> None:
    """Fresh once, then a replay until expiry, fresh again after it; jtis are scoped per issuer."""
    assert cache.seen("https://a.example", "jti-1", clock.now + 100) is False
    assert cache.seen("https://a.example", "jti-1", clock.now + 100) is True
    assert cache.seen("https://b.example", "jti-1", clock.now + 100) is False
    assert cache.seen("https://a.example", "jti-2", clock.now + 100) is False
    clock.now += 101
    assert cache.seen("https://a.example", "jti-1", clock.now + 100) is False
    assert cache.seen("https://a.example", "jti-1", clock.now + 100) is True


def test_in_memory() -> None:
    clock = Clock(1000.0)
    assert_replay_semantics(InMemoryReplayCache(clock=clock, purge_every=2), clock)


def test_sqlite(tmp_path: Path) -> None:
    clock = Clock(1000.0)
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'replay.sqlite3'}")
    try:
        assert_replay_semantics(SqlReplayCache(engine, clock=clock, purge_every=2), clock)
    finally:
        engine.dispose()


def test_sqlite_is_shared_between_two_workers(tmp_path: Path) -> None:
    """Two caches on one database (two gunicorn workers): a jti seen by one is a replay for the other."""
    url = f"sqlite:///{tmp_path / 'replay.sqlite3'}"
    first, second = sa.create_engine(url), sa.create_engine(url)
    try:
        worker_a, worker_b = SqlReplayCache(first), SqlReplayCache(second)
        assert worker_a.seen("https://a.example", "shared", 4_000_000_000) is False
        assert worker_b.seen("https://a.example", "shared", 4_000_000_000) is True
    finally:
        first.dispose()
        second.dispose()


@pytest.fixture
def postgres_engine() -> Iterator[sa.Engine]:
    """An engine on the local PostgreSQL (trust auth, database test); skips when it is not reachable."""
    engine = sa.create_engine(POSTGRES_URL, pool_size=10)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
    except sa.exc.OperationalError as exc:
        engine.dispose()
        pytest.skip(f"PostgreSQL on 127.0.0.1:5432 (user postgres, database test) unreachable: {exc.orig}")
    yield engine
    engine.dispose()


@pytest.fixture
def postgres_table(postgres_engine: sa.Engine) -> Iterator[str]:
    """A table name unique to this test, dropped afterwards (other suites share the database)."""
    name = f"mgcds_jwt_replay_test_{uuid.uuid4().hex[:12]}"
    yield name
    with postgres_engine.begin() as conn:
        conn.execute(sa.text(f'drop table if exists "{name}"'))


@pytest.mark.integration
@pytest.mark.postgres
def test_postgresql(postgres_engine: sa.Engine, postgres_table: str) -> None:
    clock = Clock(1000.0)
    assert_replay_semantics(
        SqlReplayCache(postgres_engine, table_name=postgres_table, clock=clock, purge_every=2), clock
    )


@pytest.mark.integration
@pytest.mark.postgres
def test_postgresql_concurrent_workers_accept_a_jti_once(postgres_engine: sa.Engine, postgres_table: str) -> None:
    """Eight threads (standing in for workers) present the same jti at once: exactly one is accepted."""
    caches = [SqlReplayCache(postgres_engine, table_name=postgres_table) for _ in range(8)]
    barrier = threading.Barrier(len(caches))
    results: list[bool] = []
    lock = threading.Lock()

    def present(cache: SqlReplayCache) -> None:
        barrier.wait()
        outcome = cache.seen("https://a.example", "race", 4_000_000_000)
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=present, args=(cache,)) for cache in caches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(results) == [False] + [True] * 7


def test_a_store_error_refuses_the_token_instead_of_answering_not_seen(tmp_path: Path) -> None:
    """Fail closed: a jti that cannot be recorded could be replayed, so the token is refused (401, not a 500)."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'replay.sqlite3'}")
    try:
        cache = SqlReplayCache(engine)
        with engine.begin() as conn:
            conn.execute(sa.text("drop table mgcds_jwt_replay"))
        with pytest.raises(InvalidCallerToken, match="invalid or missing CDS Hooks JWT") as caught:
            cache.seen("https://a.example", "jti-1", 4_000_000_000)
        assert caught.value.reason.startswith("replay cache unavailable")
    finally:
        engine.dispose()


@pytest.mark.parametrize("expiry", [float("nan"), float("inf")])
def test_a_non_finite_expiry_is_never_recorded(tmp_path: Path, expiry: float) -> None:
    """B4's NaN would be stored and never count as seen (NaN >= now is false): the caches refuse it outright."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'replay.sqlite3'}")
    try:
        for cache in (InMemoryReplayCache(), SqlReplayCache(engine)):
            with pytest.raises(ValueError, match="finite"):
                cache.seen("https://a.example", "jti-1", expiry)
    finally:
        engine.dispose()


def test_two_workers_creating_the_table_at_once_both_start(tmp_path: Path) -> None:
    """Every gunicorn worker builds its cache at start: creating the table must not race."""
    url = f"sqlite:///{tmp_path / 'replay.sqlite3'}"
    engines = [sa.create_engine(url, connect_args={"timeout": 10}) for _ in range(4)]
    barrier = threading.Barrier(len(engines))
    errors: list[BaseException] = []

    def start(engine: sa.Engine) -> None:
        barrier.wait()
        try:
            SqlReplayCache(engine)
        except BaseException as exc:  # noqa: BLE001 - any failure is the test's finding
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(engine,)) for engine in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    for engine in engines:
        engine.dispose()
    assert errors == []

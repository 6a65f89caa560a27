"""The client-side time limit on store work (issue 19, R4): the work is abandoned and logged, the connection is not
reused. A PostgreSQL connection behind a blackholing proxy is in tests/integration/test_audit_faults.py."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from cds_service.audit.deadline import StoreTimeout, time_limit
from cds_service.audit.schema import create_store_engine

# SQLite counting to a billion: many seconds of work in one statement, interruptible.
LONG_QUERY = (
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000000000) SELECT count(*) FROM n"
)


def test_work_past_its_time_limit_is_aborted_and_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    engine = create_store_engine(f"sqlite:///{tmp_path / 'a.sqlite3'}")
    started = time.monotonic()
    with (
        caplog.at_level(logging.ERROR, logger="mgcds.audit"),
        pytest.raises(StoreTimeout, match="took longer than 0.3 s"),
        engine.connect() as conn,
        time_limit(conn, 0.3, "a test query"),
    ):
        conn.exec_driver_sql(LONG_QUERY)
    elapsed = time.monotonic() - started
    assert elapsed < 2.0
    assert "audit store: a test query took longer than 0.3 s; its connection was aborted" in caplog.text
    with engine.connect() as conn:  # the pool hands out a working connection afterwards
        assert conn.exec_driver_sql("SELECT 1").scalar_one() == 1
    engine.dispose()


def test_work_within_its_limit_is_untouched(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    engine = create_store_engine(f"sqlite:///{tmp_path / 'a.sqlite3'}")
    with engine.connect() as conn, time_limit(conn, 5.0, "a quick query"):
        assert conn.exec_driver_sql("SELECT 2").scalar_one() == 2
    time.sleep(0.05)
    assert "took longer" not in caplog.text
    engine.dispose()

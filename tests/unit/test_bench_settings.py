"""The settings the benchmark work added: the floor switch (off by default) and the per-worker connection cap."""

from __future__ import annotations

import pytest

from cds_service.config import load_settings
from cds_service.errors import ConfigurationError


def test_defaults_keep_the_floor_off_and_gunicorns_connection_cap() -> None:
    settings = load_settings({})
    assert settings.bench_floor is False
    assert settings.worker_connections == 1000  # gunicorn's own default (gunicorn docs, "worker_connections")


def test_environment_sets_them() -> None:
    settings = load_settings({"MGCDS_BENCH_FLOOR": "1", "MGCDS_WORKER_CONNECTIONS": "16"})
    assert settings.bench_floor is True
    assert settings.worker_connections == 16


def test_worker_connections_must_be_positive() -> None:
    with pytest.raises(ConfigurationError, match="MGCDS_WORKER_CONNECTIONS"):
        load_settings({"MGCDS_WORKER_CONNECTIONS": "0"})

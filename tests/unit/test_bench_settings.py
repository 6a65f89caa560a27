"""The settings the benchmark work added: the floor switch (off by default), the per-worker connection cap, and
the listening socket per worker (issue 17)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from cds_service.cli.serve import gunicorn_options, port_in_use, worker_exit
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


def test_reuse_port_is_on_by_default_and_can_be_turned_off() -> None:
    assert load_settings({}).reuse_port is True
    assert load_settings({"MGCDS_REUSE_PORT": "0"}).reuse_port is False


def test_the_gunicorn_options_keep_the_exit_hook_and_the_control_socket(tmp_path: Path) -> None:
    settings = load_settings({"MGCDS_INSTANCE_PATH": str(tmp_path), "MGCDS_PORT": "8123"})
    options = gunicorn_options(settings)
    assert options["worker_class"] == "gthread"
    assert options["reuse_port"] is True
    assert options["worker_exit"] is worker_exit  # the audit writer's last drain at worker exit
    assert options["control_socket"] == str((tmp_path / "gunicorn-8123.ctl").resolve())
    assert options["workers"] == settings.workers
    assert options["threads"] == settings.threads


def test_port_in_use_sees_a_listener_and_a_free_port() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert port_in_use("127.0.0.1", port) is True
    assert port_in_use("127.0.0.1", port) is False

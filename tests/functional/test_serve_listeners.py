"""``mgcds serve`` spreads connections over its workers: one SO_REUSEPORT listening socket per worker (issue 17).

With gunicorn's shared socket the workers accept greedily and a few keep-alive connections can all land on one of
them (measured in docs/performance.md, round 2). Checked here on the real server: each worker listens on a socket
of its own and the master on none; a second service on the same port is refused instead of silently sharing it;
the per-instance control socket is still there; ``MGCDS_REUSE_PORT=0`` gives back the shared socket.
"""

from __future__ import annotations

import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT
from tests.support.served import clean_environment, free_port, serve

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]


def _environment(tmp_path: Path, port: int, **extra: str) -> dict[str, str]:
    return clean_environment(tmp_path / "instance", port, **extra)


@contextmanager
def serving(env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """``mgcds serve --dev`` until the block ends, once both workers listen."""
    with serve(env, dev=True, ready=lambda process: len(set().union(*listeners(env)) - {process.pid}) == 2) as process:
        yield process


def listeners(env: dict[str, str]) -> list[set[int]]:
    """For each listening socket on the port, the pids holding it (`ss -tlnpH`)."""
    listing = subprocess.run(
        ["ss", "-tlnpH", f"( sport = :{env['MGCDS_PORT']} )"], capture_output=True, text=True, check=True
    ).stdout
    holders = []
    for line in listing.splitlines():
        holders.append({int(part.split(",", 1)[0]) for part in line.split("pid=")[1:]})
    return holders


def _ss_available() -> bool:
    try:
        return subprocess.run(["ss", "-V"], capture_output=True, check=False).returncode == 0
    except FileNotFoundError:
        return False


needs_ss = pytest.mark.skipif(not _ss_available(), reason="ss (iproute2) is not installed")


@needs_ss
def test_each_worker_listens_on_its_own_socket_and_the_master_on_none(tmp_path: Path) -> None:
    port = free_port()
    env = _environment(tmp_path, port)
    with serving(env) as master:
        holders = listeners(env)
        assert len(holders) == 2, holders  # one socket per worker
        assert all(len(pids) == 1 for pids in holders), holders
        workers = set().union(*holders)
        assert len(workers) == 2
        assert master.pid not in workers
        control = tmp_path / "instance" / f"gunicorn-{port}.ctl"
        # The master makes its control socket on its own schedule, not before the workers listen: wait for it.
        deadline = time.monotonic() + 10
        while not control.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert stat.S_ISSOCK(control.stat().st_mode)  # the per-instance control socket is still made

        second = subprocess.run(  # noqa: S603 - our own CLI, with our interpreter
            [sys.executable, "-m", "cds_service.cli", "serve", "--dev"],
            cwd=PROJECT_ROOT,
            env={**env, "MGCDS_INSTANCE_PATH": str(tmp_path / "other")},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert second.returncode == 1
        assert f"127.0.0.1:{port} is already in use" in second.stderr
        assert len(listeners(env)) == 2  # the first service kept its sockets, alone


@needs_ss
def test_reuse_port_off_gives_one_socket_shared_by_the_workers(tmp_path: Path) -> None:
    env = _environment(tmp_path, free_port(), MGCDS_REUSE_PORT="0")
    with serving(env) as master:
        holders = listeners(env)
        assert len(holders) == 1, holders
        assert master.pid in holders[0]
        assert len(holders[0]) == 3  # the master and both workers hold the one socket

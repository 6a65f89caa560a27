"""``mgcds serve`` as a real process for tests: started with our interpreter, awaited, and always stopped.

Shared by the tests that need gunicorn itself (its workers, sockets and signals), not the Flask test client.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import requests

from tests.conftest import PROJECT_ROOT

START_SECONDS = 60


def free_port() -> int:
    """A TCP port nothing listens on at this moment (127.0.0.1)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_environment(instance: Path, port: int, **settings: str) -> dict[str, str]:
    """This process's environment without any MGCDS_ setting of the developer's, plus a small two-worker service."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("MGCDS_")}
    env.update(
        MGCDS_INSTANCE_PATH=str(instance),
        MGCDS_PORT=str(port),
        MGCDS_WORKERS="2",
        MGCDS_THREADS="2",
        MGCDS_LOG_LEVEL="WARNING",
        **settings,
    )
    return env


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (gunicorn finishes the calls in flight), then SIGKILL if it does not stop within 30 s."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@contextmanager
def serve(
    env: Mapping[str, str], *, dev: bool, ready: Callable[[subprocess.Popen[bytes]], bool] = lambda _: True
) -> Iterator[subprocess.Popen[bytes]]:
    """``mgcds serve`` until the block ends, once /healthz answers 200 and ``ready(process)`` holds."""
    process = subprocess.Popen(  # noqa: S603 - our own CLI, with our interpreter
        [sys.executable, "-m", "cds_service.cli", "serve", *(["--dev"] if dev else [])],
        cwd=PROJECT_ROOT,
        env=dict(env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{env['MGCDS_PORT']}"
    try:
        deadline = time.monotonic() + START_SECONDS
        while True:
            assert process.poll() is None, "mgcds serve exited"
            try:
                if requests.get(base + "/healthz", timeout=2).status_code == 200 and ready(process):
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "mgcds serve did not become ready"
            time.sleep(0.2)
        yield process
    finally:
        stop(process)

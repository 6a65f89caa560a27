#!/usr/bin/env python3
"""Set everything up and run MgCDS: `python3 scripts/dev.py serve` or `python3 scripts/dev.py test`.

Needs only Python 3.11+. Creates `.venv` in the project, installs the package (with the test tools for `test`),
then serves on 127.0.0.1:8080 in development mode, or runs lint, type checks and the whole test suite. Extra
arguments after `test` go to pytest (e.g. `-k audit`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".mgcds-installed"


def run(*cmd: str | Path, check: bool = True) -> int:
    """Run a command from the project root, echoing it."""
    print("+", " ".join(str(c) for c in cmd), flush=True)
    return subprocess.run([str(c) for c in cmd], cwd=ROOT, check=check).returncode  # noqa: S603


def ensure_venv(extras: str) -> None:
    """Create the virtual environment and install the project when pyproject.toml changed since last time."""
    if sys.version_info < (3, 11):  # noqa: UP036 - this script runs before anything else checks the version
        sys.exit(f"MgCDS needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    if not (BIN / "python").exists():
        venv.EnvBuilder(with_pip=True).create(VENV)
    wanted = f"{extras}:{(ROOT / 'pyproject.toml').stat().st_mtime_ns}"
    if STAMP.exists() and STAMP.read_text() == wanted:
        return
    target = f".[{extras}]" if extras else "."
    run(BIN / "python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-e", target)
    STAMP.write_text(wanted)


def ensure_chromium() -> None:
    """Install Debian's Chromium for the browser tests when we can (root with apt); else they skip, saying why."""
    if Path("/usr/bin/chromium").exists():
        return
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        print(
            "note: /usr/bin/chromium absent and not installable here; browser tests will be skipped",
            flush=True,
        )
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        print("+", " ".join(cmd), flush=True)
        if subprocess.run(cmd, env=env, check=False).returncode != 0:  # noqa: S603
            print("note: could not install chromium; browser tests will be skipped", flush=True)
            return


def serve(extra: list[str]) -> int:
    """Install and start the service on 127.0.0.1:8080 in development mode."""
    ensure_venv("")
    os.chdir(ROOT)
    cmd = [str(BIN / "mgcds"), "serve", "--dev", "--host", "127.0.0.1", "--port", "8080", *extra]
    os.execv(cmd[0], cmd)  # noqa: S606 - replace this process: Ctrl-C goes straight to the server


def test(extra: list[str]) -> int:
    """Install everything and run lint, type checks and the whole test suite."""
    ensure_venv("dev")
    ensure_chromium()
    run(BIN / "ruff", "check", ".")
    run(BIN / "ruff", "format", "--check", ".")
    run(BIN / "mypy")
    run(BIN / "mgcds", "terminology", "check")
    return run(BIN / "python", "-m", "pytest", *extra, check=False)


def main() -> int:
    """Dispatch `serve` or `test`."""
    if len(sys.argv) < 2 or sys.argv[1] not in {"serve", "test"}:
        print(__doc__, file=sys.stderr)
        return 2
    command, extra = sys.argv[1], sys.argv[2:]
    try:
        return serve(extra) if command == "serve" else test(extra)
    except subprocess.CalledProcessError as exc:
        print(f"failed: {' '.join(map(str, exc.cmd))} (exit {exc.returncode})", file=sys.stderr)
        return exc.returncode or 1


if __name__ == "__main__":
    sys.exit(main())

"""A real OAuth 2 authorization server and a token-checking FHIR gateway on loopback (``smart_auth/stack.mjs``).

``smart_auth/`` is a small npm project with its own lock file (oidc-provider, jose). Like the FHIR server's, it is
installed by the fixture itself with ``npm ci`` (again only when the lock file changed), and the fixture fails
loudly when npm or the registry is unavailable: CI must not skip these tests silently. It runs on the Node 22 that
the FHIR server's install brings (``node_executable()``).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest
import requests

from tests.integration.conftest import FhirTestServer, node_executable
from tests.support.loopback import JsonHandler, serve_on_loopback

SMART_AUTH_DIR = Path(__file__).resolve().parent / "smart_auth"
NPM_TIMEOUT_SECONDS = 300.0
START_TIMEOUT_SECONDS = 30.0


def ensure_npm_project(directory: Path) -> None:
    """``npm ci`` in ``directory`` unless node_modules matches its lock file; fail the test loudly if it cannot."""
    lock = directory / "package-lock.json"
    stamp = directory / "node_modules" / ".mgcds-lock-sha256"
    digest = hashlib.sha256(lock.read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text(encoding="utf-8").strip() == digest:
        return
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail(f"npm is not on PATH: it is needed to install {directory}")
    try:
        completed = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=NPM_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"npm ci in {directory} took longer than {NPM_TIMEOUT_SECONDS:.0f} s (registry reachable?)")
    if completed.returncode != 0:
        pytest.fail(f"npm ci in {directory} failed (registry reachable?):\n{completed.stderr[-2000:]}")
    stamp.write_text(digest + "\n", encoding="utf-8")


@contextmanager
def serving_jwks(documents: dict[str, dict[str, Any]]) -> Iterator[str]:
    """Serve ``{path: JWK Set}`` on 127.0.0.1 (the client's JWKS URL, as registered with an EHR); yields the base."""

    class Handler(JsonHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            document = documents.get(self.path)
            if document is None:
                self.send_json(404, {"error": "not found"})
            else:
                self.send_json(200, document, "application/jwk-set+json")

    with serve_on_loopback(Handler) as port:
        yield f"http://127.0.0.1:{port}"


@dataclass
class SmartStack:
    """The running stack: the authorization server's URL, the protected FHIR base, and test-only controls."""

    process: subprocess.Popen[str]
    stderr_file: IO[str]
    issuer: str
    fhir_base: str
    admin_token: str

    def _admin(self, method: str, path: str) -> dict[str, Any]:
        origin = self.fhir_base.removesuffix("/fhir")
        response = requests.request(
            method, f"{origin}/_test/{path}", headers={"X-Test-Admin": self.admin_token}, timeout=10
        )
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    def stats(self) -> dict[str, int]:
        """Counters: token_requests, tokens_issued, token_errors, fhir_requests, fhir_forwarded, fhir_401/403."""
        return {key: int(value) for key, value in self._admin("GET", "stats").items()}

    def revoke_seen(self) -> None:
        """Refuse every access token the gateway has accepted so far (a revocation the client does not know of)."""
        self._admin("POST", "revoke-seen")

    def stderr(self) -> str:
        """What the Node process wrote to stderr (for a failing test's message)."""
        self.stderr_file.seek(0)
        return self.stderr_file.read()

    def stop(self) -> None:
        """Terminate the Node process (by its own pid) and wait for it."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.stderr_file.close()


def start_smart_stack(upstream: FhirTestServer, clients: list[dict[str, Any]], work_dir: Path) -> SmartStack:
    """Install if needed and start the authorization server and gateway in front of ``upstream``."""
    ensure_npm_project(SMART_AUTH_DIR)
    clients_file = work_dir / "clients.json"
    clients_file.write_text(json.dumps({"clients": clients}), encoding="utf-8")
    admin_token = secrets.token_urlsafe(24)
    # stderr goes to a temporary file: an unread pipe could fill up and block the server.
    stderr_file = tempfile.TemporaryFile(mode="w+", encoding="utf-8")  # noqa: SIM115 - closed in stop()
    process = subprocess.Popen(
        [node_executable(), "stack.mjs", "--upstream", upstream.base_url, "--clients", str(clients_file)],
        cwd=SMART_AUTH_DIR,
        env={**os.environ, "UPSTREAM_TOKEN": upstream.token, "ADMIN_TOKEN": admin_token},
        stdout=subprocess.PIPE,
        stderr=stderr_file,
        text=True,
    )
    ports: dict[str, int] = {}
    ready = threading.Event()

    def read_ports() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            name, _, value = line.strip().partition(" ")
            if name in ("AS", "FHIR"):
                ports[name] = int(value)
            elif name == "READY":
                ready.set()
                return

    threading.Thread(target=read_ports, daemon=True).start()
    stack = SmartStack(process, stderr_file, "", "", admin_token)
    if not ready.wait(START_TIMEOUT_SECONDS):
        output = stack.stderr()
        stack.stop()
        pytest.fail(f"the SMART test stack did not start within {START_TIMEOUT_SECONDS:.0f} s:\n{output[-2000:]}")
    stack.issuer = f"http://127.0.0.1:{ports['AS']}"
    stack.fhir_base = f"http://127.0.0.1:{ports['FHIR']}/fhir"
    return stack

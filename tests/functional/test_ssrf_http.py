"""Issue 6 item 3 over HTTP: a request naming a fhirServer the caller may not use gets 400 and makes no request.

"No request" is proved twice: a FHIR server on 127.0.0.1 that counts every TCP connection it accepts, and a spy on
``socket.socket.connect`` that sees any outbound connection attempt of the process (to any address) while the
request is handled. Expected answers: issue 6 item 3 and docs/security.md (400 ``fhir_server_not_allowed``).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.functional.conftest import EXAMPLE_NOW, load_example
from tests.support.secured_app import SecuredApp, es384_signing_key, secured_app
from tests.support.security import CountingFhirServer, SigningKey, counting_fhir_server

pytestmark = pytest.mark.timeout(30)

PV = "/cds-services/mg-patient-view"
FHIR_TOKEN = "fhir-access-token-for-the-ehr-0123456789"
ALLOWLISTED = "https://ehr.example.org/fhir"


@dataclass
class Outbound:
    """Every connection attempt and name lookup the process made while recording."""

    connections: list[Any] = field(default_factory=list)
    lookups: list[str] = field(default_factory=list)
    recording: bool = False


@pytest.fixture
def outbound(monkeypatch: pytest.MonkeyPatch) -> Outbound:
    """Spy on socket.connect and getaddrinfo (calls pass through: the spy only records)."""
    spy = Outbound()
    real_connect = socket.socket.connect
    real_getaddrinfo = socket.getaddrinfo

    def connect(self: socket.socket, address: Any) -> None:
        if spy.recording:
            spy.connections.append(address)
        real_connect(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if spy.recording:
            spy.lookups.append(str(host))
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return spy


@pytest.fixture(scope="module")
def key() -> SigningKey:
    """The EHR's ES384 key."""
    return es384_signing_key()


@pytest.fixture
def fhir_server() -> Iterator[CountingFhirServer]:
    """A FHIR server on 127.0.0.1 holding the example patient's data, counting connections."""
    with counting_fhir_server() as server:
        example = load_example("patient-view-request.json")
        for name, value in example["prefetch"].items():
            if name == "patient":
                server.peer.add(value)
            else:
                server.peer.add(*(entry["resource"] for entry in value.get("entry", [])))
        yield server


def request_naming(fhir_server: str, *, with_prefetch: bool = False) -> dict[str, Any]:
    """The example patient-view request naming ``fhir_server`` with an access token for it."""
    body = load_example("patient-view-request.json")
    if not with_prefetch:
        body.pop("prefetch")
    body["fhirServer"] = fhir_server
    body["fhirAuthorization"] = {
        "access_token": FHIR_TOKEN,
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "patient/*.read",
        "subject": "mgcds",
    }
    return body


def call(app: SecuredApp, body: dict[str, Any], spy: Outbound) -> Any:
    token = app.token(PV)  # minted before recording: signing makes no connection, but keep the window tight
    spy.recording = True
    try:
        return app.post(PV, body, token)
    finally:
        spy.recording = False


@pytest.fixture
def production(tmp_path: Path, key: SigningKey, fhir_server: CountingFhirServer) -> Iterator[SecuredApp]:
    """dev=False; the registry allowlists a public https server, the metadata address (to prove it stays refused),
    localhost without the private-network opt-in, and the loopback counting server (http) with the opt-in."""
    servers: list[Any] = [
        ALLOWLISTED,
        "https://169.254.169.254/latest",
        "https://localhost/fhir",
        {"url": fhir_server.base_url, "allow_private_network": True},
    ]
    with secured_app(tmp_path, [key], fhir_servers=servers, clock=lambda: EXAMPLE_NOW) as app:
        yield app


REFUSED_IN_PRODUCTION = {
    "cloud-metadata-allowlisted-still-link-local": "https://169.254.169.254/latest",
    "cloud-metadata-plain": "http://169.254.169.254/latest/meta-data/",
    "loopback-ip": "https://127.0.0.1/fhir",
    "private-10": "https://10.0.0.1/fhir",
    "name-resolving-to-loopback": "https://localhost/fhir",
    "file-scheme": "file:///etc/passwd",
    "gopher-scheme": "gopher://127.0.0.1:6379/_INFO",
    "http-outside-dev": "http://ehr.example.org/fhir",
    "allowlisted-loopback-but-http": "COUNTING",
    "not-allowlisted-https": "https://evil.example.net/fhir",
    "suffix-trick": "https://ehr.example.org.evil.example.net/fhir",
    "credentials-trick": "https://ehr.example.org@evil.example.net/fhir",
    "sibling-path": "https://ehr.example.org/fhir2",
    "dot-segments": "https://ehr.example.org/fhir/../admin",
    "other-port": "https://ehr.example.org:8443/fhir",
    "ipv4-mapped-loopback": "https://[::ffff:127.0.0.1]/fhir",
}


@pytest.mark.parametrize("with_prefetch", [False, True], ids=["no-prefetch", "with-prefetch"])
@pytest.mark.parametrize("case", sorted(REFUSED_IN_PRODUCTION))
def test_a_forbidden_fhir_server_is_400_with_zero_outbound_connections(
    production: SecuredApp, fhir_server: CountingFhirServer, outbound: Outbound, case: str, with_prefetch: bool
) -> None:
    target = REFUSED_IN_PRODUCTION[case]
    target = fhir_server.base_url if target == "COUNTING" else target
    response = call(production, request_naming(target, with_prefetch=with_prefetch), outbound)
    assert response.status_code == 400, response.get_json()
    body = response.get_json()
    assert body["error"] == "fhir_server_not_allowed"
    assert body["field"] == "fhirServer"
    assert FHIR_TOKEN not in response.get_data(as_text=True)
    assert outbound.connections == []
    assert fhir_server.connections == 0


@pytest.mark.parametrize(
    "target", ["https://evil.example.net/fhir", "https://ehr.example.org.evil.example.net/fhir", "file:///etc/passwd"]
)
def test_a_host_off_the_allowlist_is_not_even_resolved(production: SecuredApp, outbound: Outbound, target: str) -> None:
    """The allowlist is checked before DNS: an attacker's name never reaches our resolver (no DNS exfiltration)."""
    response = call(production, request_naming(target), outbound)
    assert response.status_code == 400
    assert outbound.lookups == []


def test_only_the_name_is_resolved_for_an_allowlisted_host_that_is_refused(
    production: SecuredApp, outbound: Outbound
) -> None:
    response = call(production, request_naming("https://localhost/fhir"), outbound)
    assert response.status_code == 400
    assert "loopback" in response.get_json()["message"]
    assert outbound.lookups == ["localhost"]
    assert outbound.connections == []


# --- dev mode with a registry: http allowed, the allowlist and its opt-in still decide --------------------------------


@pytest.fixture
def dev_with_registry(
    tmp_path: Path, key: SigningKey, fhir_server: CountingFhirServer
) -> Iterator[tuple[SecuredApp, CountingFhirServer]]:
    """dev=True but with a registry: JWTs are still required; http is allowed. The counting server is allowlisted
    by its loopback IP with the opt-in; the same server named `localhost` is allowlisted without it."""
    port_base = fhir_server.base_url.replace("127.0.0.1", "localhost")
    servers: list[Any] = [{"url": fhir_server.base_url, "allow_private_network": True}, port_base]
    with secured_app(tmp_path, [key], fhir_servers=servers, dev=True, clock=lambda: EXAMPLE_NOW) as app:
        yield app, fhir_server


def test_an_allowlisted_loopback_server_with_the_opt_in_is_fetched(
    dev_with_registry: tuple[SecuredApp, CountingFhirServer], outbound: Outbound
) -> None:
    app, server = dev_with_registry
    response = call(app, request_naming(server.base_url), outbound)
    assert response.status_code == 200, response.get_json()
    assert server.connections > 0
    assert any(path.startswith("/fhir/Patient/example-mg-1") for path in server.peer.paths())
    assert all(auth == f"Bearer {FHIR_TOKEN}" for _, auth in server.peer.requests)
    codes = [c["extension"]["org.mgcds.recommendation"] for c in response.get_json()["cards"]]
    assert codes == ["test-serum-mg"]  # the same data as the prefetched example (examples/README.md)


def test_an_allowlisted_loopback_name_without_the_opt_in_is_refused(
    dev_with_registry: tuple[SecuredApp, CountingFhirServer], outbound: Outbound
) -> None:
    app, server = dev_with_registry
    target = server.base_url.replace("127.0.0.1", "localhost")
    response = call(app, request_naming(target), outbound)
    assert response.status_code == 400
    assert response.get_json()["error"] == "fhir_server_not_allowed"
    assert server.connections == 0
    assert outbound.connections == []


def test_dev_mode_with_a_registry_still_requires_a_jwt(
    dev_with_registry: tuple[SecuredApp, CountingFhirServer],
) -> None:
    app, server = dev_with_registry
    response = app.post(PV, request_naming(server.base_url))
    assert response.status_code == 401
    assert server.connections == 0


def test_a_redirect_to_another_host_is_not_followed(
    dev_with_registry: tuple[SecuredApp, CountingFhirServer], outbound: Outbound
) -> None:
    app, server = dev_with_registry
    with counting_fhir_server() as elsewhere:
        server.redirects["/fhir/"] = elsewhere.base_url + "/Patient/example-mg-1"
        response = call(app, request_naming(server.base_url), outbound)
        assert response.status_code == 400, response.get_json()
        assert response.get_json()["message"] == "redirect outside the allowlisted FHIR base rejected"
        assert elsewhere.connections == 0
        assert server.connections > 0
        ports = {address[1] for address in outbound.connections if isinstance(address, tuple)}
        assert int(elsewhere.base_url.split(":")[2].split("/")[0]) not in ports

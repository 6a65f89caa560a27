"""Issue 16 B1, B2 and pinning: one egress guard for every URL the FHIR client requests, over real HTTP on loopback.

Each test stands a hostile server (tests/support/hostile_fhir.py) and asserts what it, or a second "attacker"
server, received: the EHR's token must reach only URLs under the vetted FHIR base (docs/security.md, "Egress").
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import requests

from cds_service.errors import FhirBadResponse, FhirServerNotAllowed, FhirUnreachable
from cds_service.fhir.client import FhirClient
from cds_service.fhir.egress import OperatorEgress
from cds_service.security.fhir_allowlist import FhirServerPolicy
from cds_service.security.issuers import IssuerRegistry
from tests.support.hostile_fhir import HostileHandler, HostileServer, hostile_server, make_loopback_ca, twin_servers

pytestmark = pytest.mark.timeout(60)

TOKEN = "ehr-access-token-0123456789"
PATIENT = {"resourceType": "Patient", "id": "p1"}


def _bundle(*, next_url: str | None = None, ids: Sequence[str] = ("o1",)) -> dict[str, Any]:
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": {"resourceType": "Observation", "id": i}} for i in ids],
    }
    if next_url is not None:
        bundle["link"] = [{"relation": "next", "url": next_url}]
    return bundle


def _answer(body: Any, status: int = 200) -> Callable[[HostileHandler], None]:
    return lambda handler: handler.send_json(status, body)


@pytest.fixture
def server() -> Iterator[HostileServer]:
    with hostile_server() as s:
        yield s


@pytest.fixture
def attacker() -> Iterator[HostileServer]:
    """Another server on loopback: it must never see a request (least of all the token)."""
    with hostile_server() as s:
        s.routes["/"] = _answer(_bundle(ids=("stolen",)))
        yield s


@pytest.fixture
def client() -> Iterator[FhirClient]:
    """The client as development mode builds it (loopback allowed, http allowed): the path rules are what is tested."""
    c = FhirClient(timeout_seconds=5, cache_ttl_seconds=0, egress=FhirServerPolicy(None, dev=True))
    yield c
    c.close()


def test_b1_a_prefetched_bundles_next_link_elsewhere_is_not_fetched_with_the_token(
    server: HostileServer, attacker: HostileServer, client: FhirClient
) -> None:
    """B1: the next link of a Bundle in the caller's prefetch was fetched with the EHR's token, unchecked."""
    for link in (
        attacker.base_url + "/Observation?page=2",  # another port
        server.origin + "/admin/export",  # same host, outside the base
        server.base_url + "/../admin/export",
        server.base_url + "/..;/admin/export",
        "http://169.254.169.254/latest/meta-data/",
    ):
        prefetched = _bundle(next_url=link, ids=("o1", "o2"))
        result = client.continue_bundle(server.base_url, prefetched, TOKEN)
        assert [r["id"] for r in result.resources] == ["o1", "o2"], link  # what the EHR sent is still used
        assert result.truncated == "next link leaves the FHIR server's base; not followed", link
    assert attacker.requests == []
    assert server.requests == []


def test_a_prefetched_bundles_next_link_under_the_base_is_followed(server: HostileServer, client: FhirClient) -> None:
    server.routes["/fhir/Observation"] = _answer(_bundle(ids=("o3",)))
    result = client.continue_bundle(server.base_url, _bundle(next_url=server.base_url + "/Observation?page=2"), TOKEN)
    assert [r["id"] for r in result.resources] == ["o1", "o3"]
    assert [(seen.path, seen.authorization) for seen in server.requests] == [
        ("/fhir/Observation?page=2", f"Bearer {TOKEN}")
    ]


@pytest.mark.parametrize(
    "location",
    ["/admin/secret", "/fhir/..;/admin/secret", "/fhir/%2e%2e/admin/secret", "/fhir2/Patient/p1", "ATTACKER"],
)
def test_b2_a_redirect_out_of_the_base_is_refused_before_it_is_followed(
    server: HostileServer, attacker: HostileServer, client: FhirClient, location: str
) -> None:
    """B2: a same-host redirect from /fhir to /admin was followed with the token."""
    target = attacker.base_url + "/Patient/p1" if location == "ATTACKER" else location
    server.routes["/fhir/Patient/p1"] = lambda handler: handler.redirect(target)
    server.routes["/admin"] = _answer(PATIENT)
    server.routes["/fhir2"] = _answer(PATIENT)
    with pytest.raises(FhirServerNotAllowed, match="redirect outside the allowlisted FHIR base rejected"):
        client.read(server.base_url, "Patient/p1", TOKEN)
    assert server.paths() == ["/fhir/Patient/p1"]
    assert attacker.requests == []


def test_a_redirect_within_the_base_is_followed(server: HostileServer, client: FhirClient) -> None:
    server.routes["/fhir/Patient/p1"] = lambda handler: handler.redirect("/fhir/Patient/p1-moved")
    server.routes["/fhir/Patient/p1-moved"] = _answer(PATIENT)
    assert client.read(server.base_url, "Patient/p1", TOKEN) == PATIENT
    assert server.paths() == ["/fhir/Patient/p1", "/fhir/Patient/p1-moved"]


@pytest.mark.parametrize(
    "link", ["/admin/x", "/fhir/..;/admin/x", "/fhir/%2e%2e/admin/x", "/fhir/%2fadmin", "//127.0.0.2/fhir/x"]
)
def test_b2_a_servers_next_link_out_of_the_base_is_not_followed(
    server: HostileServer, client: FhirClient, link: str
) -> None:
    server.routes["/fhir/Observation"] = _answer(_bundle(next_url=link))
    server.routes["/admin"] = _answer(_bundle(ids=("admin",)))
    result = client.search(server.base_url, "Observation?patient=p1", TOKEN)
    assert [r["id"] for r in result.resources] == ["o1"]
    assert result.truncated == "next link leaves the FHIR server's base; not followed"
    assert server.paths() == ["/fhir/Observation?patient=p1"]


@pytest.mark.parametrize(
    "relative",
    [
        "Patient/..",
        "Patient/.",
        "Medication/../../admin/x",
        "Patient/p1?_include=*",
        "Patient/p1;x",
        "Patient/p1\n",
        "",
    ],
)
def test_b2_a_reference_that_is_not_type_slash_id_is_not_fetched(
    server: HostileServer, client: FhirClient, relative: str
) -> None:
    """``Patient/..`` would read the FHIR base itself; an id is never a path."""
    server.routes["/"] = _answer(PATIENT)
    with pytest.raises(FhirBadResponse, match="not a FHIR Type/id reference"):
        client.read(server.base_url, relative, TOKEN)
    assert server.requests == []


def test_the_vetted_address_is_the_one_connected_to_even_when_dns_answers_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Rebinding: the name is vetted at 127.0.0.1; a second lookup (requests' own) would say 127.0.0.2.

    The client resolves once, through the policy, and connects to what was vetted: the server on 127.0.0.2 never
    sees the token. Before pinning, requests resolved the name again and went wherever that answer said.
    """
    vetted_lookups: list[str] = []

    def vetting_resolver(host: str) -> Sequence[str]:
        vetted_lookups.append(host)
        return ["127.0.0.1"]

    real_getaddrinfo = socket.getaddrinfo

    def rebound(host: Any, *args: Any, **kwargs: Any) -> Any:
        return real_getaddrinfo("127.0.0.2" if host == "fhir.test" else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebound)
    with twin_servers() as (good, evil):
        good.routes["/fhir/Patient/p1"] = _answer(PATIENT)
        evil.routes["/"] = _answer({"resourceType": "Patient", "id": "evil"})
        client = FhirClient(cache_ttl_seconds=0, egress=FhirServerPolicy(None, dev=True, resolver=vetting_resolver))
        try:
            assert client.read(f"http://fhir.test:{good.port}/fhir", "Patient/p1", TOKEN) == PATIENT
        finally:
            client.close()
        assert evil.requests == []
        assert [(seen.authorization, seen.host) for seen in good.requests] == [
            (f"Bearer {TOKEN}", f"fhir.test:{good.port}")  # the URL and Host header keep the name
        ]
    assert vetted_lookups == ["fhir.test"]


def test_a_name_that_resolves_to_a_refused_address_is_not_connected(server: HostileServer) -> None:
    """The policy's address checks hold for every request, not only for the fhirServer check."""
    server.routes["/"] = _answer(PATIENT)
    client = FhirClient(egress=FhirServerPolicy(None, dev=True, resolver=lambda host: ["169.254.169.254"]))
    try:
        with pytest.raises(FhirServerNotAllowed, match="link-local"):
            client.read(f"http://fhir.test:{server.port}/fhir", "Patient/p1", TOKEN)
    finally:
        client.close()
    assert server.connections == 0


def test_https_through_the_pinned_connection_keeps_sni_and_the_certificate_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pinning changes only the address: SNI and certificate verification still use the name."""
    for variable in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):  # requests lets these override session.verify
        monkeypatch.delenv(variable, raising=False)
    ca = make_loopback_ca(tmp_path / "tls", "fhir.test")
    with hostile_server(tls=ca.server_context) as tls_server:
        tls_server.routes["/fhir/Patient/p1"] = _answer(PATIENT)
        session = requests.Session()
        session.verify = str(ca.ca_file)
        client = FhirClient(session, egress=OperatorEgress(resolver=lambda host: ["127.0.0.1"]))
        try:
            assert client.read(f"https://fhir.test:{tls_server.port}/fhir", "Patient/p1", TOKEN) == PATIENT
            # The same server under a name its certificate does not carry: refused by the TLS check.
            with pytest.raises(FhirUnreachable):
                client.read(f"https://other.test:{tls_server.port}/fhir", "Patient/p1", TOKEN)
        finally:
            client.close()
        assert tls_server.sni[:2] == ["fhir.test", "other.test"]
        assert [seen.path for seen in tls_server.requests] == ["/fhir/Patient/p1"]


def test_a_connection_nobody_vetted_is_not_made(server: HostileServer) -> None:
    """The pinned transport refuses any request made outside the client's vetting (fail closed)."""
    server.routes["/"] = _answer(PATIENT)
    client = FhirClient()
    try:
        with pytest.raises(requests.ConnectionError, match="no vetted address"):
            client.session.get(server.base_url + "/Patient/p1", timeout=5)
    finally:
        client.close()
    assert server.connections == 0


def test_production_policy_refuses_http_and_unlisted_bases_for_every_url(tmp_path: Path) -> None:
    """Outside dev mode the egress rules refuse plain http and any base no issuer allowlisted, whatever the URL."""
    (tmp_path / "jwks.json").write_text('{"keys": []}')
    registry = IssuerRegistry.from_mapping(
        {"https://ehr.example.org": {"jwks_file": "jwks.json", "fhir_servers": ["https://ehr.example.org/fhir"]}},
        base_dir=tmp_path,
    )
    policy = FhirServerPolicy(registry, dev=False, resolver=lambda host: ["93.184.216.34"])
    target = policy.egress_target("https://ehr.example.org/fhir/Patient/1", "https://ehr.example.org/fhir")
    assert policy.vetted_addresses(target) == ("93.184.216.34",)
    with pytest.raises(FhirServerNotAllowed, match="https is required"):
        policy.egress_target("http://ehr.example.org/fhir/Patient/1", "http://ehr.example.org/fhir")
    with pytest.raises(FhirServerNotAllowed, match="not allowlisted"):
        policy.egress_target("https://evil.example.net/fhir/Patient/1", "https://evil.example.net/fhir")
    with pytest.raises(FhirServerNotAllowed, match="not under the FHIR base"):
        policy.egress_target("https://ehr.example.org/admin", "https://ehr.example.org/fhir")

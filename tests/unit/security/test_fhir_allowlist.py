"""fhirServer allowlist (issue 6 item 3, SSRF): which servers the service may send the EHR's token to.

Expected answers come from the issue's rules: allowlisted for the calling issuer (prefix at a path boundary),
https outside dev mode, no link-local/loopback/private/multicast/reserved/unspecified address after resolution
unless explicitly allowlisted, file:// and other schemes refused, redirects only within the same server. Every
rejection must happen without any outbound connection: a guard fails the test if anything calls connect().
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import Any

import pytest

from cds_service.errors import FhirServerNotAllowed, FhirUnreachable
from cds_service.security.fhir_allowlist import FhirServerPolicy, normalise_url
from cds_service.security.identity import CallerIdentity
from cds_service.security.issuers import IssuerRegistry
from tests.unit.security.conftest import ISSUER, Listener

OTHER_ISSUER = "https://other-ehr.example.com"
PUBLIC_IP = "93.184.216.34"  # a globally routable documentation-era address (example.com)


class FakeResolver:
    """Host name -> addresses, counting lookups; unknown names fail like a DNS miss."""

    def __init__(self, table: dict[str, Sequence[str]]) -> None:
        self.table = table
        self.lookups: list[str] = []

    def __call__(self, host: str) -> Sequence[str]:
        self.lookups.append(host)
        if host not in self.table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return self.table[host]


@pytest.fixture
def no_connections(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Any socket connect() during the test is recorded and refused."""
    attempts: list[Any] = []

    def refuse(self: socket.socket, address: Any) -> None:
        attempts.append(address)
        raise AssertionError(f"outbound connection attempted to {address!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    return attempts


@pytest.fixture
def resolver() -> FakeResolver:
    """DNS for the tests: public, rebound-to-loopback, internal, metadata and mixed names."""
    return FakeResolver(
        {
            "ehr.example.org": [PUBLIC_IP],
            "fhir.hospital.internal": ["10.1.2.3"],
            "localhost": ["127.0.0.1", "::1"],
        }
    )


@pytest.fixture
def registry() -> IssuerRegistry:
    """ISSUER may name its public FHIR server, an internal one marked private-OK and one by IP literal."""
    return IssuerRegistry.from_mapping(
        {
            ISSUER: {
                "jwks_url": "https://ehr.example.org/jwks",
                "fhir_servers": [
                    "https://ehr.example.org/fhir/",
                    {"url": "https://fhir.hospital.internal/r4", "allow_private_network": True},
                    "https://10.20.30.40/fhir",
                ],
            },
            OTHER_ISSUER: {
                "jwks_url": "https://other-ehr.example.com/jwks",
                "fhir_servers": ["https://other-ehr.example.com/fhir"],
            },
        }
    )


CALLER = CallerIdentity(issuer=ISSUER, subject=None, tenant=None, jti="j", key_id="k")
OTHER_CALLER = CallerIdentity(issuer=OTHER_ISSUER, subject=None, tenant=None, jti="j2", key_id="k")


@pytest.fixture
def policy(registry: IssuerRegistry, resolver: FakeResolver) -> FhirServerPolicy:
    """Production policy: registry, not dev."""
    return FhirServerPolicy(registry, dev=False, resolver=resolver)


@pytest.fixture
def dev_policy(resolver: FakeResolver) -> FhirServerPolicy:
    """Dev mode without a registry."""
    return FhirServerPolicy(None, dev=True, resolver=resolver)


@pytest.mark.parametrize(
    "url",
    [
        "https://ehr.example.org/fhir",
        "https://ehr.example.org/fhir/",
        "https://ehr.example.org/fhir/r4",
        "https://EHR.Example.ORG:443/fhir",
        "https://ehr.example.org./fhir",
        "https://fhir.hospital.internal/r4",
        "https://10.20.30.40/fhir/r4",
    ],
)
def test_allowlisted_servers_pass(policy: FhirServerPolicy, no_connections: list[Any], url: str) -> None:
    policy.check(url, CALLER)
    assert no_connections == []


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("https://169.254.169.254/latest/meta-data/", "not allowlisted"),
        ("https://127.0.0.1/fhir", "not allowlisted"),
        ("https://10.0.0.1/fhir", "not allowlisted"),
        ("https://[::1]/fhir", "not allowlisted"),
        ("https://localhost/fhir", "not allowlisted"),
        ("file:///etc/passwd", "scheme"),
        ("gopher://ehr.example.org/fhir", "scheme"),
        ("ftp://ehr.example.org/fhir", "scheme"),
        ("http://ehr.example.org/fhir", "https is required"),
        ("https://evil.example.net/fhir", "not allowlisted"),
        ("https://ehr.example.org.evil.net/fhir", "not allowlisted"),
        ("https://ehr.example.org/fhir2", "not allowlisted"),
        ("https://ehr.example.org/fhirx/Patient", "not allowlisted"),
        ("https://ehr.example.org/", "not allowlisted"),
        ("https://ehr.example.org:8443/fhir", "not allowlisted"),
        ("https://ehr.example.org/fhir/../admin", "dot segments"),
        ("https://ehr.example.org/fhir/%2e%2e/admin", "an encoded dot"),
        ("https://ehr.example.org/fhir%2f..%2fadmin", "an encoded dot, slash"),
        ("https://user:pw@ehr.example.org/fhir", "credentials"),
        ("https://ehr.example.org@evil.net/fhir", "credentials"),
        ("https://ehr.example.org/fhir?x=1", "query"),
        ("https://ehr.example.org/fhir\\..\\admin", "backslash"),
        ("https://ehr.example.org/fhir\n", "whitespace"),
        ("https:///fhir", "no host"),
        ("", "not a URL"),
        ("https://other-ehr.example.com/fhir", "not allowlisted"),
    ],
)
def test_rejected_without_connecting(
    policy: FhirServerPolicy, no_connections: list[Any], resolver: FakeResolver, url: str, why: str
) -> None:
    with pytest.raises(FhirServerNotAllowed) as caught:
        policy.check(url, CALLER)
    assert why in caught.value.message
    assert caught.value.status == 400
    assert no_connections == []
    assert resolver.lookups == [], "rejected before any DNS lookup"


@pytest.mark.parametrize(
    ("addresses", "kind"),
    [
        (["169.254.169.254"], "link-local"),
        (["127.0.0.1"], "loopback"),
        (["::1"], "loopback"),
        (["::ffff:127.0.0.1"], "loopback"),
        (["10.0.0.1"], "private"),
        (["192.168.0.10"], "private"),
        ([PUBLIC_IP, "10.0.0.1"], "private"),
        (["fe80::1%eth0"], "link-local"),
        (["224.0.0.1"], "multicast"),
        (["0.0.0.0"], "unspecified"),  # noqa: S104 - the address under test, not a bind
        (["240.0.0.1"], "reserved"),
    ],
)
def test_allowlisted_name_resolving_to_a_non_public_address_is_rejected(
    policy: FhirServerPolicy,
    resolver: FakeResolver,
    no_connections: list[Any],
    addresses: list[str],
    kind: str,
) -> None:
    """DNS rebinding: the allowlisted host name suddenly points inside the network."""
    resolver.table["ehr.example.org"] = addresses
    with pytest.raises(FhirServerNotAllowed) as caught:
        policy.check("https://ehr.example.org/fhir", CALLER)
    assert kind in caught.value.message
    assert no_connections == []


def test_private_network_opt_in_never_admits_link_local(policy: FhirServerPolicy, resolver: FakeResolver) -> None:
    resolver.table["fhir.hospital.internal"] = ["169.254.169.254"]
    with pytest.raises(FhirServerNotAllowed, match="link-local"):
        policy.check("https://fhir.hospital.internal/r4", CALLER)


def test_unresolvable_host_fails_closed(policy: FhirServerPolicy, resolver: FakeResolver) -> None:
    del resolver.table["ehr.example.org"]
    with pytest.raises(FhirUnreachable):
        policy.check("https://ehr.example.org/fhir", CALLER)


def test_allowlist_is_per_issuer(policy: FhirServerPolicy) -> None:
    with pytest.raises(FhirServerNotAllowed, match="not allowlisted"):
        policy.check("https://ehr.example.org/fhir", OTHER_CALLER)


def test_no_caller_no_fetch(policy: FhirServerPolicy) -> None:
    with pytest.raises(FhirServerNotAllowed, match="no authenticated caller"):
        policy.check("https://ehr.example.org/fhir", None)


def test_no_registry_outside_dev_allows_nothing(resolver: FakeResolver) -> None:
    with pytest.raises(FhirServerNotAllowed, match="no trusted issuer registry"):
        FhirServerPolicy(None, dev=False, resolver=resolver).check("https://ehr.example.org/fhir", CALLER)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/fhir",
        "http://localhost:8080/fhir",
        "http://[::1]:8080/fhir",
        "https://ehr.example.org/fhir",
    ],
)
def test_dev_without_registry_allows_http_and_loopback(dev_policy: FhirServerPolicy, url: str) -> None:
    dev_policy.check(url, None)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[fe80::1]/fhir", "link-local"),
        ("http://10.0.0.1/fhir", "private"),
        ("http://0.0.0.0:8080/fhir", "unspecified"),
        ("file:///etc/passwd", "scheme"),
    ],
)
def test_dev_still_refuses_metadata_private_and_files(
    dev_policy: FhirServerPolicy, no_connections: list[Any], url: str, why: str
) -> None:
    with pytest.raises(FhirServerNotAllowed, match=why):
        dev_policy.check(url, None)
    assert no_connections == []


def test_rejections_make_no_connection_to_a_real_listener(
    registry: IssuerRegistry, resolver: FakeResolver, listener: Listener
) -> None:
    """Aim every rejected URL at a live listener on 127.0.0.1: it must count zero connections."""
    port = listener.base_url.rsplit(":", 1)[1]
    resolver.table["rebound.example.org"] = ["127.0.0.1"]
    rebinding_registry = IssuerRegistry.from_mapping(
        {
            ISSUER: {
                "jwks_url": "https://ehr.example.org/jwks",
                "fhir_servers": [f"https://rebound.example.org:{port}/fhir"],
            }
        }
    )
    cases = [
        (FhirServerPolicy(registry, dev=False, resolver=resolver), f"http://127.0.0.1:{port}/fhir"),
        (FhirServerPolicy(registry, dev=False, resolver=resolver), f"https://127.0.0.1:{port}/fhir"),
        (FhirServerPolicy(registry, dev=False, resolver=resolver), f"https://localhost:{port}/fhir"),
        (
            FhirServerPolicy(rebinding_registry, dev=False, resolver=resolver),
            f"https://rebound.example.org:{port}/fhir",
        ),
        (FhirServerPolicy(None, dev=False, resolver=resolver), f"http://127.0.0.1:{port}/fhir"),
    ]
    for policy, url in cases:
        with pytest.raises(FhirServerNotAllowed):
            policy.check(url, CALLER)
    assert listener.connections == 0


def test_default_resolver_sees_localhost_as_loopback(registry: IssuerRegistry) -> None:
    """The real resolver (getaddrinfo, /etc/hosts): an allowlisted 'localhost' is still refused."""
    local = IssuerRegistry.from_mapping(
        {ISSUER: {"jwks_url": "https://ehr.example.org/jwks", "fhir_servers": ["https://localhost/fhir"]}}
    )
    with pytest.raises(FhirServerNotAllowed, match="loopback"):
        FhirServerPolicy(local, dev=False).check("https://localhost/fhir", CALLER)


# --- redirects ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "location",
    [
        "https://evil.example.net/fhir/Patient/1",
        "//evil.example.net/fhir",
        "http://ehr.example.org/fhir/Patient/1",
        "https://ehr.example.org:8443/fhir/Patient/1",
        "https://169.254.169.254/latest/meta-data/",
        "file:///etc/passwd",
    ],
)
def test_redirect_to_another_server_is_rejected(
    policy: FhirServerPolicy, no_connections: list[Any], location: str
) -> None:
    with pytest.raises(FhirServerNotAllowed):
        policy.check_redirect("https://ehr.example.org/fhir/Patient/1", location)
    assert no_connections == []


@pytest.mark.parametrize(
    "location", ["/fhir/Patient/2", "https://EHR.example.org/fhir/Patient/2?_format=json", "Patient/2"]
)
def test_redirect_within_the_server_is_allowed(policy: FhirServerPolicy, location: str) -> None:
    policy.check_redirect("https://ehr.example.org/fhir/Patient/1", location)


def test_normalise_url_makes_ports_explicit_and_drops_trailing_slash() -> None:
    assert normalise_url("HTTPS://Ehr.Example.org/fhir/") == normalise_url("https://ehr.example.org:443/fhir")

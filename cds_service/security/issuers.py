"""The trusted issuer registry: which EHRs may call, where their keys live, which FHIR servers they may name.

The registry is a JSON object keyed by the exact ``iss`` value of the EHR's JWTs (CDS Hooks 2.0, "Trusting CDS
Clients": services SHOULD keep an allowlist of ``iss`` and ``jku`` URLs)::

    {"https://ehr.example.org": {
        "jwks_url": "https://ehr.example.org/.well-known/jwks.json",     # or "jwks_file": "keys/ehr.json"
        "jku_allowlist": ["https://ehr.example.org/jwks"],
        "tenants": ["2ddd6c3a-8e9a-44c6-a305-52111ad302a2"],
        "subjects": ["mgcds-client-id"],
        "fhir_servers": ["https://ehr.example.org/fhir",
                         {"url": "https://fhir.hospital.internal/r4", "allow_private_network": true}]}}

It is validated once at start-up; every mistake is a :class:`ConfigurationError` naming the issuer and field.
``allow_private_network`` describes a server, not a caller: every issuer naming the same scheme, host and port must
agree on it, so that each outbound request can be vetted from its URL alone (``FhirServerPolicy.vetted_addresses``).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cds_service.errors import ConfigurationError
from cds_service.security.urls import normalise_url

_ISSUER_FIELDS = frozenset({"jwks_url", "jwks_file", "jku_allowlist", "tenants", "subjects", "fhir_servers"})
_SERVER_FIELDS = frozenset({"url", "allow_private_network"})
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})


@dataclass(frozen=True)
class IssuerConfig:
    """One trusted EHR: its key sources, accepted tenants and allowlisted FHIR servers."""

    issuer: str
    jwks_url: str | None
    jwks_file: Path | None
    jku_allowlist: tuple[str, ...]
    tenants: tuple[str, ...]
    fhir_servers: tuple[str, ...]
    # When non-empty, the token's ``sub`` (the EHR's client id) must be one of these (CDS Hooks lets services
    # allowlist it); empty: ``sub`` is not checked.
    subjects: tuple[str, ...] = ()
    # The subset of fhir_servers the operator explicitly allows to resolve to loopback/private addresses
    # (an internal hospital FHIR server); every other server must resolve to public addresses only.
    private_network_fhir_servers: tuple[str, ...] = ()


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback IP literals (plain http to them never leaves the machine)."""
    name = host.strip("[]").lower().rstrip(".")
    if name in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _fail(issuer: str, field: str, problem: str) -> ConfigurationError:
    return ConfigurationError(f"trusted issuers: issuer {issuer!r}, field {field!r}: {problem}")


def _key_url(issuer: str, field: str, value: Any) -> str:
    """A URL we fetch keys from: https, or http only to loopback (never leaves the host: tests and dev)."""
    if not isinstance(value, str) or not value:
        raise _fail(issuer, field, "must be a non-empty URL string")
    parts = urlsplit(value)
    if parts.scheme not in {"https", "http"} or not parts.hostname:
        raise _fail(issuer, field, f"{value!r} is not an absolute http(s) URL")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise _fail(issuer, field, f"{value!r}: keys must be fetched over https (http only on loopback)")
    if parts.username or parts.password:
        raise _fail(issuer, field, f"{value!r}: credentials in the URL are not allowed")
    return value


def _string_list(issuer: str, field: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise _fail(issuer, field, "must be a list of non-empty strings")
    return tuple(value)


def _fhir_server_url(issuer: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise _fail(issuer, "fhir_servers", "each entry must be a URL string or {'url': ..., ...}")
    parts = urlsplit(value)
    if parts.scheme not in {"https", "http"} or not parts.hostname:
        raise _fail(issuer, "fhir_servers", f"{value!r} is not an absolute http(s) URL")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise _fail(issuer, "fhir_servers", f"{value!r}: a base URL has no credentials, query or fragment")
    try:
        normalise_url(value)
    except ValueError as exc:
        # The same grammar every outbound URL must pass: a base it refuses could never be read.
        raise _fail(issuer, "fhir_servers", f"{value!r}: {exc}") from exc
    return value


def _fhir_servers(issuer: str, value: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if value is None:
        return (), ()
    if not isinstance(value, list):
        raise _fail(issuer, "fhir_servers", "must be a list")
    servers: list[str] = []
    private_ok: list[str] = []
    for entry in value:
        if isinstance(entry, Mapping):
            unknown = set(entry) - _SERVER_FIELDS
            if unknown:
                raise _fail(
                    issuer,
                    "fhir_servers",
                    f"unknown keys {sorted(unknown)} (allowed: url, allow_private_network)",
                )
            url = _fhir_server_url(issuer, entry.get("url"))
            allow = entry.get("allow_private_network", False)
            if not isinstance(allow, bool):
                raise _fail(issuer, "fhir_servers", "allow_private_network must be true or false")
            servers.append(url)
            if allow:
                private_ok.append(url)
        else:
            servers.append(_fhir_server_url(issuer, entry))
    return tuple(servers), tuple(private_ok)


def _issuer_config(issuer: Any, entry: Any, base_dir: Path | None) -> IssuerConfig:
    if not isinstance(issuer, str) or not issuer.strip():
        raise ConfigurationError(f"trusted issuers: issuer keys must be non-empty strings, got {issuer!r}")
    if not isinstance(entry, Mapping):
        raise ConfigurationError(f"trusted issuers: issuer {issuer!r}: its entry must be a JSON object")
    unknown = set(entry) - _ISSUER_FIELDS
    if unknown:
        allowed = ", ".join(sorted(_ISSUER_FIELDS))
        raise ConfigurationError(
            f"trusted issuers: issuer {issuer!r}: unknown keys {sorted(unknown)} (allowed: {allowed})"
        )
    jwks_url = _key_url(issuer, "jwks_url", entry["jwks_url"]) if entry.get("jwks_url") is not None else None
    jwks_file: Path | None = None
    if entry.get("jwks_file") is not None:
        raw_file = entry["jwks_file"]
        if not isinstance(raw_file, str) or not raw_file:
            raise _fail(issuer, "jwks_file", "must be a non-empty path string")
        jwks_file = Path(raw_file).expanduser()
        if not jwks_file.is_absolute() and base_dir is not None:
            jwks_file = base_dir / jwks_file
        if not jwks_file.is_file():
            raise _fail(issuer, "jwks_file", f"{str(jwks_file)!r} does not exist or is not a file")
    if jwks_url is not None and jwks_file is not None:
        raise _fail(issuer, "jwks_url", "give jwks_url or jwks_file, not both")
    jku_allowlist = tuple(
        _key_url(issuer, "jku_allowlist", url)
        for url in _string_list(issuer, "jku_allowlist", entry.get("jku_allowlist"))
    )
    if jwks_url is None and jwks_file is None and not jku_allowlist:
        raise _fail(issuer, "jwks_url", "no key source: give jwks_url, jwks_file or a non-empty jku_allowlist")
    fhir_servers, private_ok = _fhir_servers(issuer, entry.get("fhir_servers"))
    return IssuerConfig(
        issuer=issuer,
        jwks_url=jwks_url,
        jwks_file=jwks_file,
        jku_allowlist=jku_allowlist,
        tenants=_string_list(issuer, "tenants", entry.get("tenants")),
        subjects=_string_list(issuer, "subjects", entry.get("subjects")),
        fhir_servers=fhir_servers,
        private_network_fhir_servers=private_ok,
    )


class IssuerRegistry:
    """The validated set of trusted issuers, looked up by the exact ``iss`` string."""

    def __init__(self, issuers: Mapping[str, IssuerConfig]) -> None:
        self._issuers = dict(issuers)

    @classmethod
    def load(cls, path: Path) -> IssuerRegistry:
        """Read and validate the registry file (``MGCDS_TRUSTED_ISSUERS``); jwks_file is relative to it."""
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigurationError(f"trusted issuers: cannot read {str(path)!r}: {exc.strerror or exc}") from exc
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigurationError(f"trusted issuers: {str(path)!r} is not valid JSON: {exc}") from exc
        if not isinstance(data, Mapping):
            raise ConfigurationError(f"trusted issuers: {str(path)!r} must hold a JSON object keyed by issuer")
        return cls.from_mapping(data, base_dir=path.parent)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, base_dir: Path | None = None) -> IssuerRegistry:
        """Validate an already parsed registry."""
        if not isinstance(data, Mapping):
            raise ConfigurationError("trusted issuers: the registry must be a JSON object keyed by issuer")
        if not data:
            raise ConfigurationError("trusted issuers: the registry is empty (no EHR could call the service)")
        registry = cls({issuer: _issuer_config(issuer, entry, base_dir) for issuer, entry in data.items()})
        registry.private_network_origins()  # refuses disagreeing allow_private_network flags at start-up
        return registry

    def configs(self) -> tuple[IssuerConfig, ...]:
        """Every trusted issuer's entry."""
        return tuple(self._issuers.values())

    def private_network_origins(self) -> frozenset[tuple[str, str, int]]:
        """(scheme, host, port) of the FHIR servers marked ``allow_private_network``; ConfigurationError when two
        entries for one origin disagree (the flag says where a server lives, which does not depend on the caller)."""
        flags: dict[tuple[str, str, int], tuple[bool, str]] = {}
        for config in self._issuers.values():
            for server in config.fhir_servers:
                origin = normalise_url(server).origin
                flag = server in config.private_network_fhir_servers
                seen = flags.setdefault(origin, (flag, config.issuer))
                if seen[0] != flag:
                    raise ConfigurationError(
                        f"trusted issuers: {origin[0]}://{origin[1]}:{origin[2]} is allowlisted with "
                        f"allow_private_network {seen[0]} by issuer {seen[1]!r} and {flag} by issuer "
                        f"{config.issuer!r}: give every entry of one server the same value"
                    )
        return frozenset(origin for origin, (flag, _) in flags.items() if flag)

    def get(self, issuer: str) -> IssuerConfig | None:
        """The issuer's entry, or None when it is not trusted (exact string match, no normalisation)."""
        return self._issuers.get(issuer)

    def __len__(self) -> int:
        return len(self._issuers)

"""The fhirServer allowlist: we only send the EHR's bearer token to FHIR servers that caller may name (SSRF).

A CDS Hooks request names ``fhirServer`` and hands us an access token for it. Without this check, anyone
able to call the service could make it fetch any URL from inside the hospital network (cloud metadata at
169.254.169.254, admin ports on loopback, internal hosts) or send a real token to a server they own. Rules:

- an absolute https URL (http only in dev mode), without credentials, query, fragment or dot segments;
- with a registry: it must sit under a server allowlisted for the calling issuer (same scheme, host and port,
  and the allowlisted path followed by ``/`` or the end: ``/fhir`` admits ``/fhir/r4`` but not ``/fhir2``);
- every address the host resolves to must be public. Link-local (cloud metadata), multicast, unspecified and
  reserved addresses are always refused; loopback and private addresses only for a server the operator marked
  ``allow_private_network`` (or named by its IP literal), and loopback in dev mode without a registry;
- without a registry, only dev mode allows anything (the service then has no caller identity to scope by).

``check`` never contacts the server (only the resolver, for the host's addresses). The FHIR client must not
follow redirects itself: it calls :meth:`FhirServerPolicy.check_redirect` and then ``check`` on the new URL.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import unquote, urljoin, urlsplit

from cds_service.errors import FhirServerNotAllowed, FhirUnreachable
from cds_service.security.identity import CallerIdentity
from cds_service.security.issuers import IssuerRegistry

MAX_URL_CHARS = 2048
_DEFAULT_PORTS = {"http": 80, "https": 443}
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def resolve_host(host: str) -> Sequence[str]:
    """Every address ``host`` resolves to (the system resolver; no connection to the host itself)."""
    infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    return sorted({str(info[4][0]) for info in infos})


@dataclass(frozen=True)
class NormalisedUrl:
    """A URL reduced to what decides where a request goes: scheme, host, explicit port, clean path."""

    scheme: str
    host: str
    port: int
    path: str  # no trailing slash; "" for the root

    def is_under(self, base: NormalisedUrl) -> bool:
        """True when this URL is the base or below it at a path-segment boundary."""
        if (self.scheme, self.host, self.port) != (base.scheme, base.host, base.port):
            return False
        return self.path == base.path or self.path.startswith(base.path + "/")


def normalise_url(url: str) -> NormalisedUrl:
    """Parse and normalise a FHIR base URL; ValueError says what is wrong with it."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL_CHARS:
        raise ValueError("not a URL string of reasonable length")
    if any(ch.isspace() or ord(ch) < 0x20 or ch == "\\" for ch in url):
        raise ValueError("whitespace, control characters or backslashes in the URL")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ValueError(f"scheme {scheme or '(none)'!r} is not http(s)")
    if parts.username is not None or parts.password is not None:
        raise ValueError("credentials in the URL")
    if parts.query or parts.fragment:
        raise ValueError("a FHIR base URL has no query or fragment")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise ValueError("no host")
    try:
        port = parts.port or _DEFAULT_PORTS[scheme]
    except ValueError as exc:
        raise ValueError("invalid port") from exc
    segments = unquote(parts.path).split("/")
    if any(segment in {".", ".."} for segment in segments) or "%2f" in parts.path.lower():
        raise ValueError("dot segments or encoded slashes in the path")
    return NormalisedUrl(scheme=scheme, host=host.lower(), port=port, path=parts.path.rstrip("/"))


def _ip_literal(host: str) -> IpAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _effective(address: IpAddress) -> IpAddress:
    # ::ffff:127.0.0.1 reaches 127.0.0.1: judge the embedded IPv4 address.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def classify_address(address: IpAddress) -> str | None:
    """The kind of non-public address this is ("loopback", "link-local", ...), or None for a public one."""
    address = _effective(address)
    # Loopback first: ::1 also counts as reserved (::/8) and must be judged as loopback.
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if address.is_unspecified:
        return "unspecified"
    if address.is_reserved:
        return "reserved"
    if not address.is_global:
        return "private"
    return None


_LIFTABLE = frozenset({"loopback", "private"})


class FhirServerPolicy:
    """Decides whether the service may contact a fhirServer for a caller; makes no request itself."""

    def __init__(
        self,
        registry: IssuerRegistry | None,
        *,
        dev: bool,
        resolver: Callable[[str], Sequence[str]] = resolve_host,
    ) -> None:
        self._registry = registry
        self._dev = dev
        self._resolver = resolver

    def check(self, fhir_server: str, caller: CallerIdentity | None) -> None:
        """Raise :class:`FhirServerNotAllowed` unless ``fhir_server`` may be fetched for ``caller``."""
        try:
            target = normalise_url(fhir_server)
        except ValueError as exc:
            raise FhirServerNotAllowed(f"fhirServer rejected: {exc}", field="fhirServer") from exc
        if target.scheme != "https" and not self._dev:
            raise FhirServerNotAllowed("fhirServer rejected: https is required", field="fhirServer")
        private_ok = self._allowlist_decision(target, caller)
        self._check_addresses(target, private_ok=private_ok)

    def check_redirect(self, from_url: str, to_url: str) -> None:
        """Raise :class:`FhirServerNotAllowed` when a redirect leaves the original scheme, host or port."""
        try:
            origin = normalise_url(from_url.split("?", 1)[0].split("#", 1)[0])
            target = normalise_url(urljoin(from_url, to_url).split("?", 1)[0].split("#", 1)[0])
        except ValueError as exc:
            raise FhirServerNotAllowed(f"redirect rejected: {exc}", field="fhirServer") from exc
        if (origin.scheme, origin.host, origin.port) != (target.scheme, target.host, target.port):
            raise FhirServerNotAllowed("redirect to another server rejected", field="fhirServer")

    def _allowlist_decision(self, target: NormalisedUrl, caller: CallerIdentity | None) -> bool:
        """Check the allowlist; return whether loopback/private addresses are acceptable for this target."""
        if self._registry is None:
            if not self._dev:
                # Fail closed: with no registry there is nobody to scope the allowlist by.
                raise FhirServerNotAllowed("fhirServer rejected: no trusted issuer registry", field="fhirServer")
            return False
        if caller is None:
            raise FhirServerNotAllowed("fhirServer rejected: no authenticated caller", field="fhirServer")
        config = self._registry.get(caller.issuer)
        if config is None:
            raise FhirServerNotAllowed("fhirServer rejected: caller's issuer is not trusted", field="fhirServer")
        for allowed in config.fhir_servers:
            base = normalise_url(allowed)
            if target.is_under(base):
                return allowed in config.private_network_fhir_servers or _ip_literal(base.host) is not None
        raise FhirServerNotAllowed("fhirServer is not allowlisted for this caller", field="fhirServer")

    def _check_addresses(self, target: NormalisedUrl, *, private_ok: bool) -> None:
        literal = _ip_literal(target.host)
        if literal is not None:
            addresses: list[IpAddress] = [literal]
        else:
            try:
                resolved = self._resolver(target.host)
            except (OSError, UnicodeError) as exc:
                # Fail closed: a host we cannot resolve is one we cannot vet, so we do not contact it.
                raise FhirUnreachable("fhirServer host could not be resolved") from exc
            addresses = []
            for raw in resolved:
                parsed = _ip_literal(raw.split("%", 1)[0])
                if parsed is None:
                    raise FhirServerNotAllowed("fhirServer rejected: unparseable address", field="fhirServer")
                addresses.append(parsed)
            if not addresses:
                raise FhirUnreachable("fhirServer host resolved to no address")
        dev_without_registry = self._dev and self._registry is None
        for address in addresses:
            kind = classify_address(address)
            if kind is None or (kind in _LIFTABLE and private_ok) or (kind == "loopback" and dev_without_registry):
                continue
            raise FhirServerNotAllowed(f"fhirServer rejected: resolves to a {kind} address", field="fhirServer")

"""The fhirServer allowlist and the egress rules: the EHR's bearer token only goes to servers that caller may name.

A CDS Hooks request names ``fhirServer`` and hands us an access token for it. Without these checks, anyone
able to call the service could make it fetch any URL from inside the hospital network (cloud metadata at
169.254.169.254, admin ports on loopback, internal hosts) or send a real token to a server they own. Rules:

- an absolute https URL (http only in dev mode), without credentials, query, fragment, path parameters, dot
  segments or encoded separators (the grammar of ``cds_service.security.urls``);
- with a registry: it must sit under a server allowlisted for the calling issuer (same scheme, host and port,
  and the allowlisted path followed by ``/`` or the end: ``/fhir`` admits ``/fhir/r4`` but not ``/fhir2``);
- every address the host resolves to must be public. Link-local (cloud metadata), multicast, unspecified and
  reserved addresses are always refused; loopback and private addresses only for a server the operator marked
  ``allow_private_network`` (or named by its IP literal), and loopback in dev mode without a registry;
- without a registry, only dev mode allows anything (the service then has no caller identity to scope by).

``check`` runs once per hook call, before anything is fetched, and never contacts the server (only the resolver).
After it, the FHIR client asks :meth:`FhirServerPolicy.egress_target` about every URL it is about to request (the
first one, each redirect hop, each ``next`` link, each reference read): the URL must pass the same grammar and lie
under the vetted ``fhirServer``; and :meth:`FhirServerPolicy.vetted_addresses` gives the addresses it may connect to
(the client pins its connection to them, so the name is not resolved a second time).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from urllib.parse import urljoin

from cds_service.errors import FhirServerNotAllowed, FhirUnreachable
from cds_service.security.identity import CallerIdentity
from cds_service.security.issuers import IssuerRegistry
from cds_service.security.urls import MAX_BASE_URL_CHARS, NormalisedUrl, egress_url, normalise_url

MAX_URL_CHARS = MAX_BASE_URL_CHARS
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

__all__ = ["FhirServerPolicy", "NormalisedUrl", "classify_address", "normalise_url", "resolve_host"]


def resolve_host(host: str) -> Sequence[str]:
    """Every address ``host`` resolves to (the system resolver; no connection to the host itself)."""
    infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    # In the resolver's order (RFC 6724 preference), each once: the client connects to them in this order.
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


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
        self._private_origins = registry.private_network_origins() if registry is not None else frozenset()
        self._bases = (
            tuple(normalise_url(url) for config in registry.configs() for url in config.fhir_servers)
            if registry is not None
            else ()
        )

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
            origin = normalise_url(from_url, max_chars=8192, allow_query=True)
            target = normalise_url(urljoin(from_url, to_url), max_chars=8192, allow_query=True)
        except ValueError as exc:
            raise FhirServerNotAllowed(f"redirect rejected: {exc}", field="fhirServer") from exc
        if origin.origin != target.origin:
            raise FhirServerNotAllowed("redirect to another server rejected", field="fhirServer")

    def egress_target(self, url: str, base_url: str) -> NormalisedUrl:
        """``url`` normalised, when the client may request it for the vetted ``base_url``; else FhirServerNotAllowed.

        The base was checked for the caller by :meth:`check`; this keeps every later URL of the call under it (and,
        with a registry, under an allowlisted server whatever happened before: defence in depth).
        """
        try:
            base = normalise_url(base_url)
            target = egress_url(url, base)
        except ValueError as exc:
            raise FhirServerNotAllowed(f"FHIR URL refused: {exc}", field="fhirServer") from exc
        if target.scheme != "https" and not self._dev:
            raise FhirServerNotAllowed("FHIR URL refused: https is required", field="fhirServer")
        if self._registry is not None and not any(base.is_under(allowed) for allowed in self._bases):
            raise FhirServerNotAllowed("FHIR URL refused: the base is not allowlisted", field="fhirServer")
        if self._registry is None and not self._dev:
            raise FhirServerNotAllowed("FHIR URL refused: no trusted issuer registry", field="fhirServer")
        return target

    def vetted_addresses(self, target: NormalisedUrl) -> tuple[str, ...]:
        """The addresses ``target``'s host may be reached at (every one it resolves to, each checked)."""
        return self._check_addresses(target, private_ok=self._private_ok(target))

    def _private_ok(self, target: NormalisedUrl) -> bool:
        return target.origin in self._private_origins or (
            _ip_literal(target.host) is not None and any(target.is_under(base) for base in self._bases)
        )

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
            if target.is_under(normalise_url(allowed)):
                # The registry guarantees one flag per origin, so this equals what vetted_addresses decides.
                return self._private_ok(target)
        raise FhirServerNotAllowed("fhirServer is not allowlisted for this caller", field="fhirServer")

    def _check_addresses(self, target: NormalisedUrl, *, private_ok: bool) -> tuple[str, ...]:
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
        return tuple(str(address) for address in addresses)

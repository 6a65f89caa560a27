"""The URL grammar of egress: what a FHIR base, a redirect target or a ``next`` link may look like (no I/O).

A server decides where a request goes from its path after its own decoding and normalisation, and servers
disagree: Tomcat and Jetty read ``/fhir/..;/admin`` as ``/admin`` (``;`` starts path parameters), others decode
``%2e%2e`` or ``%2f`` before routing, IIS folds case and backslashes. A URL is therefore accepted only when every
reading gives the same path: plain ASCII, no path parameters, no dot or empty segments, and no percent-escape that
could become a separator, a dot, a percent sign or a control character. What is left compares by its decoded path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

MAX_BASE_URL_CHARS = 2048
# ``next`` links carry server cursors (Epic's and Cerner's run to a few hundred characters): room for them.
MAX_EGRESS_URL_CHARS = 8192
DEFAULT_PORTS = {"http": 80, "https": 443}
_PRINTABLE_ASCII = re.compile(r"[\x21-\x7e]*")
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
# Characters a percent-escape must not stand for in a path: separators, dots, the escape character itself.
_UNSAFE_ESCAPED = frozenset("./\\;%")


@dataclass(frozen=True)
class NormalisedUrl:
    """A URL reduced to what decides where a request goes: scheme, host, explicit port, decoded clean path."""

    scheme: str
    host: str
    port: int
    path: str  # decoded, no trailing slash; "" for the root

    @property
    def origin(self) -> tuple[str, str, int]:
        """Scheme, host and port: what a connection is made to."""
        return (self.scheme, self.host, self.port)

    def is_under(self, base: NormalisedUrl) -> bool:
        """True when this URL is the base or below it at a path-segment boundary."""
        if self.origin != base.origin:
            return False
        return self.path == base.path or self.path.startswith(base.path + "/")


def clean_path(raw_path: str) -> str:
    """The decoded path without its trailing slash; ValueError when servers could read it as another path."""
    if raw_path and not raw_path.startswith("/"):
        raise ValueError("the path does not start with /")
    if ";" in raw_path:
        raise ValueError("path parameters (;) in the path")
    if _BAD_ESCAPE.search(raw_path):
        raise ValueError("a malformed percent-escape in the path")
    for escape in _ESCAPE.finditer(raw_path):
        char = chr(int(escape.group(1), 16))
        if char in _UNSAFE_ESCAPED or not "\x20" < char < "\x7f":
            raise ValueError("an encoded dot, slash, backslash, semicolon, percent or control character in the path")
    decoded = unquote(raw_path)
    segments = decoded.split("/")[1:]
    if segments and segments[-1] == "":
        segments = segments[:-1]  # one trailing slash is the same resource on every FHIR server
    for segment in segments:
        if segment in {"", ".", ".."}:
            raise ValueError("dot segments or empty segments in the path")
    return decoded.rstrip("/")


def normalise_url(url: str, *, max_chars: int = MAX_BASE_URL_CHARS, allow_query: bool = False) -> NormalisedUrl:
    """Parse and normalise an http(s) URL by the grammar above; ValueError says what is wrong with it."""
    if not isinstance(url, str) or not url or len(url) > max_chars:
        raise ValueError("not a URL string of reasonable length")
    if not _PRINTABLE_ASCII.fullmatch(url):
        raise ValueError("whitespace, control or non-ASCII characters in the URL")
    if "\\" in url:
        raise ValueError("a backslash in the URL")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise ValueError(f"scheme {scheme or '(none)'!r} is not http(s)")
    if "@" in parts.netloc:
        raise ValueError("credentials in the URL")
    if parts.fragment or url.endswith("#"):
        raise ValueError("a fragment in the URL")
    if parts.query and not allow_query:
        raise ValueError("a FHIR base URL has no query or fragment")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise ValueError("no host")
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError as exc:
        raise ValueError("invalid port") from exc
    return NormalisedUrl(scheme=scheme, host=host.lower(), port=port, path=clean_path(parts.path))


def egress_url(url: str, base: NormalisedUrl) -> NormalisedUrl:
    """``url`` normalised, when it lies under ``base`` (same scheme, host, port, path prefix); else ValueError."""
    target = normalise_url(url, max_chars=MAX_EGRESS_URL_CHARS, allow_query=True)
    if not target.is_under(base):
        raise ValueError("the URL is not under the FHIR base")
    return target

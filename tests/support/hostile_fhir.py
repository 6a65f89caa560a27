"""Hostile FHIR servers on loopback for the egress tests (issue 16): redirects, ``next`` links elsewhere, dribbling
answers, huge answers, TLS with a test CA; every request is logged with its path and Authorization header.

A server may bind any 127/8 address, so a test can stand two servers on the same port at 127.0.0.1 and 127.0.0.2: the
address a name is *vetted* at, and the one a second DNS answer would send the connection to (rebinding).
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

Route = Callable[["HostileHandler"], None]
# Every dribble stops after this many bytes or seconds, whichever first: no test thread outlives its test for long.
DRIBBLE_MAX_SECONDS = 30.0


@dataclass
class Seen:
    """One request the server received."""

    path: str
    authorization: str | None
    host: str | None


@dataclass
class HostileServer:
    """A server's address, its routes (longest path prefix wins) and what it received."""

    host: str = "127.0.0.1"
    port: int = 0
    scheme: str = "http"
    routes: dict[str, Route] = field(default_factory=dict)
    requests: list[Seen] = field(default_factory=list)
    connections: int = 0
    sni: list[str | None] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    @property
    def origin(self) -> str:
        """scheme://host:port of this server."""
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The FHIR base on this server."""
        return self.origin + "/fhir"

    def paths(self) -> list[str]:
        """The paths requested so far."""
        return [seen.path for seen in self.requests]


class HostileHandler(BaseHTTPRequestHandler):
    """Routes a GET to the server's route for the longest matching prefix; 404 OperationOutcome otherwise."""

    protocol_version = "HTTP/1.1"
    state: HostileServer

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        self.state.requests.append(Seen(self.path, self.headers.get("Authorization"), self.headers.get("Host")))
        for prefix in sorted(self.state.routes, key=len, reverse=True):
            if self.path.startswith(prefix):
                self.state.routes[prefix](self)
                return
        self.send_json(404, {"resourceType": "OperationOutcome"})

    def send_json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        """Answer ``body`` (JSON unless bytes) with ``status`` and a Content-Length."""
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/fhir+json")
        self.send_header("Content-Length", str(len(raw)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(raw)

    def redirect(self, location: str) -> None:
        """Answer 302 to ``location``."""
        self.send_json(302, b"", {"Location": location})

    def dribble_body(self, every_seconds: float, length: int = 100_000) -> None:
        """Headers at once (with a Content-Length), then the body one byte every ``every_seconds``."""
        self.send_response(200)
        self.send_header("Content-Type", "application/fhir+json")
        self.send_header("Content-Length", str(length))
        self.end_headers()
        self._dribble(b"{" + b" " * (length - 1), every_seconds)

    def dribble_headers(self, every_seconds: float) -> None:
        """The status line and headers one byte every ``every_seconds`` (a per-read timeout never fires)."""
        self._dribble(b"HTTP/1.1 200 OK\r\nX-Padding: " + b"a" * 10_000 + b"\r\n\r\n", every_seconds)

    def _dribble(self, data: bytes, every_seconds: float) -> None:
        started = time.monotonic()
        for byte in data:
            if self.state.stop.is_set() or time.monotonic() - started > DRIBBLE_MAX_SECONDS:
                return
            try:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
            except OSError:
                return  # the client hung up: what the deadline should make it do
            time.sleep(every_seconds)
        self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the http.server API
        return


@contextmanager
def hostile_server(
    host: str = "127.0.0.1", port: int = 0, *, tls: ssl.SSLContext | None = None
) -> Iterator[HostileServer]:
    """Serve a :class:`HostileServer` on ``host:port`` (port 0: a free one) until the block ends."""
    state = HostileServer(host=host, scheme="https" if tls is not None else "http")

    class Handler(HostileHandler):
        pass

    Handler.state = state

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def get_request(self) -> Any:
            sock, address = super().get_request()
            state.connections += 1
            if tls is not None:
                sock = tls.wrap_socket(sock, server_side=True)
            return sock, address

    server = Server((host, port), Handler)
    state.port = int(server.server_address[1])
    if tls is not None:
        tls.sni_callback = lambda _sock, name, _ctx: state.sni.append(name)  # type: ignore[assignment,misc]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.stop.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@contextmanager
def twin_servers() -> Iterator[tuple[HostileServer, HostileServer]]:
    """Two servers on one port: 127.0.0.1 (the vetted address) and 127.0.0.2 (where a rebound name would lead)."""
    for _attempt in range(20):
        with hostile_server("127.0.0.1") as vetted:
            try:
                with hostile_server("127.0.0.2", vetted.port) as rebound:
                    yield vetted, rebound
                    return
            except OSError:
                continue  # that port is taken on 127.0.0.2: try another pair
    raise RuntimeError("no free port on both 127.0.0.1 and 127.0.0.2")


@dataclass(frozen=True)
class LoopbackCa:
    """A CA certificate file and a server TLS context for ``name`` signed by it."""

    ca_file: Path
    server_context: ssl.SSLContext


def make_loopback_ca(directory: Path, name: str) -> LoopbackCa:
    """A fresh CA and a server certificate for DNS name ``name`` (and 127.0.0.1), as PEM files in ``directory``."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mgcds test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(name), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    ca_file = directory / "ca.pem"
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_file, key_file = directory / f"{name}.pem", directory / f"{name}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return LoopbackCa(ca_file=ca_file, server_context=context)

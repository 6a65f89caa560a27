"""Egress: every outbound FHIR request goes to a vetted address, inside its hook call's deadline and byte allowance.

Three pieces, used by :mod:`cds_service.fhir.client` for every request it makes (first URL, redirect hop, ``next``
link, reference read):

- an :class:`EgressPolicy` says whether a URL may be requested for the call's FHIR base and which addresses its
  host may be reached at (``FhirServerPolicy`` in production; :class:`OperatorEgress` for operator commands);
- a :class:`PinnedAdapter` for ``requests`` connects to exactly those addresses. The name is resolved once, by the
  policy, and never again by ``requests``: a DNS answer that changes between the check and the connection
  (rebinding) cannot take the token elsewhere. The URL, the Host header, TLS SNI and certificate checks still use
  the name, so nothing else about the request changes;
- a :class:`CallBudget` holds one hook call's deadline and byte allowance, shared by all its reads; the
  :class:`Watchdog` shuts down the sockets of a call whose deadline has passed, so a server that dribbles its
  headers or body one byte at a time (which a per-read socket timeout never catches) is cut at the deadline.

The current exchange (one request and its answer, always within one thread) is found by the connection through a
context variable set around the request: urllib3 creates connections deep inside ``requests``, where nothing else
of ours can reach.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError
from urllib3.util.connection import create_connection

from cds_service.errors import FhirBudgetExhausted, FhirServerNotAllowed, FhirUnreachable
from cds_service.security.fhir_allowlist import resolve_host
from cds_service.security.urls import NormalisedUrl, egress_url, normalise_url


class EgressPolicy(Protocol):
    """Which URLs the FHIR client may request for a call's base, and the addresses it may connect to."""

    def egress_target(self, url: str, base_url: str) -> NormalisedUrl:
        """``url`` normalised when it may be requested for ``base_url``; raises ``FhirServerNotAllowed``."""
        ...

    def vetted_addresses(self, target: NormalisedUrl) -> tuple[str, ...]:
        """The addresses ``target``'s host may be reached at; raises ``FhirServerNotAllowed``/``FhirUnreachable``."""
        ...


class OperatorEgress:
    """The egress rules of a command an operator runs (``mgcds evaluate``): the operator named the server, so any
    address is allowed, but every URL stays under that base and connections are pinned to what was resolved."""

    def __init__(self, resolver: Callable[[str], Sequence[str]] = resolve_host) -> None:
        self._resolver = resolver

    def egress_target(self, url: str, base_url: str) -> NormalisedUrl:
        """``url`` normalised when it lies under ``base_url`` by the egress grammar."""
        try:
            return egress_url(url, normalise_url(base_url))
        except ValueError as exc:
            raise FhirServerNotAllowed(f"FHIR URL refused: {exc}", field="fhirServer") from exc

    def vetted_addresses(self, target: NormalisedUrl) -> tuple[str, ...]:
        """Every address the host resolves to (an IP literal is its own address)."""
        try:
            resolved = tuple(self._resolver(target.host))
        except (OSError, UnicodeError) as exc:
            raise FhirUnreachable("FHIR server host could not be resolved") from exc
        if not resolved:
            raise FhirUnreachable("FHIR server host resolved to no address")
        return resolved


@dataclass(frozen=True)
class Destination:
    """Where one request goes: the URL as sent, its host and port, and the vetted addresses to connect to."""

    url: str
    host: str
    port: int
    addresses: tuple[str, ...]


def _same_host(a: str, b: str) -> bool:
    return a.strip("[]").rstrip(".").lower() == b.strip("[]").rstrip(".").lower()


class Exchange:
    """One request and its answer, in one thread: the connection it uses, and whether the deadline cut it."""

    def __init__(self, budget: CallBudget, destination: Destination) -> None:
        self.budget = budget
        self.destination = destination
        self.connection: HTTPConnection | None = None
        self.was_cut = False

    def attach(self, connection: HTTPConnection) -> None:
        """Note the connection carrying this exchange (new or reused from the pool)."""
        self.connection = connection
        setattr(connection, _OWNER, self)  # noqa: B010 - urllib3 creates the object; we tag it
        if self.was_cut:
            _shutdown(connection)
            raise FhirBudgetExhausted("the call's FHIR time budget ran out")

    def cut(self) -> None:
        """Shut down the socket under this exchange (called by the watchdog at the deadline)."""
        self.was_cut = True
        connection = self.connection
        # Only while the connection still carries this exchange: once back in the pool it may carry another.
        if connection is not None and getattr(connection, _OWNER, None) is self:
            _shutdown(connection)


_OWNER = "_mgcds_exchange"
_CURRENT: ContextVar[Exchange | None] = ContextVar("mgcds_fhir_exchange", default=None)


def _shutdown(connection: HTTPConnection) -> None:
    sock = connection.sock
    if sock is not None:
        # socket.socket.shutdown, not SSLSocket.shutdown: that one drops the TLS state under the reading thread.
        # Shutting the descriptor down wakes a thread blocked in recv (closing it would not, and is unsafe).
        with contextlib.suppress(OSError):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)


class CallBudget:
    """One hook call's FHIR allowance, shared by all its reads: a deadline and a number of bytes."""

    def __init__(self, seconds: float, max_bytes: int) -> None:
        self.deadline = time.monotonic() + seconds
        self.max_bytes = max_bytes
        self.expired = False
        self._read = 0
        self._lock = threading.Lock()
        self._exchanges: set[Exchange] = set()

    def remaining(self) -> float:
        """Seconds left before the deadline (negative once it has passed)."""
        return self.deadline - time.monotonic()

    def bytes_left(self) -> int:
        """Bytes the call may still read."""
        with self._lock:
            return max(0, self.max_bytes - self._read)

    def check_time(self) -> None:
        """Raise :class:`FhirBudgetExhausted` once the deadline has passed."""
        if self.expired or self.remaining() <= 0:
            raise FhirBudgetExhausted("the call's FHIR time budget ran out")

    def take(self, count: int) -> None:
        """Count ``count`` bytes read; raise :class:`FhirBudgetExhausted` when the allowance is used up."""
        with self._lock:
            self._read += count
            over = self._read > self.max_bytes
        if over:
            raise FhirBudgetExhausted(f"the call's FHIR byte allowance ({self.max_bytes} bytes) is used up")

    @contextlib.contextmanager
    def exchange(self, destination: Destination) -> Iterator[Exchange]:
        """Run one request to ``destination`` (pinned to its addresses); a cut exchange raises FhirBudgetExhausted."""
        self.check_time()
        exchange = Exchange(self, destination)
        with self._lock:
            self._exchanges.add(exchange)
        token = _CURRENT.set(exchange)
        try:
            yield exchange
        except FhirBudgetExhausted:
            raise
        except Exception as exc:
            if exchange.was_cut:
                raise FhirBudgetExhausted("the call's FHIR time budget ran out") from exc
            raise
        finally:
            _CURRENT.reset(token)
            with self._lock:
                self._exchanges.discard(exchange)
        # A close-delimited answer cut by the deadline ends like a complete one: it is not.
        if exchange.was_cut:
            raise FhirBudgetExhausted("the call's FHIR time budget ran out")

    def expire(self) -> None:
        """The deadline has passed: refuse new requests and cut those in flight."""
        with self._lock:
            self.expired = True
            in_flight = list(self._exchanges)
        for exchange in in_flight:
            exchange.cut()


class Watchdog:
    """One thread per FHIR client that expires each call's budget at its deadline."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, CallBudget]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None
        self._stopped = False

    def watch(self, budget: CallBudget) -> None:
        """Expire ``budget`` when its deadline passes."""
        with self._cond:
            if self._stopped:
                return
            heapq.heappush(self._heap, (budget.deadline, next(self._order), budget))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="fhir-deadlines", daemon=True)
                self._thread.start()
            if self._heap[0][2] is budget:
                # Only a new earliest deadline needs the thread awake sooner. Every hook call arms a budget, and
                # waking the thread for each (its deadline is the latest) cost 5 % of a worker's time under load.
                self._cond.notify()

    def stop(self) -> None:
        """End the thread (pending budgets are expired first, so nothing waits on a stopped watchdog)."""
        with self._cond:
            self._stopped = True
            pending = [entry[2] for entry in self._heap]
            self._heap.clear()
            self._cond.notify()
            thread = self._thread
        for budget in pending:
            budget.expire()
        if thread is not None:
            thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            with self._cond:
                due: list[CallBudget] = []
                while not due:
                    if self._stopped:
                        return
                    now = time.monotonic()
                    while self._heap and self._heap[0][0] <= now:
                        due.append(heapq.heappop(self._heap)[2])
                    if not due:
                        self._cond.wait(self._heap[0][0] - now if self._heap else None)
            for budget in due:
                budget.expire()


def _pinned_socket(connection: HTTPConnection) -> socket.socket:
    exchange = _CURRENT.get()
    if exchange is None or not _same_host(exchange.destination.host, connection.host):
        # Fail closed: a connection to an address nobody vetted is not made.
        raise NewConnectionError(connection, "no vetted address for this host; not connecting")
    if exchange.destination.port != connection.port:
        raise NewConnectionError(connection, "no vetted address for this port; not connecting")
    failure: OSError | None = None
    for address in exchange.destination.addresses:
        try:
            return create_connection(
                (address, connection.port),
                connection.timeout,
                source_address=connection.source_address,
                socket_options=connection.socket_options,
            )
        except TimeoutError as exc:
            raise ConnectTimeoutError(
                connection, f"Connection to {connection.host} timed out. (connect timeout={connection.timeout})"
            ) from exc
        except OSError as exc:
            failure = exc
    raise NewConnectionError(connection, f"Failed to establish a new connection: {failure}")


def _attach(connection: HTTPConnection) -> None:
    exchange = _CURRENT.get()
    if exchange is not None:
        exchange.attach(connection)


class _PinnedHTTPConnection(HTTPConnection):
    """An http connection to the vetted address of its exchange (dev mode and loopback test servers)."""

    def _new_conn(self) -> socket.socket:
        return _pinned_socket(self)

    def connect(self) -> None:
        _attach(self)
        super().connect()

    def request(self, *args: Any, **kwargs: Any) -> None:
        _attach(self)
        super().request(*args, **kwargs)


class _PinnedHTTPSConnection(_PinnedHTTPConnection, HTTPSConnection):
    """An https connection to the vetted address of its exchange; SNI and the certificate check use the name.

    The pinning methods are the http class's: their ``super()`` calls reach HTTPSConnection first (method order
    _PinnedHTTPSConnection, _PinnedHTTPConnection, HTTPSConnection, HTTPConnection), so TLS is set up as usual.
    """


class _PinnedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _PinnedHTTPConnection


class _PinnedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _PinnedHTTPSConnection


class PinnedAdapter(HTTPAdapter):
    """A ``requests`` transport whose connections go to the vetted addresses of the current exchange, never via a
    proxy (a proxy would resolve the name itself: the address we checked would not be the one reached)."""

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any) -> None:
        """The usual pool manager, with pinned connection pools."""
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _PinnedHTTPPool, "https": _PinnedHTTPSPool}

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: Any = True,
        cert: Any = None,
        proxies: Any = None,
    ) -> requests.Response:
        """Send without any proxy, whatever the environment says."""
        return super().send(request, stream=stream, timeout=timeout, verify=verify, cert=cert, proxies=None)


def pinned_session(session: requests.Session | None, max_concurrency: int) -> requests.Session:
    """``session`` (or a new one) with pinned adapters keeping as many connections per server as requests in flight.

    requests' default pool keeps 10: with more concurrent requests every extra one opened a new connection and
    threw it away afterwards (a TCP handshake per request, and bursts of new connections under load).
    """
    session = session or requests.Session()
    adapter = PinnedAdapter(pool_connections=10, pool_maxsize=max(10, max_concurrency))
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session

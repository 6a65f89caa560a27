"""A loopback TCP proxy in front of PostgreSQL that forwards, refuses or blackholes on command (issue 19, R4).

``FORWARD`` passes bytes both ways. ``REFUSE`` resets every connection, open or new (a database that went away).
``BLACKHOLE`` keeps every connection open and accepts new ones, but delivers nothing in either direction (a route
that swallows packets, a stalled proxy): no server-side timeout can fire and, since the proxy's own kernel
acknowledges every byte, no TCP timeout either; only the client's own time limit ends the wait::

    with TcpProxy(5432) as proxy:
        url = pg_url.replace(":5432/", f":{proxy.port}/")
        proxy.mode = Mode.BLACKHOLE
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from enum import StrEnum


class Mode(StrEnum):
    """What the proxy does with the bytes."""

    FORWARD = "forward"
    REFUSE = "refuse"
    BLACKHOLE = "blackhole"


def _reset(sock: socket.socket) -> None:
    # SO_LINGER 0: close() sends RST, which is what a client sees when the server process is gone.
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


class TcpProxy:
    """The proxy: ``port`` for clients, ``mode`` to change its behaviour, ``connections`` accepted so far."""

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.mode = Mode.FORWARD
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept_loop, name="tcp-proxy", daemon=True)

    def __enter__(self) -> TcpProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._listener.close()
        with self._lock:
            for sock in self._open:
                _reset(sock)
            self._open.clear()

    def set_mode(self, mode: Mode) -> None:
        """Change the behaviour; REFUSE also resets the connections already open."""
        self.mode = mode
        if mode is Mode.REFUSE:
            with self._lock:
                for sock in self._open:
                    _reset(sock)
                self._open.clear()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            if self.mode is Mode.REFUSE:
                _reset(client)
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                _reset(client)
                continue
            server.settimeout(None)
            with self._lock:
                self._open += [client, server]
            for source, target in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, target), name="tcp-proxy-pump", daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                data = source.recv(65536)
            except OSError:
                data = b""
            if not data:
                with contextlib.suppress(OSError):
                    target.shutdown(socket.SHUT_WR)
                return
            if self.mode is Mode.BLACKHOLE:
                continue  # swallowed: acknowledged by this kernel, delivered to nobody
            try:
                target.sendall(data)
            except OSError:
                return

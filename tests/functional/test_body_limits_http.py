"""Issue 16 B9 over real HTTP: a chunked body over the limit is 413, like one with Content-Length.

The app runs under werkzeug's threaded server on 127.0.0.1, which (like gunicorn) de-chunks the body and marks the
stream as terminated; requests are written on a raw socket so the framing is exactly the attacker's. The reported
case: 5 MiB (the default limit) of valid JSON followed by junk, sent chunked, was cut at the limit, parsed and
answered 200.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from cds_service import create_app
from cds_service.config import Settings
from tests.functional.conftest import EXAMPLE_NOW, load_example

pytestmark = pytest.mark.timeout(60)

LIMIT = 5 * 1024 * 1024  # the default MGCDS_MAX_BODY_BYTES
PV = "/cds-services/mg-patient-view"


@pytest.fixture
def port(tmp_path: Path) -> Iterator[int]:
    """The development-mode app (no JWT: the body limit is checked for every caller) on a loopback port."""
    app = create_app(Settings(dev=True, instance_path=tmp_path / "instance"), clock=lambda: EXAMPLE_NOW)
    assert app.extensions["mgcds.settings"].max_body_bytes == LIMIT
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_port)
    finally:
        server.shutdown()
        thread.join(timeout=10)
        app.extensions["mgcds.runtime"].close()


def _padded_request(size: int) -> bytes:
    """The example request, valid JSON of exactly ``size`` bytes (padded with spaces before the closing brace)."""
    raw = json.dumps(load_example("patient-view-request.json")).encode()
    assert raw.endswith(b"}")
    return raw[:-1] + b" " * (size - len(raw)) + b"}"


def _post(port: int, body: bytes, *, chunked: bool) -> int:
    """POST ``body`` on a raw socket (chunked in 64 KiB chunks, or with Content-Length); the status answered."""
    head = f"POST {PV} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nConnection: close\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        if chunked:
            sock.sendall((head + "Transfer-Encoding: chunked\r\n\r\n").encode())
            # The server may answer 413 and close before the rest is sent: the answer is what counts.
            with contextlib.suppress(OSError):
                for start in range(0, len(body), 65536):
                    chunk = body[start : start + 65536]
                    sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                sock.sendall(b"0\r\n\r\n")
        else:
            with contextlib.suppress(OSError):  # as above
                sock.sendall((head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body)
        answer = b""
        while b"\r\n" not in answer:
            data = sock.recv(4096)
            if not data:
                break
            answer += data
    return int(answer.split(b" ", 2)[1])


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
def test_b9_valid_json_at_the_limit_followed_by_junk_is_413(port: int, chunked: bool) -> None:
    body = _padded_request(LIMIT) + b"junk" * 1024
    assert _post(port, body, chunked=chunked) == 413


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
def test_a_body_one_byte_over_the_limit_is_413(port: int, chunked: bool) -> None:
    assert _post(port, _padded_request(LIMIT + 1), chunked=chunked) == 413


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
def test_a_body_exactly_at_the_limit_is_read(port: int, chunked: bool) -> None:
    assert _post(port, _padded_request(LIMIT), chunked=chunked) == 200


def test_a_small_chunked_request_is_answered(port: int) -> None:
    assert _post(port, _padded_request(2000), chunked=True) == 200

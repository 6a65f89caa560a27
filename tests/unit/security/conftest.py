"""Security test fixtures: keys generated here, a counting HTTP listener on 127.0.0.1, token building."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.support.loopback import JsonHandler, serve_on_loopback
from tests.support.security import SigningKey, jwks_of, sign

__all__ = ["SigningKey", "jwks_of", "sign"]

# One fixed instant for every token test (2026-01-01T00:00:00Z); tokens are built relative to it.
NOW = 1_767_225_600.0
AUDIENCE = "https://mgcds.example.org/cds-services/mg-patient-view"
ISSUER = "https://ehr.example.org"
TENANT = "tenant-a"


@pytest.fixture(scope="session")
def es384_key() -> SigningKey:
    """A fresh P-384 key (ES384)."""
    return SigningKey(ec.generate_private_key(ec.SECP384R1()), "es384-key", "ES384")


@pytest.fixture(scope="session")
def rs384_key() -> SigningKey:
    """A fresh 2048-bit RSA key (RS384)."""
    return SigningKey(rsa.generate_private_key(public_exponent=65537, key_size=2048), "rs384-key", "RS384")


@pytest.fixture(scope="session")
def es256_key() -> SigningKey:
    """A fresh P-256 key (ES256, only accepted when configured)."""
    return SigningKey(ec.generate_private_key(ec.SECP256R1()), "es256-key", "ES256")


def claims(**overrides: Any) -> dict[str, Any]:
    """Valid CDS Hooks JWT claims at NOW; keyword arguments replace (value None removes) a claim."""
    payload: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "exp": int(NOW) + 300,
        "iat": int(NOW),
        "jti": str(uuid.uuid4()),
        "tenant": TENANT,
    }
    for name, value in overrides.items():
        if value is None:
            payload.pop(name, None)
        else:
            payload[name] = value
    return payload


@dataclass
class Listener:
    """An HTTP server on 127.0.0.1 that serves JSON documents and counts every TCP connection it accepts."""

    base_url: str
    documents: dict[str, Any] = field(default_factory=dict)
    connections: int = 0
    requests: list[str] = field(default_factory=list)

    def url(self, path: str) -> str:
        """The absolute URL of ``path`` on this listener."""
        return self.base_url + path


@pytest.fixture
def listener() -> Iterator[Listener]:
    """A counting HTTP listener on 127.0.0.1 (HTTP/1.0: one connection per request)."""
    state = Listener(base_url="")
    lock = threading.Lock()

    class Handler(JsonHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            with lock:
                state.requests.append(self.path)
            document = state.documents.get(self.path)
            self.send_json(200 if document is not None else 404, document if document is not None else {})

    def count() -> None:
        with lock:
            state.connections += 1

    with serve_on_loopback(Handler, count) as port:
        state.base_url = f"http://127.0.0.1:{port}"
        yield state

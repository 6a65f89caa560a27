"""Security test helpers shared by unit and functional tests: signing keys, JWTs, an issuer registry on disk,
and a FHIR server on 127.0.0.1 that counts every TCP connection it accepts (to prove "no outbound request")."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt

from tests.support.fhir_peer import FhirPeer
from tests.support.loopback import JsonHandler, serve_on_loopback


@dataclass
class SigningKey:
    """A private key, the kid and alg it signs with, and its public JWK."""

    private_key: Any
    kid: str
    alg: str

    def public_jwk(self) -> dict[str, Any]:
        """The public half as a JWK with kid, use and alg."""
        algorithm = jwt.get_algorithm_by_name(self.alg)
        data: dict[str, Any] = json.loads(algorithm.to_jwk(self.private_key.public_key()))
        data.update(kid=self.kid, use="sig", alg=self.alg)
        return data


def jwks_of(*keys: SigningKey) -> dict[str, Any]:
    """A JWK Set holding the public halves of ``keys``."""
    return {"keys": [key.public_jwk() for key in keys]}


def sign(key: SigningKey, payload: dict[str, Any], **header: Any) -> str:
    """A compact JWS of ``payload`` signed by ``key`` with kid/typ and any extra header fields."""
    headers = {"kid": key.kid, "typ": "JWT", **header}
    return jwt.encode(payload, key.private_key, algorithm=key.alg, headers=headers)


def live_claims(issuer: str, audience: str, **overrides: Any) -> dict[str, Any]:
    """Valid CDS Hooks JWT claims at the real current time (the app's verifier uses the wall clock)."""
    now = int(time.time())
    payload: dict[str, Any] = {"iss": issuer, "aud": audience, "exp": now + 300, "iat": now, "jti": str(uuid.uuid4())}
    for name, value in overrides.items():
        if value is None:
            payload.pop(name, None)
        else:
            payload[name] = value
    return payload


def write_registry(directory: Path, issuers: dict[str, dict[str, Any]], jwks: dict[str, Any]) -> Path:
    """Write ``jwks.json`` and a ``trusted-issuers.json`` whose issuers without a key source use that file."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "jwks.json").write_text(json.dumps(jwks))
    entries = {}
    for issuer, entry in issuers.items():
        has_keys = any(k in entry for k in ("jwks_url", "jwks_file", "jku_allowlist"))
        entries[issuer] = entry if has_keys else {"jwks_file": "jwks.json", **entry}
    path = directory / "trusted-issuers.json"
    path.write_text(json.dumps(entries))
    return path


@dataclass
class CountingFhirServer:
    """A FhirPeer behind a server that counts connections and can answer some paths with a redirect."""

    peer: FhirPeer
    base_url: str = ""
    connections: int = 0
    redirects: dict[str, str] = field(default_factory=dict)


@contextmanager
def counting_fhir_server() -> Iterator[CountingFhirServer]:
    """Start a counting FHIR server on a free 127.0.0.1 port (``base_url`` ends in ``/fhir``); stop it after."""
    state = CountingFhirServer(peer=FhirPeer())
    lock = threading.Lock()

    class Handler(JsonHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            for prefix, location in state.redirects.items():
                if self.path.startswith(prefix):
                    self.send_response(302)
                    self.send_header("Location", location)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
            status, body = state.peer.answer(self.path, self.headers.get("Authorization"))
            self.send_json(status, body, "application/fhir+json")

    def count() -> None:
        with lock:
            state.connections += 1

    with serve_on_loopback(Handler, count) as port:
        state.base_url = f"http://127.0.0.1:{port}/fhir"
        state.peer.base_url = state.base_url
        yield state

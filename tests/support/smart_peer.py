"""A small SMART Backend Services authorization server and FHIR server on 127.0.0.1, for unit tests.

It checks client assertions the way the specification says a server must (signature with the registered key,
``iss`` = ``sub`` = client id, ``aud`` = its token URL, ``exp`` at most five minutes ahead, ``jti`` not seen before),
records every token request, and serves a FHIR read that demands one of the tokens it issued. Tests can revoke
tokens, slow it down, or replace any answer.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import jwt

from tests.support.loopback import JsonHandler, serve_on_loopback

# (status, body, extra headers); body bytes are sent as they are.
Answer = tuple[int, Any, dict[str, str]]
Override = Callable[[dict[str, str]], Answer | None]

PATIENT = {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1950-05-05"}


@dataclass
class SmartPeer:
    """State of the fake servers; ``base_url`` is the FHIR base (``.../fhir``), ``token_url`` the token endpoint."""

    client_id: str
    public_keys: dict[str, Any]  # kid -> public key object
    base_url: str = ""
    token_url: str = ""
    expires_in: Any = 300
    token_delay: float = 0.0
    smart_configuration: dict[str, Any] | None = None  # None: the default document
    discovery_status: int = 200
    token_override: Override | None = None
    token_forms: list[dict[str, str]] = field(default_factory=list)
    discovery_requests: int = 0
    fhir_requests: list[str | None] = field(default_factory=list)  # the Authorization header of each read
    issued: list[str] = field(default_factory=list)
    revoked: set[str] = field(default_factory=set)
    forbidden: bool = False  # FHIR answers 403 (a valid token without the scope)
    seen_jti: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)
    clock: Callable[[], float] = time.time  # the tests' fake clock, so a jump ahead does not look like a bad exp

    def discovery(self) -> Answer:
        with self.lock:
            self.discovery_requests += 1
        if self.discovery_status != 200:
            return self.discovery_status, {"error": "not here"}, {}
        document = self.smart_configuration or {
            "token_endpoint": self.token_url,
            "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
            "grant_types_supported": ["client_credentials"],
            "capabilities": ["client-confidential-asymmetric", "permission-v2"],
        }
        return 200, document, {}

    def token(self, form: dict[str, str]) -> Answer:
        with self.lock:
            self.token_forms.append(form)
        if self.token_delay:
            time.sleep(self.token_delay)
        if self.token_override is not None:
            answer = self.token_override(form)
            if answer is not None:
                return answer
        problem = self._check_assertion(form)
        if problem is not None:
            return 401, {"error": "invalid_client", "error_description": problem}, {}
        with self.lock:
            value = f"token-{len(self.issued) + 1}-{self.client_id}"
            self.issued.append(value)
        return 200, {"access_token": value, "token_type": "bearer", "expires_in": self.expires_in, "scope": "x"}, {}

    def _check_assertion(self, form: dict[str, str]) -> str | None:
        if form.get("grant_type") != "client_credentials":
            return "wrong grant_type"
        if form.get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer":
            return "wrong client_assertion_type"
        assertion = form.get("client_assertion", "")
        try:
            header = jwt.get_unverified_header(assertion)
            key = self.public_keys[header["kid"]]
            claims = jwt.decode(
                assertion,
                key,
                algorithms=["RS384", "ES384"],
                audience=self.token_url,
                issuer=self.client_id,
                options={"require": ["iss", "sub", "aud", "exp", "jti"], "verify_exp": False},
            )
        except (jwt.PyJWTError, KeyError):
            return "client authentication failed"
        now = self.clock()
        if claims["sub"] != self.client_id or not now < claims["exp"] <= now + 300:
            return "bad sub or exp"
        with self.lock:
            if claims["jti"] in self.seen_jti:
                return "jti reused"
            self.seen_jti.add(claims["jti"])
        return None

    def fhir(self, path: str, authorization: str | None) -> Answer:
        with self.lock:
            self.fhir_requests.append(authorization)
            valid = {f"Bearer {t}" for t in self.issued if t not in self.revoked}
        if authorization not in valid:
            return 401, {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "login"}]}, {}
        if self.forbidden:
            return 403, {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "forbidden"}]}, {}
        if path == "/fhir/Patient/p1":
            return 200, PATIENT, {}
        return 404, {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "not-found"}]}, {}

    def revoke_all(self) -> None:
        """Make every token issued so far invalid at the FHIR server (as an expiry or a revocation does)."""
        with self.lock:
            self.revoked.update(self.issued)


@contextmanager
def running_smart_peer(client_id: str, public_keys: dict[str, Any]) -> Iterator[SmartPeer]:
    """Start the fake authorization and FHIR server on a free loopback port."""
    peer = SmartPeer(client_id=client_id, public_keys=public_keys)

    class Handler(JsonHandler):
        def _send(self, answer: Answer) -> None:
            status, body, headers = answer
            raw = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(raw)

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self.path == "/fhir/.well-known/smart-configuration":
                self._send(peer.discovery())
            else:
                self._send(peer.fhir(self.path, self.headers.get("Authorization")))

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            length = int(self.headers.get("Content-Length", "0"))
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            if self.path == "/auth/token":
                self._send(peer.token(form))
            else:
                self._send((404, {}, {}))

    with serve_on_loopback(Handler) as port:
        peer.base_url = f"http://127.0.0.1:{port}/fhir"
        peer.token_url = f"http://127.0.0.1:{port}/auth/token"
        yield peer

"""Issuers' keys: JWK Sets fetched from a URL or read from a file, parsed and cached (the real KeySource).

A set is fetched when first needed and kept for ``ttl_seconds``; a token naming a ``kid`` the cached set lacks
triggers one refresh. Whatever the outcome, a location is fetched at most once per interval: after a success, no
refresh for ``min_refresh_interval_seconds`` (key rotation without letting forged kids make us fetch on every call);
after a failure, the failure itself is cached and the next attempt waits a backoff that doubles up to that interval
(tokens naming an issuer whose JWKS answers 500 once made one fetch each). Each location has its own lock, held
while it is fetched, so a slow issuer delays only its own callers. Fetching never follows redirects, reads at most
MAX_JWKS_BYTES, and gives up after its timeout in total, not per read (a server dribbling bytes cannot hold it).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import requests
import urllib3
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.exceptions import PyJWKError

from cds_service.errors import KeysUnavailable
from cds_service.security.keys import KeyLocation, VerificationKey

MAX_JWKS_BYTES = 256 * 1024


def parse_jwks(document: Any) -> dict[str, VerificationKey]:
    """Signature keys of a JWK Set by kid; keys without kid, for encryption or unusable are skipped."""
    if not isinstance(document, Mapping) or not isinstance(document.get("keys"), list):
        raise KeysUnavailable("not a JWK Set (no 'keys' array)")
    keys: dict[str, VerificationKey] = {}
    for entry in document["keys"]:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("kid"), str):
            continue
        if entry.get("use", "sig") != "sig":
            continue
        try:
            key = jwt.PyJWK(dict(entry)).key
        except (PyJWKError, ValueError, TypeError):
            continue
        if isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            key = key.public_key()  # a JWK with private parts still verifies with its public half
        if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
            continue  # OKP and symmetric keys cannot verify the algorithms we accept
        declared = entry.get("alg")
        keys[entry["kid"]] = VerificationKey(key, declared if isinstance(declared, str) else None)
    return keys


FIRST_FAILURE_BACKOFF_SECONDS = 2.0


@dataclass
class _Location:
    """What is known about one key location: its keys (or last failure) and when it was last fetched."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    keys: dict[str, VerificationKey] | None = None
    fetched_at: float = 0.0  # when ``keys`` arrived
    attempted_at: float | None = None  # the last fetch, whatever its outcome
    failures: int = 0  # consecutive failed fetches
    error: str = ""


class JwksSource:
    """Fetches and caches JWK Sets (URL or file); refreshes on an unknown kid at most once per interval."""

    def __init__(
        self,
        session: requests.Session | None = None,
        *,
        timeout_seconds: float = 5.0,
        ttl_seconds: float = 300.0,
        min_refresh_interval_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._session = session or requests.Session()
        self._timeout = timeout_seconds
        self._ttl = ttl_seconds
        self._min_refresh = min_refresh_interval_seconds
        self._clock = clock
        self._locations: dict[KeyLocation, _Location] = {}
        self._locations_lock = threading.Lock()  # guards the dict only, never held across I/O
        self.fetch_count = 0

    def _location(self, location: KeyLocation) -> _Location:
        # Locations come from the registry and its jku allowlists: the dict is as bounded as the configuration.
        with self._locations_lock:
            return self._locations.setdefault(location, _Location())

    def _may_fetch(self, state: _Location, now: float) -> bool:
        """Whether the interval since the last attempt allows another: the refresh interval after a success, a
        backoff doubling from FIRST_FAILURE_BACKOFF_SECONDS up to it after failures."""
        if state.attempted_at is None:
            return True
        wait = self._min_refresh
        if state.failures:
            wait = min(self._min_refresh, FIRST_FAILURE_BACKOFF_SECONDS * 2 ** (state.failures - 1))
        return now - state.attempted_at >= wait

    def find_key(self, location: KeyLocation, kid: str) -> VerificationKey | None:
        """The key with this kid: fetch the set if not cached, refresh once (rate-limited) on unknown kid."""
        # Fail closed: when keys cannot be fetched, KeysUnavailable propagates and the caller is rejected.
        state = self._location(location)
        with state.lock:  # only callers of this location wait here, also while it is fetched
            now = self._clock()
            may_fetch = self._may_fetch(state, now)
            # Keys stay usable for their TTL, and past it until the next fetch is allowed.
            usable = state.keys is not None and (now - state.fetched_at < self._ttl or not may_fetch)
            if usable and state.keys is not None and kid in state.keys:
                return state.keys[kid]
            if not may_fetch:
                if usable:
                    return None  # an unknown kid, and the set was fetched too recently to refresh it
                raise KeysUnavailable(state.error or "no usable JWK Set, and the next fetch is not due yet")
            state.attempted_at = now
            try:
                keys = self._load(location)
            except KeysUnavailable as exc:
                state.failures += 1
                state.error = str(exc)
                if state.keys is not None and now - state.fetched_at < self._ttl:
                    return None  # the set we hold is still within its TTL and does not have this kid
                state.keys = None
                raise
            state.keys, state.fetched_at, state.failures, state.error = keys, now, 0, ""
            return keys.get(kid)

    def _load(self, location: KeyLocation) -> dict[str, VerificationKey]:
        self.fetch_count += 1
        if isinstance(location, Path):
            try:
                return parse_jwks(json.loads(location.read_text(encoding="utf-8")))
            except (OSError, ValueError) as exc:
                raise KeysUnavailable(f"cannot read JWKS file: {exc}") from exc
        deadline = time.monotonic() + self._timeout
        try:
            # No redirects: an allowlisted JWKS URL must not bounce us to a host nobody allowlisted.
            response = self._session.get(
                location,
                timeout=self._timeout,
                allow_redirects=False,
                stream=True,
                headers={"Accept": "application/json"},
            )
            with response:
                if response.status_code != 200:
                    raise KeysUnavailable(f"JWKS URL answered HTTP {response.status_code}")
                body = bytearray()
                while len(body) <= MAX_JWKS_BYTES:
                    # read1: at most one read from the socket per call, so the deadline is checked between reads.
                    chunk = response.raw.read1(16 * 1024)
                    if not chunk:
                        break
                    body.extend(chunk)
                    if time.monotonic() > deadline:
                        raise KeysUnavailable("JWKS URL too slow (timeout)")
                if len(body) > MAX_JWKS_BYTES:
                    raise KeysUnavailable("JWKS document too large")
        except requests.RequestException as exc:
            raise KeysUnavailable(f"JWKS URL unreachable: {type(exc).__name__}") from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:  # read1 is urllib3's: requests does not wrap it
            raise KeysUnavailable(f"JWKS URL unreachable: {type(exc).__name__}") from exc
        try:
            return parse_jwks(json.loads(body))
        except ValueError as exc:
            raise KeysUnavailable("JWKS document is not JSON") from exc


class StaticKeySource:
    """The in-memory KeySource: fixed JWK Sets by location (tests, and tools that hold the keys already)."""

    def __init__(self, sets: Mapping[KeyLocation, Mapping[str, VerificationKey]]) -> None:
        self._sets = {location: dict(keys) for location, keys in sets.items()}

    @classmethod
    def from_documents(cls, documents: Mapping[KeyLocation, Any]) -> StaticKeySource:
        """Parse JWK Set documents given by location."""
        return cls({location: parse_jwks(document) for location, document in documents.items()})

    def find_key(self, location: KeyLocation, kid: str) -> VerificationKey | None:
        """The key with this kid at this location; KeysUnavailable for a location it does not hold."""
        keys = self._sets.get(location)
        if keys is None:
            raise KeysUnavailable("no JWK Set at this location")
        return keys.get(kid)

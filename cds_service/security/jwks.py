"""Issuers' keys: JWK Sets fetched from a URL or read from a file, parsed and cached (the real KeySource).

A set is fetched when first needed and kept for ``ttl_seconds``; a token naming a ``kid`` the cached set lacks
triggers one refresh, at most once per ``min_refresh_interval_seconds`` per location (key rotation without letting
forged kids make us fetch on every call). Fetching never follows redirects and reads at most MAX_JWKS_BYTES.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import cachetools
import jwt
import requests
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


class JwksSource:
    """Fetches and caches JWK Sets (URL or file); refreshes on an unknown kid at most once per interval."""

    def __init__(
        self,
        session: requests.Session | None = None,
        *,
        timeout_seconds: float = 5.0,
        ttl_seconds: float = 300.0,
        min_refresh_interval_seconds: float = 60.0,
        max_locations: int = 64,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._session = session or requests.Session()
        self._timeout = timeout_seconds
        self._min_refresh = min_refresh_interval_seconds
        self._clock = clock
        self._cache: cachetools.TTLCache[KeyLocation, dict[str, VerificationKey]] = cachetools.TTLCache(
            maxsize=max_locations, ttl=ttl_seconds, timer=clock
        )
        self._last_fetch: dict[KeyLocation, float] = {}
        self._lock = threading.Lock()
        self.fetch_count = 0

    def _load(self, location: KeyLocation) -> dict[str, VerificationKey]:
        self.fetch_count += 1
        self._last_fetch[location] = self._clock()
        if isinstance(location, Path):
            try:
                return parse_jwks(json.loads(location.read_text(encoding="utf-8")))
            except (OSError, ValueError) as exc:
                raise KeysUnavailable(f"cannot read JWKS file: {exc}") from exc
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
                for chunk in response.iter_content(chunk_size=16 * 1024):
                    body.extend(chunk)
                    if len(body) > MAX_JWKS_BYTES:
                        raise KeysUnavailable("JWKS document too large")
        except requests.RequestException as exc:
            raise KeysUnavailable(f"JWKS URL unreachable: {type(exc).__name__}") from exc
        try:
            return parse_jwks(json.loads(body))
        except ValueError as exc:
            raise KeysUnavailable("JWKS document is not JSON") from exc

    def find_key(self, location: KeyLocation, kid: str) -> VerificationKey | None:
        """The key with this kid: fetch the set if not cached, refresh once (rate-limited) on unknown kid."""
        # Fail closed: when keys cannot be fetched, KeysUnavailable propagates and the caller is rejected.
        with self._lock:
            keys = self._cache.get(location)
            if keys is None:
                keys = self._load(location)
                self._cache[location] = keys
                return keys.get(kid)
            if kid in keys:
                return keys[kid]
            last = self._last_fetch.get(location)
            if last is not None and self._clock() - last < self._min_refresh:
                return None
            keys = self._load(location)
            self._cache[location] = keys
            return keys.get(kid)


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

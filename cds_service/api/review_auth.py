"""Who may open /audit, and what a wrong guess may cost (issue 16 B11; issue 18 item 3, the --dev link).

Before this, every failed basic-auth attempt ran scrypt (about 0.1 s of a core and 32 MiB): 32 parallel guesses
slowed hook calls from 4 ms to 0.6-2.2 s on two cores. Now:

- :class:`AuthThrottle` keeps two budgets of credential checks, one per client address and one for all clients,
  in moving windows of the ``limits`` package. A check takes one unit from both *before* anything is compared or
  hashed; beyond either budget the attempt is answered 429 with ``Retry-After`` and costs nothing. Taking the unit
  first (not after a failure) is what bounds the hashing under parallel guesses: 32 guesses at once run at most
  as many hashes as the budgets allow, however they interleave. The budgets live in this process's memory, so
  with N gunicorn workers the effective budgets are N times the configured ones (docs/security.md).
- :class:`VerifiedCredentials` remembers credentials that passed, for a while, as HMACs under a key that exists
  only in this process: a reviewer's browser resends basic auth with every page and stylesheet, and each of
  those would otherwise cost a hash and a unit of the budget. A remembered credential passes without either, so
  a guessing attack that exhausts the budgets does not lock out a reviewer already signed in to that worker.
- :class:`DevReviewLink` is the one-time link ``mgcds serve --dev`` prints: it works once (across workers, by a
  marker file the master creates before forking and the first redeemer removes), and exchanges itself for a
  session cookie (HttpOnly, SameSite=Strict, Path=/audit) that every worker recognises.

The client address is ``request.remote_addr``: behind a reverse proxy that is the proxy's address (the project
configures no trusted proxies, so ``X-Forwarded-For`` is never believed), and every client then shares one
per-client budget. IPv6 clients are grouped by /64, the block one host usually holds.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import math
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from cachetools import TTLCache
from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

VERIFIED_TTL_SECONDS = 900.0
VERIFIED_MAX = 64
DEV_COOKIE = "mgcds_dev_review"
DEV_LINK_PATH = "/audit/dev-login"
_DEV_MARKER_PREFIX = "dev-review-link-"


def client_key(remote_addr: str | None) -> str:
    """The throttle's key for a client address: the address itself, or its /64 for IPv6."""
    if not remote_addr:
        return "unknown"
    try:
        address = ipaddress.ip_address(remote_addr)
    except ValueError:
        return remote_addr[:64]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{address}/64", strict=False))
    return str(address)


class AuthThrottle:
    """Per-client and overall budgets of credential checks, taken before each check (this process only)."""

    def __init__(self, per_client: str, overall: str) -> None:
        self._per_client: list[RateLimitItem] = parse_many(per_client)
        self._overall: list[RateLimitItem] = parse_many(overall)
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        # One check at a time takes its units, so the two budgets are taken together or not at all (cheap: no I/O).
        self._lock = threading.Lock()

    def acquire(self, client: str) -> int | None:
        """Take one check for ``client`` from both budgets: None when allowed, else seconds until one may pass."""
        with self._lock:
            for item in self._per_client:
                if not self._limiter.hit(item, "client", client):
                    return self._retry_after(item, "client", client)
            for item in self._overall:
                if not self._limiter.hit(item, "all"):
                    return self._retry_after(item, "all")
        return None

    def _retry_after(self, item: RateLimitItem, *identifiers: str) -> int:
        reset = self._limiter.get_window_stats(item, *identifiers).reset_time
        return max(1, math.ceil(reset - time.time()))


class VerifiedCredentials:
    """Credentials that passed recently, kept as HMACs under a key of this process (never the secrets)."""

    def __init__(self, ttl_seconds: float = VERIFIED_TTL_SECONDS, size: int = VERIFIED_MAX) -> None:
        self._key = secrets.token_bytes(32)
        self._seen: TTLCache[bytes, bool] = TTLCache(maxsize=size, ttl=ttl_seconds)
        self._lock = threading.Lock()

    def _fingerprint(self, parts: tuple[str, ...]) -> bytes:
        return hmac.new(self._key, json.dumps(parts).encode("utf-8"), hashlib.sha256).digest()

    def known(self, *parts: str) -> bool:
        """True when this exact credential passed within the last while."""
        fingerprint = self._fingerprint(parts)
        with self._lock:
            return self._seen.get(fingerprint, False)

    def remember(self, *parts: str) -> None:
        """Note that this credential passed."""
        fingerprint = self._fingerprint(parts)
        with self._lock:
            self._seen[fingerprint] = True


def dev_marker_path(instance_path: Path, token: str) -> Path:
    """The file whose presence says the dev link of ``token`` has not been used yet."""
    return instance_path / f"{_DEV_MARKER_PREFIX}{hashlib.sha256(token.encode()).hexdigest()[:32]}"


def new_dev_review_token(instance_path: Path) -> str:
    """A fresh one-time token, armed: call once, in the process that forks the workers, before they start."""
    instance_path.mkdir(parents=True, exist_ok=True)
    for stale in instance_path.glob(f"{_DEV_MARKER_PREFIX}*"):  # links of earlier runs: their tokens are gone
        stale.unlink(missing_ok=True)
    token = secrets.token_urlsafe(32)
    dev_marker_path(instance_path, token).touch(mode=0o600)
    return token


@dataclass(frozen=True)
class DevReviewLink:
    """The --dev one-time link: redeemed once, for a session cookie every worker recognises."""

    token: str
    instance_path: Path

    def matches(self, presented: str) -> bool:
        """True when ``presented`` is this link's token (constant time)."""
        return hmac.compare_digest(presented.encode("utf-8"), self.token.encode("utf-8"))

    def redeem(self) -> bool:
        """Use the link up: True for the first caller in any worker, False ever after (the marker is gone)."""
        try:
            dev_marker_path(self.instance_path, self.token).unlink()
        except FileNotFoundError:
            return False
        return True

    @property
    def session_value(self) -> str:
        """The session cookie's value: derived from the token, so every worker can check it and none stores it."""
        return hmac.new(self.token.encode("utf-8"), b"mgcds dev review session", hashlib.sha256).hexdigest()

    def session_ok(self, cookie: str | None) -> bool:
        """True when the request carries this link's session cookie."""
        return cookie is not None and hmac.compare_digest(cookie.encode("utf-8"), self.session_value.encode("utf-8"))

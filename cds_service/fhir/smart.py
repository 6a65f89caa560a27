"""SMART Backend Services: an access token for a protected FHIR server, without a user.

HL7 SMART App Launch 2.x, "Backend Services" with ``client-confidential-asymmetric`` authentication
(https://hl7.org/fhir/smart-app-launch/backend-services.html, RFC 7523):

1. read ``token_endpoint`` (and the supported auth methods and algorithms) from
   ``{fhir_base}/.well-known/smart-configuration``, unless a token endpoint is configured;
2. sign a short-lived client assertion (``iss`` = ``sub`` = client id, ``aud`` = token endpoint, ``exp`` <= 5 min,
   a fresh ``jti``; header ``alg`` RS384 or ES384, ``kid``, optionally ``jku``) with the registered private key;
3. POST ``grant_type=client_credentials`` with the assertion and the scopes;
4. use the access token until shortly before ``expires_in`` runs out (one refresh at a time across threads; while
   the authorization server is unreachable, until it does run out), and fetch a new one once when the FHIR server
   answers 401.

Failures are the project's typed exceptions: :class:`ConfigurationError` for a key or setting that can never work,
:class:`FhirUnreachable`, :class:`FhirAuthError`, :class:`FhirServerError` and :class:`FhirBadResponse` for the
servers' answers. No message ever holds a token, an assertion or key material.

This module is one coherent thing, the token client (discovery, token requests, the cache and the 401 retry, each
needing the others' checks), and so a little over the project's ~450 lines; the key half is :mod:`smart_keys`.
"""

from __future__ import annotations

import ipaddress
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests

from cds_service.errors import (
    ConfigurationError,
    FhirAuthError,
    FhirBadResponse,
    FhirError,
    FhirServerError,
    FhirUnreachable,
)
from cds_service.fhir.smart_keys import build_client_assertion, load_signing_key

T = TypeVar("T")

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
AUTH_METHOD = "private_key_jwt"
GRANT_TYPE = "client_credentials"
WELL_KNOWN = ".well-known/smart-configuration"
# What the service reads (hooks/base.py prefetch and hooks/pipeline.py), in SMART v2 syntax (read + search).
DEFAULT_SCOPE = " ".join(
    f"system/{resource}.rs"
    for resource in (
        "Patient",
        "Observation",
        "MedicationRequest",
        "MedicationStatement",
        "Medication",
        "Condition",
        "ServiceRequest",
    )
)
# SMART: exp "no more than five minutes in the future". Four minutes leave room for a clock that runs ahead of
# the authorization server's.
# A discovery document or token response bigger than this is not one: refuse rather than hold it in memory.
MAX_BODY_BYTES = 256 * 1024
MAX_TOKEN_CHARS = 16 * 1024
# expires_in is required by SMART; a server that leaves it out gets its token reused for one minute at most.
LIFETIME_WITHOUT_EXPIRES_IN = 60
# RFC 6749 section 5.2: error codes are printable ASCII without '"' and '\'. Anything else is not echoed.
_ERROR_CODE = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]{1,64}")
# A run this long of token-like characters in a server's error text might be a token; it is cut out.
_TOKEN_LIKE = re.compile(r"[A-Za-z0-9_\-.~+/=]{24,}")
# RFC 6750 b64token, the characters an access token may use in an Authorization header.
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


@dataclass(frozen=True)
class SmartSettings:
    """What a SMART Backend Services client needs: the registration at the EHR and the local private key."""

    client_id: str
    private_key_path: Path
    key_id: str
    algorithm: str | None = None  # RS384 or ES384; None: the one the key fits
    scope: str = DEFAULT_SCOPE
    token_endpoint: str | None = None  # skips discovery
    jku: str | None = None  # the JWKS URL registered with the EHR, sent in the assertion header
    timeout_seconds: float = 10.0
    refresh_margin_seconds: float = 60.0


@dataclass(frozen=True)
class AccessToken:
    """An access token and when to stop using it (epoch seconds); ``value`` never appears in a repr."""

    value: str = field(repr=False)
    expires_at: float
    refresh_at: float
    scope: str | None = None


@dataclass(frozen=True)
class SmartConfiguration:
    """The parts of ``.well-known/smart-configuration`` a backend client uses (None: not advertised)."""

    token_endpoint: str
    auth_methods: tuple[str, ...] | None = None
    signing_algorithms: tuple[str, ...] | None = None
    grant_types: tuple[str, ...] | None = None
    scopes: tuple[str, ...] | None = None


# -- URLs and HTTP ------------------------------------------------------------------------------------------------


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _secure_url_problem(url: str) -> str | None:
    """Why ``url`` may not carry credentials (None if it may): https only, http only to a loopback host."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return "is not a URL"
    if parts.scheme not in ("http", "https") or not host:
        return "is not an http(s) URL"
    if parts.username is not None or parts.password is not None or parts.fragment:
        return "must not hold credentials or a fragment"
    if parts.scheme == "http" and not _is_loopback(host):
        return "must use https (http only to a loopback host)"
    return None


def same_origin(a: str, b: str) -> bool:
    """True when two URLs share scheme, host and port (the only place a FHIR token may be sent)."""
    pa, pb = urlsplit(a), urlsplit(b)
    return (pa.scheme, (pa.hostname or "").lower(), pa.port) == (pb.scheme, (pb.hostname or "").lower(), pb.port)


def _safe_error_text(body: bytes) -> str:
    """The OAuth ``error`` (and a scrubbed ``error_description``) of an error answer, for a message."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return ""
    if not isinstance(data, dict):
        return ""
    error = data.get("error")
    if not isinstance(error, str) or not _ERROR_CODE.fullmatch(error):
        return ""
    text = f" {error}"
    description = data.get("error_description")
    if isinstance(description, str) and description:
        cleaned = _TOKEN_LIKE.sub("[...]", "".join(c if c.isprintable() else " " for c in description[:200]))
        text += f": {cleaned}"
    return text


def _read_capped(response: requests.Response, url: str, what: str) -> bytes:
    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in response.iter_content(chunk_size=16384):
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise FhirBadResponse(f"{what} answer too large", url=url)
            chunks.append(chunk)
    except requests.Timeout as exc:
        raise FhirUnreachable(f"{what} did not answer in time", url=url) from exc
    except requests.RequestException as exc:
        raise FhirUnreachable(f"{what} connection broke mid-answer", url=url) from exc
    finally:
        response.close()
    return b"".join(chunks)


def _json_object(body: bytes, url: str, what: str) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        # "from None": a JSONDecodeError keeps the whole document, which may hold a token, for any traceback.
        raise FhirBadResponse(f"{what} answered something that is not JSON", url=url) from None
    if not isinstance(data, dict):
        raise FhirBadResponse(f"{what} answered JSON that is not an object", url=url)
    return data


def _string_list(document: dict[str, Any], name: str, url: str) -> tuple[str, ...] | None:
    value = document.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise FhirBadResponse(f"smart-configuration field {name} is not a list of strings", url=url)
    return tuple(value)


def discover(fhir_base: str, session: requests.Session, timeout_seconds: float) -> SmartConfiguration:
    """Read ``{fhir_base}/.well-known/smart-configuration`` (no redirects followed, size-capped)."""
    url = f"{fhir_base.rstrip('/')}/{WELL_KNOWN}"
    what = "SMART discovery"
    try:
        response = session.get(
            url, headers={"Accept": "application/json"}, timeout=timeout_seconds, allow_redirects=False, stream=True
        )
    except requests.Timeout as exc:
        raise FhirUnreachable(f"{what} did not answer in time", url=url) from exc
    except requests.RequestException as exc:
        raise FhirUnreachable(f"{what} unreachable", url=url) from exc
    status = response.status_code
    if status != 200:
        response.close()
        if status >= 500:
            raise FhirServerError(f"{what} failed (HTTP {status})", url=url, status=status)
        raise FhirBadResponse(
            f"{what} answered HTTP {status}; the server may not publish one (configure the token endpoint)",
            url=url,
            status=status,
        )
    document = _json_object(_read_capped(response, url, what), url, what)
    token_endpoint = document.get("token_endpoint")
    if not isinstance(token_endpoint, str) or not token_endpoint:
        raise FhirBadResponse("smart-configuration has no token_endpoint", url=url)
    problem = _secure_url_problem(token_endpoint)
    if problem is not None:
        raise FhirBadResponse(f"smart-configuration token_endpoint {problem}", url=url)
    return SmartConfiguration(
        token_endpoint=token_endpoint,
        auth_methods=_string_list(document, "token_endpoint_auth_methods_supported", url),
        signing_algorithms=_string_list(document, "token_endpoint_auth_signing_alg_values_supported", url),
        grant_types=_string_list(document, "grant_types_supported", url),
        scopes=_string_list(document, "scopes_supported", url),
    )


def _check_supported(config: SmartConfiguration, algorithm: str) -> None:
    """Refuse up front what the server says it will refuse, with a message that says what to change."""
    if config.auth_methods is not None and AUTH_METHOD not in config.auth_methods:
        raise ConfigurationError(
            f"the authorization server does not offer {AUTH_METHOD} (it offers {', '.join(config.auth_methods)})"
        )
    if config.signing_algorithms is not None and algorithm not in config.signing_algorithms:
        raise ConfigurationError(
            f"the authorization server does not accept {algorithm} client assertions "
            f"(it accepts {', '.join(config.signing_algorithms)})"
        )
    if config.grant_types is not None and GRANT_TYPE not in config.grant_types:
        raise ConfigurationError(f"the authorization server does not offer the {GRANT_TYPE} grant")


def _parse_token_response(data: dict[str, Any], url: str, sent_at: float, margin: float) -> AccessToken:
    value = data.get("access_token")
    if not isinstance(value, str) or not value or len(value) > MAX_TOKEN_CHARS or not _B64TOKEN.fullmatch(value):
        # The value is not quoted: it may be a token after all.
        raise FhirBadResponse("token endpoint answered without a usable access_token", url=url)
    token_type = data.get("token_type")
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        raise FhirBadResponse("token endpoint answered a token that is not a bearer token", url=url)
    expires_in = data.get("expires_in", LIFETIME_WITHOUT_EXPIRES_IN)
    if isinstance(expires_in, bool) or not isinstance(expires_in, int | float) or not 0 < expires_in < 10**9:
        raise FhirBadResponse("token endpoint answered an expires_in that is not a positive number", url=url)
    scope = data.get("scope")
    # Counted from when the request was sent, so network time only ever shortens our use of the token; the margin
    # is at most half the lifetime, so a short-lived token is still used at all.
    expires_at = sent_at + float(expires_in)
    refresh_at = expires_at - min(margin, float(expires_in) / 2)
    return AccessToken(
        value=value, expires_at=expires_at, refresh_at=refresh_at, scope=scope if isinstance(scope, str) else None
    )


# -- the client ---------------------------------------------------------------------------------------------------


class SmartBackendAuth:
    """Access tokens for one FHIR server with one client registration; thread-safe, one refresh at a time."""

    def __init__(
        self,
        settings: SmartSettings,
        fhir_base: str,
        *,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        problem = _secure_url_problem(fhir_base)
        if problem is not None:
            raise ConfigurationError(f"SMART tokens are only sent to a FHIR server whose URL {problem}")
        if not settings.client_id:
            raise ConfigurationError("SMART client id is empty")
        if settings.token_endpoint is not None:
            problem = _secure_url_problem(settings.token_endpoint)
            if problem is not None:
                raise ConfigurationError(f"SMART token endpoint {problem}")
        if not settings.timeout_seconds > 0:
            raise ConfigurationError("SMART timeout must be a positive number of seconds")
        self.settings = settings
        self.fhir_base = fhir_base
        self.key = load_signing_key(settings.private_key_path, settings.key_id, settings.algorithm)
        self.session = session or requests.Session()
        self.clock = clock
        self._lock = threading.Lock()
        self._config: SmartConfiguration | None = None
        self._token: AccessToken | None = None
        self.token_requests = 0  # how many times a token was asked for (tests and diagnostics)

    def __repr__(self) -> str:
        return f"SmartBackendAuth(client_id={self.settings.client_id!r}, fhir_base={self.fhir_base!r})"

    # -- public -------------------------------------------------------------------------------------------------

    def access_token(self) -> str:
        """A valid access token for the FHIR server: the cached one, or a new one from the token endpoint."""
        return self.token().value

    def token(self) -> AccessToken:
        """The current :class:`AccessToken`, fetched when there is none or it is about to expire."""
        # Fail closed: without a token there is no data; every error below propagates to the caller.
        with self._lock:
            # The lock is held over the network call on purpose: concurrent callers wait for the one refresh
            # rather than each asking the authorization server.
            current = self._token
            now = self.clock()
            if current is not None and now < current.refresh_at:
                return current
            try:
                fresh = self._fetch_token()
            except (FhirUnreachable, FhirServerError):
                # The authorization server is down for a moment: a token inside its lifetime still opens the data.
                if current is not None and now < current.expires_at:
                    return current
                self._token = None
                raise
            except FhirError:
                self._token = None
                raise
            self._token = fresh
            return fresh

    def invalidate(self, token: str) -> None:
        """Forget ``token`` (the FHIR server refused it); a newer token is kept, so many 401s cause one refresh."""
        with self._lock:
            if self._token is not None and self._token.value == token:
                self._token = None

    def call(self, fn: Callable[[str], T]) -> T:
        """Run ``fn(token)``; when the FHIR server answers 401, fetch a new token and run it once more."""
        token = self.access_token()
        try:
            return fn(token)
        except FhirAuthError as exc:
            # 403 is a scope the registration lacks: a new token would not change it.
            if exc.status != 401:
                raise
            self.invalidate(token)
        return fn(self.access_token())

    def requests_auth(self) -> requests.auth.AuthBase:
        """An ``auth`` for a ``requests.Session`` that adds the token (same origin only) and retries once on 401."""
        return SmartRequestsAuth(self)

    def configuration(self) -> SmartConfiguration:
        """The token endpoint and what the server supports: configured, or discovered once and kept."""
        with self._lock:
            return self._configuration()

    # -- internals ----------------------------------------------------------------------------------------------

    def _configuration(self) -> SmartConfiguration:
        if self._config is None:
            if self.settings.token_endpoint is not None:
                self._config = SmartConfiguration(token_endpoint=self.settings.token_endpoint)
            else:
                config = discover(self.fhir_base, self.session, self.settings.timeout_seconds)
                _check_supported(config, self.key.algorithm)
                self._config = config
        return self._config

    def _fetch_token(self) -> AccessToken:
        config = self._configuration()
        last: FhirError | None = None
        for _attempt in range(2):
            try:
                return self._request_token(config.token_endpoint)
            except (FhirUnreachable, FhirServerError) as exc:
                # Transient: one more try with a fresh assertion (its jti must not be reused).
                last = exc
        assert last is not None  # noqa: S101 - the loop ran and every attempt failed
        raise last

    def _request_token(self, url: str) -> AccessToken:
        what = "token endpoint"
        sent_at = self.clock()
        assertion = build_client_assertion(self.key, self.settings.client_id, url, sent_at, self.settings.jku)
        form = {
            "grant_type": GRANT_TYPE,
            "client_assertion_type": CLIENT_ASSERTION_TYPE,
            "client_assertion": assertion,
        }
        if self.settings.scope:
            form["scope"] = self.settings.scope
        self.token_requests += 1
        try:
            response = self.session.post(
                url,
                data=form,
                headers={"Accept": "application/json"},
                timeout=self.settings.timeout_seconds,
                allow_redirects=False,
                stream=True,
            )
        except requests.Timeout as exc:
            raise FhirUnreachable(f"{what} did not answer in time", url=url) from exc
        except requests.RequestException as exc:
            raise FhirUnreachable(f"{what} unreachable", url=url) from exc
        status = response.status_code
        body = _read_capped(response, url, what)
        if status in (400, 401, 403):
            raise FhirAuthError(
                f"{what} refused the client (HTTP {status}{_safe_error_text(body)}); check the client id, the key id, "
                "the algorithm and that the EHR holds this key's public JWK",
                url=url,
                status=status,
            )
        if status >= 500:
            raise FhirServerError(f"{what} failed (HTTP {status})", url=url, status=status)
        if status != 200:
            raise FhirBadResponse(f"{what} answered HTTP {status}", url=url, status=status)
        data = _json_object(body, url, what)
        return _parse_token_response(data, url, sent_at, self.settings.refresh_margin_seconds)


class SmartRequestsAuth(requests.auth.AuthBase):
    """requests auth: ``Authorization: Bearer`` to the FHIR server's origin only, one new token after a 401."""

    def __init__(self, auth: SmartBackendAuth) -> None:
        self.auth = auth

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        # Another origin (a redirect, a next link elsewhere) never gets the token.
        if request.url is None or not same_origin(request.url, self.auth.fhir_base):
            return request
        token = self.auth.access_token()
        request.headers["Authorization"] = f"Bearer {token}"
        request.hooks.setdefault("response", []).append(_RetryOn401(self.auth, token))
        return request


class _RetryOn401:
    """A response hook: after a 401, send the same request once more with a new token (not hooked again)."""

    def __init__(self, auth: SmartBackendAuth, token: str) -> None:
        self.auth = auth
        self.token = token

    def __call__(self, response: requests.Response, **kwargs: Any) -> requests.Response:
        if response.status_code != 401 or not _replayable(response.request):
            return response
        self.auth.invalidate(self.token)
        new_token = self.auth.access_token()
        retry = response.request.copy()
        retry.headers["Authorization"] = f"Bearer {new_token}"
        # The resent request goes straight to the adapter, so no hooks run for it: one retry, never a loop.
        retry.hooks = {"response": []}
        response.close()
        connection = response.connection
        second: requests.Response = connection.send(retry, **kwargs)
        second.history.append(response)
        second.request = retry
        return second


def _replayable(request: requests.PreparedRequest) -> bool:
    # A streamed body has been consumed by the first attempt; only a body held in memory can be sent again.
    return request.body is None or isinstance(request.body, bytes | str)

"""The FHIR R4 client: one ``requests.Session``, a timeout on every call, one retry, a token-scoped TTL cache.

HTTP statuses become typed exceptions in exactly one function (:func:`raise_for_fhir_status`). Searches follow
``next`` links on the same server up to a page cap and an entry cap, so a hostile or broken server cannot keep us
busy (a ``next`` link that loops, a Bundle of 10,000 entries).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any
from urllib.parse import unquote_plus, urljoin, urlsplit

import requests
from cachetools import TTLCache

from cds_service.errors import (
    FhirAuthError,
    FhirBadResponse,
    FhirError,
    FhirNotFound,
    FhirServerError,
    FhirUnreachable,
)
from cds_service.fhir.bundles import SearchResult, iter_bundle_resources, join_url, next_link

FHIR_JSON = "application/fhir+json"
MAX_REDIRECTS = 3
# A FHIR answer larger than this is not something a patient's labs and medications need; refuse rather than
# hold it in memory (a hostile server could stream forever).
MAX_RESPONSE_BYTES = 50 * 1024 * 1024

RedirectCheck = Callable[[str, str], None]


def _same_origin(a: str, b: str) -> bool:
    pa, pb = urlsplit(a), urlsplit(b)
    return (pa.scheme, pa.hostname, pa.port) == (pb.scheme, pb.hostname, pb.port)


def _default_redirect_check(from_url: str, to_url: str) -> None:
    # Without a security policy we still never follow a redirect to another origin: the access token would go
    # with it.
    if not _same_origin(from_url, to_url):
        raise FhirBadResponse("FHIR server redirected to another host; not followed", url=from_url)


def token_fingerprint(token: str | None) -> str:
    """A stable, non-reversible key for a token, so cache entries are never shared across tokens."""
    if not token:
        return "-"
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def raise_for_fhir_status(response: requests.Response, url: str) -> None:
    """Turn a FHIR server's HTTP status into a typed exception (the only place this mapping lives)."""
    status = response.status_code
    if 200 <= status < 300:
        return
    if status in (401, 403):
        raise FhirAuthError(f"FHIR server refused the access token (HTTP {status})", url=url, status=status)
    if status == 404:
        raise FhirNotFound("FHIR server answered 404 Not Found", url=url, status=status)
    if status == 410:
        raise FhirNotFound("FHIR server answered 410 Gone", url=url, status=status)
    if status >= 500:
        raise FhirServerError(f"FHIR server error (HTTP {status})", url=url, status=status)
    raise FhirBadResponse(f"FHIR server answered HTTP {status}", url=url, status=status)


def _pooled_session(max_concurrency: int) -> requests.Session:
    """A session keeping as many connections per FHIR server as requests may be in flight.

    requests' default pool keeps 10: with more concurrent requests every extra one opened a new connection and
    threw it away afterwards (a TCP handshake per request, and bursts of new connections under load).
    """
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=10, pool_maxsize=max(10, max_concurrency))
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


class FhirClient:
    """Reads from EHR FHIR servers on behalf of one service process (thread-safe)."""

    def __init__(
        self,
        session: requests.Session | None = None,
        *,
        timeout_seconds: float = 5.0,
        page_cap: int = 10,
        max_entries: int = 5000,
        cache_ttl_seconds: float = 60.0,
        cache_size: int = 2048,
        max_concurrency: int = 8,
        redirect_check: RedirectCheck | None = None,
    ) -> None:
        self.session = session or _pooled_session(max_concurrency)
        self.timeout_seconds = timeout_seconds
        self.page_cap = page_cap
        self.max_entries = max_entries
        self.redirect_check = redirect_check or _default_redirect_check
        self._cache: TTLCache[tuple[str, str], Any] = TTLCache(maxsize=cache_size, ttl=cache_ttl_seconds)
        self._cache_lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="fhir")

    def close(self) -> None:
        """Release the thread pool and the connection pool."""
        self._executor.shutdown(wait=False, cancel_futures=True)
        self.session.close()

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        """Run a call on the shared pool, so one request's fallback queries go concurrently."""
        return self._executor.submit(fn, *args)

    # -- single requests ----------------------------------------------------------------------------------------

    def _get_once(self, url: str, token: str | None) -> requests.Response:
        headers = {"Accept": FHIR_JSON}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        current = url
        for _ in range(MAX_REDIRECTS + 1):
            try:
                response = self.session.get(
                    current, headers=headers, timeout=self.timeout_seconds, allow_redirects=False, stream=True
                )
            except requests.Timeout as exc:
                raise FhirUnreachable("FHIR server did not answer in time", url=url) from exc
            except requests.RequestException as exc:
                raise FhirUnreachable("FHIR server unreachable", url=url) from exc
            if response.is_redirect:
                location = response.headers.get("Location", "")
                target = urljoin(current, location)
                response.close()
                self.redirect_check(current, target)
                current = target
                continue
            return response
        raise FhirBadResponse("FHIR server redirected too many times", url=url)

    def _read_body(self, response: requests.Response, url: str) -> bytes:
        chunks: list[bytes] = []
        size = 0
        try:
            for chunk in response.iter_content(chunk_size=65536):
                size += len(chunk)
                if size > MAX_RESPONSE_BYTES:
                    raise FhirBadResponse("FHIR answer too large", url=url)
                chunks.append(chunk)
        except requests.RequestException as exc:
            raise FhirUnreachable("FHIR server connection broke mid-answer", url=url) from exc
        finally:
            response.close()
        return b"".join(chunks)

    def get_json(self, url: str, token: str | None) -> dict[str, Any]:
        """GET one FHIR URL: one retry on connection errors and 5xx, typed exceptions otherwise."""
        last: FhirError | None = None
        for _attempt in range(2):
            try:
                response = self._get_once(url, token)
                try:
                    raise_for_fhir_status(response, url)
                except FhirError:
                    response.close()
                    raise
                body = self._read_body(response, url)
            except (FhirUnreachable, FhirServerError) as exc:
                # Transient by nature: one retry, then give up (the caller decides what missing data means).
                last = exc
                continue
            try:
                data = json.loads(body)
            except (ValueError, RecursionError) as exc:
                raise FhirBadResponse("FHIR server answered something that is not JSON", url=url) from exc
            if not isinstance(data, dict) or not isinstance(data.get("resourceType"), str):
                raise FhirBadResponse("FHIR server answered JSON that is not a FHIR resource", url=url)
            return data
        raise last if last is not None else FhirUnreachable("FHIR server unreachable", url=url)

    # -- cached reads and searches ------------------------------------------------------------------------------

    def _cached(self, key: tuple[str, str], load: Callable[[], Any]) -> Any:
        with self._cache_lock:
            if key in self._cache:
                return self._cache[key]
        value = load()
        with self._cache_lock:
            self._cache[key] = value
        return value

    def read(self, base_url: str, relative: str, token: str | None) -> dict[str, Any]:
        """Read one resource (``Patient/123``), cached per server, path and token."""
        url = join_url(base_url, relative)
        resource = self._cached((url, token_fingerprint(token)), lambda: self.get_json(url, token))
        if resource.get("resourceType") == "OperationOutcome":
            raise FhirBadResponse("FHIR server answered an OperationOutcome instead of the resource", url=url)
        return dict(resource)

    def search(self, base_url: str, query: str, token: str | None) -> SearchResult:
        """Run a search (``Observation?patient=...``) and follow ``next`` links within the caps; cached."""
        url = join_url(base_url, query)
        result: SearchResult = self._cached((url, token_fingerprint(token)), lambda: self._search(base_url, url, token))
        return SearchResult(list(result.resources), result.truncated, result.pages)

    def continue_bundle(self, base_url: str, bundle: Mapping[str, Any], token: str | None) -> SearchResult:
        """The entries of a (prefetched) searchset Bundle plus its further pages from the server."""
        result = SearchResult(pages=1)
        self._collect(bundle, result)
        next_url = next_link(bundle)
        if next_url and result.truncated is None:
            self._follow(base_url, next_url, token, result, seen={_loop_key(next_url)})
        return result

    def _search(self, base_url: str, url: str, token: str | None) -> SearchResult:
        result = SearchResult()
        self._follow(base_url, url, token, result, seen={_loop_key(url)})
        return result

    def _follow(self, base_url: str, url: str, token: str | None, result: SearchResult, seen: set[str]) -> None:
        current: str | None = url
        while current is not None:
            if result.pages >= self.page_cap:
                result.truncated = f"stopped after {self.page_cap} pages (page cap)"
                return
            bundle = self.get_json(current, token)
            result.pages += 1
            if bundle.get("resourceType") == "OperationOutcome":
                raise FhirBadResponse("FHIR server answered an OperationOutcome instead of a Bundle", url=current)
            if bundle.get("resourceType") != "Bundle":
                raise FhirBadResponse("FHIR server answered a resource that is not a Bundle", url=current)
            self._collect(bundle, result)
            if result.truncated is not None:
                return
            following = next_link(bundle)
            if following is None:
                return
            following = urljoin(current, following)
            if not _same_origin(base_url, following):
                # A next link to another host would carry the token elsewhere: never follow it.
                result.truncated = "next link points to another server; not followed"
                return
            if _loop_key(following) in seen:
                result.truncated = "next link loops; stopped"
                return
            seen.add(_loop_key(following))
            current = following

    def _collect(self, bundle: Mapping[str, Any], result: SearchResult) -> None:
        for resource in iter_bundle_resources(bundle):
            if len(result.resources) >= self.max_entries:
                result.truncated = f"stopped after {self.max_entries} entries (entry cap)"
                return
            result.resources.append(resource)


def _loop_key(url: str) -> str:
    # The same page can come back spelled differently (%7C for |, + for space): compare decoded forms.
    return unquote_plus(url)

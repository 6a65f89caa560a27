"""The FHIR R4 client: one ``requests.Session``, one egress guard, a deadline per hook call, a bounded cache.

- Every URL it requests (the first, each redirect hop, each ``next`` link, each reference read) is vetted by the
  egress policy (:mod:`cds_service.fhir.egress`): under the call's FHIR base by a strict URL grammar, https outside
  dev mode, every address checked; the connection is pinned to the vetted addresses.
- All reads of one hook call (:meth:`FhirClient.for_call`) share one deadline and one byte allowance; a server that
  dribbles is cut at the deadline, and the call answers with what it has.
- HTTP statuses become typed exceptions in exactly one function (:func:`raise_for_fhir_status`).
- Searches follow ``next`` links up to a page cap and an entry cap, so a hostile or broken server cannot keep us
  busy (a ``next`` link that loops, a Bundle of 10,000 entries).
- The cache is keyed by URL and a hash of the token, and bounded by bytes as well as entries (a hostile server's
  45 MB pages once grew a worker to 3.5 GB).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus, urljoin

import requests
from cachetools import TTLCache

from cds_service.errors import (
    FhirAuthError,
    FhirBadResponse,
    FhirBudgetExhausted,
    FhirError,
    FhirNotFound,
    FhirServerError,
    FhirServerNotAllowed,
    FhirUnreachable,
)
from cds_service.fhir.bundles import SearchResult, iter_bundle_resources, join_url, next_link
from cds_service.fhir.egress import CallBudget, Destination, EgressPolicy, OperatorEgress, Watchdog, pinned_session

FHIR_JSON = "application/fhir+json"
MAX_REDIRECTS = 3
DEFAULT_CALL_BUDGET_SECONDS = 8.0
DEFAULT_CALL_MAX_BYTES = 16 * 1024 * 1024
DEFAULT_CACHE_MAX_BYTES = 16 * 1024 * 1024
# No single answer may take more than this share of the cache: one huge page must not evict everything else.
_LARGEST_CACHED_SHARE = 8
# What a read may ask for: a resource type and a FHIR id (R4 "id" datatype), nothing that could be a path.
_READ_PATH = re.compile(r"([A-Z][A-Za-z]{0,63})/([A-Za-z0-9\-.]{1,64})")
_SEARCH_TYPE = re.compile(r"[A-Z][A-Za-z]{0,63}")


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


def read_path(relative: str) -> str:
    """``relative`` when it is ``Type/id`` with a valid FHIR id; FhirBadResponse otherwise (nothing is fetched).

    ``Patient/..`` would read the base, ``Medication/../../admin/x`` another path: an id is never a path.
    """
    match = _READ_PATH.fullmatch(relative)
    if match is None or set(match.group(2)) == {"."}:
        raise FhirBadResponse("not a FHIR Type/id reference; not fetched")
    return relative


def search_path(query: str) -> str:
    """``query`` when its path is a resource type (``Observation?patient=1``); FhirBadResponse otherwise."""
    path = query.split("?", 1)[0]
    if _SEARCH_TYPE.fullmatch(path) is None:
        raise FhirBadResponse("not a FHIR type-level search; not fetched")
    return query


@dataclass(frozen=True)
class _Cached:
    value: Any
    cost: int


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
        cache_max_bytes: int = DEFAULT_CACHE_MAX_BYTES,
        max_concurrency: int = 8,
        egress: EgressPolicy | None = None,
        call_budget_seconds: float = DEFAULT_CALL_BUDGET_SECONDS,
        call_max_bytes: int = DEFAULT_CALL_MAX_BYTES,
    ) -> None:
        self.session = pinned_session(session, max_concurrency)
        self.timeout_seconds = timeout_seconds
        self.page_cap = page_cap
        self.max_entries = max_entries
        self.egress: EgressPolicy = egress or OperatorEgress()
        self.call_budget_seconds = call_budget_seconds
        self.call_max_bytes = call_max_bytes
        # Bounded by bytes (as received) and by entries: each entry weighs at least its share of the byte bound.
        self._entry_floor = max(1, cache_max_bytes // max(1, cache_size))
        self._largest_cached = cache_max_bytes // _LARGEST_CACHED_SHARE
        self._cache: TTLCache[tuple[str, str], _Cached] = TTLCache(
            maxsize=cache_max_bytes, ttl=cache_ttl_seconds, getsizeof=lambda entry: entry.cost
        )
        self._cache_lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=max_concurrency, thread_name_prefix="fhir")
        self._watchdog = Watchdog()

    def close(self) -> None:
        """Release the thread pool, the deadline thread and the connection pool."""
        self._watchdog.stop()
        self._executor.shutdown(wait=False, cancel_futures=True)
        self.session.close()

    def for_call(self) -> FhirCall:
        """A reader for one hook call: its reads share one deadline and one byte allowance."""
        budget = CallBudget(self.call_budget_seconds, self.call_max_bytes)
        self._watchdog.watch(budget)
        return FhirCall(self, budget)

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        """Run a call on the shared pool, so one request's fallback queries go concurrently."""
        return self._executor.submit(fn, *args)

    def read(self, base_url: str, relative: str, token: str | None) -> dict[str, Any]:
        """Read one resource (``Patient/123``) in a call of its own."""
        return self.for_call().read(base_url, relative, token)

    def search(self, base_url: str, query: str, token: str | None) -> SearchResult:
        """Run a search in a call of its own."""
        return self.for_call().search(base_url, query, token)

    def continue_bundle(self, base_url: str, bundle: Mapping[str, Any], token: str | None) -> SearchResult:
        """Read a prefetched Bundle's further pages in a call of its own."""
        return self.for_call().continue_bundle(base_url, bundle, token)

    # -- the cache ----------------------------------------------------------------------------------------------

    def _cache_get(self, key: tuple[str, str]) -> Any:
        with self._cache_lock:
            entry = self._cache.get(key)
        return None if entry is None else entry.value

    def _cache_put(self, key: tuple[str, str], value: Any, size: int) -> None:
        if size > self._largest_cached:
            return
        with self._cache_lock:
            self._cache[key] = _Cached(value, max(size, self._entry_floor))

    def cache_bytes(self) -> int:
        """What the cache holds now, in its own weights (bytes as received, at least the per-entry floor)."""
        with self._cache_lock:
            return int(self._cache.currsize)


class FhirCall:
    """The FHIR reads of one hook call: one deadline and byte allowance, the addresses vetted for this call."""

    def __init__(self, client: FhirClient, budget: CallBudget) -> None:
        self._client = client
        self.budget = budget
        self._addresses: dict[tuple[str, str, int], tuple[str, ...]] = {}
        self._lock = threading.Lock()

    def for_call(self) -> FhirCall:
        """This call (a call's reads already share its budget)."""
        return self

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        """Run one of this call's reads on the client's pool."""
        return self._client.submit(fn, *args)

    def close(self) -> None:
        """Nothing to release: the client owns the connections and threads."""
        return

    # -- single requests ----------------------------------------------------------------------------------------

    def _destination(self, url: str, base_url: str) -> Destination:
        """Vet ``url`` for this call's ``base_url``; the host's addresses are vetted once per call."""
        target = self._client.egress.egress_target(url, base_url)
        with self._lock:
            addresses = self._addresses.get(target.origin)
        if addresses is None:
            addresses = self._client.egress.vetted_addresses(target)
            with self._lock:
                self._addresses[target.origin] = addresses
        return Destination(url, target.host, target.port, addresses)

    def _timeout(self) -> float:
        remaining = self.budget.remaining()
        if remaining <= 0:
            raise FhirBudgetExhausted("the call's FHIR time budget ran out")
        return min(self._client.timeout_seconds, remaining)

    def _fetch(self, url: str, base_url: str, token: str | None) -> bytes:
        """The body of ``url``, following same-base redirects, each hop vetted (a hop elsewhere is refused: 400)."""
        headers = {"Accept": FHIR_JSON}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        current = url
        for _ in range(MAX_REDIRECTS + 1):
            try:
                destination = self._destination(current, base_url)
            except FhirServerNotAllowed as exc:
                if current == url:
                    raise
                raise FhirServerNotAllowed(
                    "redirect outside the allowlisted FHIR base rejected", field="fhirServer"
                ) from exc
            with self.budget.exchange(destination) as exchange:
                try:
                    timeout = self._timeout()
                    response = self._client.session.get(
                        current, headers=headers, timeout=timeout, allow_redirects=False, stream=True
                    )
                except requests.Timeout as exc:
                    raise FhirUnreachable("FHIR server did not answer in time", url=url) from exc
                except requests.RequestException as exc:
                    raise FhirUnreachable("FHIR server unreachable", url=url) from exc
                try:
                    if response.is_redirect:
                        current = urljoin(current, response.headers.get("Location", ""))
                        continue
                    raise_for_fhir_status(response, url)
                    return self._read_body(response, url, exchange.budget)
                finally:
                    response.close()
        raise FhirBadResponse("FHIR server redirected too many times", url=url)

    def _read_body(self, response: requests.Response, url: str, budget: CallBudget) -> bytes:
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > budget.bytes_left():
            raise FhirBudgetExhausted("the FHIR answer is larger than the call's byte allowance", url=url)
        chunks: list[bytes] = []
        try:
            for chunk in response.iter_content(chunk_size=65536):
                budget.take(len(chunk))
                chunks.append(chunk)
                budget.check_time()
        except requests.RequestException as exc:
            raise FhirUnreachable("FHIR server connection broke mid-answer", url=url) from exc
        return b"".join(chunks)

    def get_json(self, url: str, base_url: str, token: str | None) -> tuple[dict[str, Any], int]:
        """GET one FHIR URL (one retry on connection errors and 5xx); the resource and the bytes it took."""
        last: FhirError | None = None
        for _attempt in range(2):
            try:
                body = self._fetch(url, base_url, token)
            except FhirBudgetExhausted:
                raise  # the call's time or bytes are gone: a retry could only take more
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
            return data, len(body)
        raise last if last is not None else FhirUnreachable("FHIR server unreachable", url=url)

    # -- cached reads and searches ------------------------------------------------------------------------------

    def read(self, base_url: str, relative: str, token: str | None) -> dict[str, Any]:
        """Read one resource (``Patient/123``), cached per server, path and token."""
        url = join_url(base_url, read_path(relative))
        key = (url, token_fingerprint(token))
        resource = self._client._cache_get(key)
        if resource is None:
            resource, size = self.get_json(url, base_url, token)
            self._client._cache_put(key, resource, size)
        if resource.get("resourceType") == "OperationOutcome":
            raise FhirBadResponse("FHIR server answered an OperationOutcome instead of the resource", url=url)
        return dict(resource)

    def search(self, base_url: str, query: str, token: str | None) -> SearchResult:
        """Run a search (``Observation?patient=...``) and follow ``next`` links within the caps; cached."""
        url = join_url(base_url, search_path(query))
        key = (url, token_fingerprint(token))
        cached: SearchResult | None = self._client._cache_get(key)
        if cached is None:
            result = SearchResult()
            size, complete = self._follow(base_url, url, token, result, seen={_loop_key(url)})
            if complete:  # a search the budget cut short is this call's bad luck, not the next one's answer
                self._client._cache_put(key, result, size)
            cached = result
        return SearchResult(list(cached.resources), cached.truncated, cached.pages)

    def continue_bundle(self, base_url: str, bundle: Mapping[str, Any], token: str | None) -> SearchResult:
        """The entries of a (prefetched) searchset Bundle plus its further pages from the server.

        The Bundle came from the caller, so its ``next`` link is vetted like any other: under the FHIR base.
        """
        result = SearchResult(pages=1)
        self._collect(bundle, result)
        next_url = next_link(bundle)
        if next_url and result.truncated is None:
            following = self._vetted_next(base_url, base_url + "/", next_url, result)
            if following is not None:
                self._follow(base_url, following, token, result, seen={_loop_key(following)})
        return result

    def _vetted_next(self, base_url: str, current: str, link: str, result: SearchResult) -> str | None:
        following = urljoin(current, link)
        try:
            self._client.egress.egress_target(following, base_url)
        except FhirServerNotAllowed:
            # A next link elsewhere (another host, port, scheme or path) would carry the token there: never follow.
            result.truncated = "next link leaves the FHIR server's base; not followed"
            return None
        return following

    def _follow(
        self, base_url: str, url: str, token: str | None, result: SearchResult, seen: set[str]
    ) -> tuple[int, bool]:
        """Read ``url`` and its ``next`` pages into ``result``; the bytes read and whether the budget allowed all."""
        size = 0
        current: str | None = url
        while current is not None:
            if result.pages >= self.page_cap:
                result.truncated = f"stopped after {self.page_cap} pages (page cap)"
                return size, True
            try:
                bundle, page_size = self.get_json(current, base_url, token)
            except FhirBudgetExhausted as exc:
                if not result.resources and result.pages == 0:
                    raise
                result.truncated = f"stopped: {exc.message}"
                return size, False
            size += page_size
            result.pages += 1
            if bundle.get("resourceType") == "OperationOutcome":
                raise FhirBadResponse("FHIR server answered an OperationOutcome instead of a Bundle", url=current)
            if bundle.get("resourceType") != "Bundle":
                raise FhirBadResponse("FHIR server answered a resource that is not a Bundle", url=current)
            self._collect(bundle, result)
            if result.truncated is not None:
                return size, True
            link = next_link(bundle)
            following = self._vetted_next(base_url, current, link, result) if link is not None else None
            if following is None:
                return size, True
            if _loop_key(following) in seen:
                result.truncated = "next link loops; stopped"
                return size, True
            seen.add(_loop_key(following))
            current = following
        return size, True

    @property
    def page_cap(self) -> int:
        """Most pages one search follows."""
        return self._client.page_cap

    def _collect(self, bundle: Mapping[str, Any], result: SearchResult) -> None:
        for resource in iter_bundle_resources(bundle):
            if len(result.resources) >= self._client.max_entries:
                result.truncated = f"stopped after {self._client.max_entries} entries (entry cap)"
                return
            result.resources.append(resource)


def _loop_key(url: str) -> str:
    # The same page can come back spelled differently (%7C for |, + for space): compare decoded forms.
    return unquote_plus(url)

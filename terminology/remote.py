"""Asking a remote terminology service which ingredients a drug code contains.

Consulted only for codes the local value sets do not know. Two real peers: the NLM RxNav REST API
(``/REST/rxcui/{code}/related.json?tty=IN+PIN``) and a FHIR terminology server (``CodeSystem/$lookup`` with
ingredient properties, then ``ConceptMap/$translate``). Every call is time-boxed, answers are cached in a
TTL cache keyed ``system|code``, and any failure yields ``None``: the caller falls back to text matching.

requests and cachetools are imported when a lookup is built, not with this module: ``import terminology`` stays
free of HTTP and caches for the pure code that only classifies codes locally.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any, Protocol

from terminology.valuesets import RXNORM, canonical_system

if TYPE_CHECKING:  # the names only: the modules load in _CachedLookup
    import requests
    from cachetools import TTLCache

log = logging.getLogger(__name__)

IngredientList = tuple[tuple[str | None, str], ...]

# Failures are remembered briefly so an outage costs one timeout per code per minute, not one per request.
FAILURE_TTL_SECONDS = 60.0
INGREDIENT_PROPERTY_CODES = frozenset({"ingredient", "has_ingredient", "has_active_ingredient", "IN", "PIN"})


class RemoteLookup(Protocol):
    """Resolve a drug code to its ingredients: ((rxnorm ingredient code, name), ...), or None."""

    def ingredients_for(self, system: str, code: str) -> IngredientList | None:
        """Ingredients of ``code`` in ``system``; None when unknown or the service is unreachable."""
        ...


class _CachedLookup:
    """Shared caching and failure handling; subclasses implement ``_fetch``."""

    def __init__(
        self, base_url: str, session: requests.Session, timeout: float, cache_ttl: float, cache_size: int = 4096
    ) -> None:
        import requests
        from cachetools import TTLCache

        self._request_error = requests.RequestException
        self._base = base_url.rstrip("/")
        self._session = session
        self._timeout = timeout
        self._answers: TTLCache[str, IngredientList] = TTLCache(maxsize=cache_size, ttl=cache_ttl)
        self._failures: TTLCache[str, bool] = TTLCache(maxsize=cache_size, ttl=min(cache_ttl, FAILURE_TTL_SECONDS))
        self._lock = threading.Lock()
        self.calls = 0

    def ingredients_for(self, system: str, code: str) -> IngredientList | None:
        """Cached answer, or one time-boxed remote call; None on any failure (we fail open to text)."""
        key = f"{canonical_system(system)}|{code}"
        with self._lock:
            if key in self._answers:
                return self._answers[key]
            if key in self._failures:
                return None
        self.calls += 1
        try:
            answer = self._fetch(canonical_system(system) or system, code)
        except (self._request_error, ValueError, KeyError, TypeError) as exc:
            # Fail OPEN: a terminology outage must not hide what the local sets and text matching still find.
            log.warning("remote terminology lookup failed for %s: %s", key, type(exc).__name__)
            answer = None
        with self._lock:
            if answer is None:
                self._failures[key] = True
            else:
                self._answers[key] = answer
        return answer

    def _fetch(self, system: str, code: str) -> IngredientList | None:
        raise NotImplementedError


class RxNavLookup(_CachedLookup):
    """NLM RxNav REST: ``GET {base}/REST/rxcui/{code}/related.json?tty=IN+PIN`` (RxNorm codes only)."""

    def _fetch(self, system: str, code: str) -> IngredientList | None:
        if system != RXNORM or not code.isdigit():
            return None
        response = self._session.get(
            f"{self._base}/REST/rxcui/{code}/related.json",
            params={"tty": "IN+PIN"},
            timeout=self._timeout,
            headers={"Accept": "application/json"},
        )
        if response.status_code != 200:
            return None
        body: dict[str, Any] = response.json()
        groups = (body.get("relatedGroup") or {}).get("conceptGroup") or []
        found: list[tuple[str | None, str]] = []
        for group in groups:
            for prop in group.get("conceptProperties") or []:
                name = prop.get("name")
                if isinstance(name, str) and name:
                    found.append((prop.get("rxcui"), name.lower()))
        return tuple(found)


class FhirTerminologyLookup(_CachedLookup):
    """A FHIR terminology server: ``CodeSystem/$lookup`` ingredients, then ``ConceptMap/$translate``."""

    def _get(self, path: str, params: dict[str, str]) -> dict[str, Any] | None:
        response = self._session.get(
            f"{self._base}/{path}",
            params=params,
            timeout=self._timeout,
            headers={"Accept": "application/fhir+json"},
        )
        if response.status_code != 200:
            return None
        body: dict[str, Any] = response.json()
        if body.get("resourceType") != "Parameters":
            return None
        return body

    def _fetch(self, system: str, code: str) -> IngredientList | None:
        looked_up = self._get("CodeSystem/$lookup", {"system": system, "code": code, "property": "ingredient"})
        found = _ingredients_from_lookup(looked_up) if looked_up else []
        if not found:
            translated = self._get("ConceptMap/$translate", {"system": system, "code": code, "target": RXNORM})
            found = _ingredients_from_translate(translated) if translated else []
        if looked_up is None and not found:
            return None
        return tuple(found)


def _ingredients_from_lookup(parameters: dict[str, Any]) -> list[tuple[str | None, str]]:
    found: list[tuple[str | None, str]] = []
    for parameter in parameters.get("parameter") or []:
        if parameter.get("name") != "property":
            continue
        parts = {p.get("name"): p for p in parameter.get("part") or []}
        if (parts.get("code") or {}).get("valueCode") not in INGREDIENT_PROPERTY_CODES:
            continue
        value = parts.get("value") or {}
        coding = value.get("valueCoding")
        if isinstance(coding, dict) and coding.get("display"):
            found.append((coding.get("code"), str(coding["display"]).lower()))
        elif isinstance(value.get("valueString"), str):
            found.append((None, value["valueString"].lower()))
    return found


def _ingredients_from_translate(parameters: dict[str, Any]) -> list[tuple[str | None, str]]:
    found: list[tuple[str | None, str]] = []
    for parameter in parameters.get("parameter") or []:
        if parameter.get("name") != "match":
            continue
        for part in parameter.get("part") or []:
            coding = part.get("valueCoding")
            if part.get("name") == "concept" and isinstance(coding, dict) and coding.get("display"):
                found.append((coding.get("code"), str(coding["display"]).lower()))
    return found

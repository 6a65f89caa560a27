"""FHIR Bundles and search results as plain data: reading entries and links, no I/O (shared by client and extract)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class SearchResult:
    """The resources of a search, and what stopped the paging early (if anything)."""

    resources: list[dict[str, Any]] = field(default_factory=list)
    truncated: str | None = None
    pages: int = 0


def next_link(bundle: Mapping[str, Any]) -> str | None:
    """The Bundle's ``next`` link URL, if any."""
    links = bundle.get("link")
    if not isinstance(links, list):
        return None
    for link in links:
        if isinstance(link, dict) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            url: str = link["url"]
            return url or None
    return None


def join_url(base_url: str, relative: str) -> str:
    """``base/relative`` with exactly one slash between them."""
    return base_url.rstrip("/") + "/" + relative.lstrip("/")


def iter_bundle_resources(bundle: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """The resources in a Bundle's entries, skipping malformed entries and search outcomes."""
    entries = bundle.get("entry")
    if not isinstance(entries, list):
        return
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        search = entry.get("search")
        if isinstance(search, dict) and search.get("mode") == "outcome":
            continue
        resource = entry.get("resource")
        if isinstance(resource, dict) and isinstance(resource.get("resourceType"), str):
            yield resource

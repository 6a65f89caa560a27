"""Where the patients come from: Bundle files, a Bulk FHIR NDJSON export, or a FHIR server; as jobs for the pool.

A job is small (a file path, or a few patient ids): the worker reads the data itself, so nothing large crosses
the process boundary and the parent holds no patient's data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

from cds_service.dryrun.ndjson import DryRunInputError
from cds_service.fhir.bundles import iter_bundle_resources, join_url, next_link
from cds_service.fhir.smart import same_origin

BUNDLE = "bundle"
NDJSON = "ndjson"
SERVER = "server"
# Patients per job: enough to make the cost of a job's round trip to a worker small, few enough to keep the window
# of jobs in flight (and so memory) small and the progress bar smooth.
IDS_PER_JOB = 16
# A Patient search page size, and how many pages are followed at most (a runaway server cannot loop us forever).
SEARCH_PAGE_SIZE = 100
SEARCH_PAGE_CAP = 100_000


@dataclass(frozen=True)
class Job:
    """One unit of work: a Bundle file, or some patients of the NDJSON store or the FHIR server."""

    kind: str
    refs: tuple[str, ...]


def bundle_files(paths: Iterable[Path]) -> list[Path]:
    """The Bundle files named, or found (``*.json``, recursively, sorted) in the folders named."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*.json") if p.is_file()))
        elif path.is_file():
            found.append(path)
        else:
            raise DryRunInputError(f"{path} does not exist")
    if not found:
        raise DryRunInputError("no .json files in " + ", ".join(str(p) for p in paths))
    return found


def bundle_jobs(files: Iterable[Path]) -> Iterator[Job]:
    """One job per Bundle file (the worker splits a Bundle holding several Patients)."""
    for path in files:
        yield Job(BUNDLE, (str(path),))


def batched_jobs(kind: str, patient_ids: Iterable[str], size: int = IDS_PER_JOB) -> Iterator[Job]:
    """Jobs of ``size`` patient ids each, read lazily from ``patient_ids``."""
    batch: list[str] = []
    for patient_id in patient_ids:
        batch.append(patient_id)
        if len(batch) >= size:
            yield Job(kind, tuple(batch))
            batch = []
    if batch:
        yield Job(kind, tuple(batch))


def search_patient_ids(
    get_json: Callable[[str], dict[str, Any]], fhir_server: str, query: str, limit: int | None
) -> Iterator[str]:
    """The ids of the Patients a search finds (``Patient?<query>``), page after page, streamed."""
    query = query.removeprefix("Patient?").removeprefix("?")
    if "_count=" not in query:
        query = f"{query}&_count={SEARCH_PAGE_SIZE}" if query else f"_count={SEARCH_PAGE_SIZE}"
    url: str | None = join_url(fhir_server, f"Patient?{query}")
    seen = 0
    pages = 0
    while url is not None and pages < SEARCH_PAGE_CAP:
        bundle = get_json(url)
        pages += 1
        if bundle.get("resourceType") != "Bundle":
            raise DryRunInputError(f"the Patient search answered a {bundle.get('resourceType')}, not a Bundle")
        for resource in iter_bundle_resources(bundle):
            if resource.get("resourceType") == "Patient" and isinstance(resource.get("id"), str):
                yield resource["id"]
                seen += 1
                if limit is not None and seen >= limit:
                    return
        following = next_link(bundle)
        url = urljoin(url, following) if following else None
        if url is not None and not same_origin(url, fhir_server):
            # A next link to another host would carry the token elsewhere: stop there.
            raise DryRunInputError("the Patient search's next link points to another server; not followed")

"""What a hook needs to run in a unit test: HookDeps with a FHIR reader that must not be called."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from datetime import datetime
from typing import Any, TypeVar

from cds_service.engine.settings import ClinicalSettings
from cds_service.fhir.bundles import SearchResult
from cds_service.interfaces import HookDeps
from hooks.orders import TtlOrderSession
from terminology import default_terminology
from tests.functional.conftest import EXAMPLE_NOW

T = TypeVar("T")


class NoFhirServer:
    """A FHIR reader for requests whose prefetch is complete: any read is a test failure."""

    def read(self, base_url: str, relative: str, token: str | None) -> dict[str, Any]:
        raise AssertionError(f"unexpected FHIR read {relative}")

    def search(self, base_url: str, query: str, token: str | None) -> SearchResult:
        raise AssertionError(f"unexpected FHIR search {query}")

    def continue_bundle(self, base_url: str, bundle: Mapping[str, Any], token: str | None) -> SearchResult:
        raise AssertionError("unexpected FHIR paging")

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        future: Future[T] = Future()
        future.set_result(fn(*args))
        return future

    def for_call(self) -> NoFhirServer:
        return self

    def close(self) -> None:
        return None


def hook_deps(now: datetime = EXAMPLE_NOW) -> HookDeps:
    """HookDeps with the local terminology, default clinical settings and a fixed clock."""
    ids = itertools.count(1)
    return HookDeps(
        fhir=NoFhirServer(),
        terminology=default_terminology(),
        clinical=ClinicalSettings(),
        clock=lambda: now,
        id_factory=lambda: f"00000000-0000-4000-8000-{next(ids):012d}",
        order_session=TtlOrderSession(1800),
        rules_url="https://mgcds.example.org/docs/clinical-rules",
    )

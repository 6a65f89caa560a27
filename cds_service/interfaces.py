"""The seams of MgCDS as Protocols (DESIGN.md principle 4), and what a hook is handed to do its work.

Each external dependency is a small interface with a real implementation and a null or in-memory one; the app
factory chooses which and injects it. Nothing here does I/O or imports a web framework.

- FhirReader: ``cds_service.fhir.client.FhirClient``; null: a reader that has no server.
- TerminologyService: ``terminology.Terminology`` with a remote lookup; in-memory: local value sets only.
- AuditWriter and AuditReader: ``cds_service.audit`` (spool + SQL store); in-memory: ``cds_service.audit``'s.
- OrderSession: ``hooks.orders`` (a TTL memory of what order-select showed).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar

from cds_service.engine.settings import ClinicalSettings
from cds_service.fhir.bundles import SearchResult
from terminology.model import CodeRef, ConvertedQuantity, LabMatch, MedicationClassification
from terminology.products import MagnesiumProduct

T = TypeVar("T")

Clock = Callable[[], datetime]
IdFactory = Callable[[], str]


class FhirReader(Protocol):
    """Reads from an EHR's FHIR R4 server with the EHR's token; failures are ``cds_service.errors.FhirError``."""

    def read(self, base_url: str, relative: str, token: str | None) -> dict[str, Any]:
        """One resource (``Patient/123``)."""
        ...

    def search(self, base_url: str, query: str, token: str | None) -> SearchResult:
        """A search (``Observation?patient=...``) with its further pages, within the reader's caps."""
        ...

    def continue_bundle(self, base_url: str, bundle: Mapping[str, Any], token: str | None) -> SearchResult:
        """The entries of a prefetched searchset Bundle plus its further pages."""
        ...

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        """Run one of the calls above concurrently with others of the same hook call."""
        ...

    def close(self) -> None:
        """Release connections and threads."""
        ...


class TerminologyService(Protocol):
    """Every code decision: which lab, drug, condition or test a coding is; unit conversion."""

    def classify_observation(self, codings: Sequence[CodeRef], text: str | None = None) -> LabMatch | None:
        """The lab concept of an Observation's code, or None when the rules do not use it."""
        ...

    def classify_service_request(self, codings: Sequence[CodeRef], text: str | None = None) -> LabMatch | None:
        """The test a ServiceRequest orders, or None."""
        ...

    def classify_condition(self, codings: Sequence[CodeRef], text: str | None = None) -> str | None:
        """The condition concept of a Condition's code, or None."""
        ...

    def classify_medication(
        self,
        codings: Sequence[CodeRef],
        text: str | None = None,
        ingredient_concepts: Sequence[tuple[Sequence[CodeRef], str | None]] = (),
    ) -> MedicationClassification:
        """The ingredients of interest in a medication and their drug classes."""
        ...

    def is_parenteral(
        self,
        product: Sequence[CodeRef],
        product_text: str | None,
        route: Sequence[CodeRef] = (),
        route_text: str | None = None,
    ) -> bool:
        """Whether a product is given intravenously, intramuscularly or subcutaneously."""
        ...

    def magnesium_product(
        self,
        codings: Sequence[CodeRef],
        text: str | None = None,
        route_codings: Sequence[CodeRef] = (),
        route_text: str | None = None,
        form_names: Sequence[str | None] = (),
        ingredient_concepts: Sequence[tuple[Sequence[CodeRef], str | None]] = (),
    ) -> MagnesiumProduct | None:
        """The kind (oral-supplement, laxative-antacid, parenteral) and salt of a magnesium product, or None."""
        ...

    def auditc_band(
        self,
        concept: str,
        answer_codings: Sequence[CodeRef],
        answer_text: str | None,
        answer_score: int | None,
    ) -> str | None:
        """The answer band of an AUDIT-C item."""
        ...

    def convert(self, value: float, unit: str | None, concept: str) -> ConvertedQuantity:
        """``value`` in the canonical unit of ``concept`` (raises UnitNotRecognised)."""
        ...

    def observation_search_codes(self) -> list[str]:
        """``system|code`` of every Observation code the engine reads, for the prefetch templates."""
        ...


class OrderSession(Protocol):
    """What order-select showed for which draft, so order-sign does not show the same card again."""

    def remember(self, patient_id: str, draft: str, code: str) -> None:
        """Note that a card ``code`` was shown for ``draft`` (``MedicationRequest/<id>``) of this patient."""
        ...

    def was_shown(self, patient_id: str, draft: str, code: str) -> bool:
        """Whether that card was shown within the ordering session."""
        ...


@dataclass(frozen=True)
class HookDeps:
    """Exactly what a hook uses to answer a call (built once by the app factory, or by the CLI)."""

    fhir: FhirReader
    terminology: TerminologyService
    clinical: ClinicalSettings
    clock: Clock
    id_factory: IdFactory
    order_session: OrderSession
    # The page with the rules, linked from every card's source (``source.url``).
    rules_url: str

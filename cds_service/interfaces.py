"""The seams of MgCDS as Protocols (DESIGN.md principle 4), and what a hook is handed to do its work.

Each external dependency is a small interface with a real implementation and a null or in-memory one; the app
factory (``cds_service.factory``) chooses which and injects it. Nothing here does I/O or imports a web framework,
a database driver or an HTTP client: the plain types the Protocols name live in modules that import none either.

- FhirReader: ``cds_service.fhir.client.FhirClient``; null: a reader that has no server.
- TerminologyService: ``terminology.Terminology`` with a remote lookup; in-memory: local value sets only.
- AuditWriter: ``cds_service.audit.writer.SpoolingAuditWriter`` (spool + background drain into the SQL store);
  in-memory: ``cds_service.audit.memory.InMemoryAuditLog``.
- AuditReader: ``cds_service.audit.sqlread.SqlAuditReader`` (a read-only engine, no spool: reading cannot write);
  in-memory: ``InMemoryAuditLog`` again (one object is both).
- KeySource: ``cds_service.security.jwks.JwksSource`` (JWKS over HTTP or from a file, cached); in-memory:
  ``cds_service.security.jwks.StaticKeySource``.
- ReplayCache: ``cds_service.security.replay.SqlReplayCache`` (shared by workers); in-memory:
  ``InMemoryReplayCache``.
- Authenticator: ``cds_service.security.jwt_auth.JwtVerifier.verify``; null (development mode without a
  registry): ``cds_service.factory.unauthenticated``.
- FhirServerGuard: ``cds_service.security.fhir_allowlist.FhirServerPolicy``.
- OrderSession: ``hooks.orders`` (a TTL memory of what order-select showed).
- SuppressionSource: ``cds_service.audit.suppression.SqlSuppressionSource`` (feedback in the audit database, shared
  by every worker and instance); in-memory: ``cds_service.audit.suppression.InMemorySuppressionSource``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar

from cds_service.audit.chain import ChainReport
from cds_service.audit.model import CallFilter, Readiness, StoredRecord, Summary
from cds_service.audit.records import CallRecord, FeedbackCallRecord, FeedbackRecord
from cds_service.audit.trends import TrendFilter, Trends
from cds_service.engine.settings import ClinicalSettings
from cds_service.fhir.bundles import SearchResult
from cds_service.security.identity import CallerIdentity
from cds_service.security.keys import KeyLocation, VerificationKey
from terminology.model import CodeRef, ConvertedQuantity, LabMatch, MedicationClassification
from terminology.products import MagnesiumProduct, SupplementProduct

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

    def for_call(self) -> FhirReader:
        """A reader for one hook call: all its reads share one deadline and one byte allowance."""
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

    def supplement_products(self) -> Mapping[str, SupplementProduct]:
        """The RxNorm tablet to draft per organic salt ("magnesium citrate"), with its strength basis (section 9)."""
        ...


class OrderSession(Protocol):
    """What order-select showed for which draft, so order-sign does not show the same card again."""

    def remember(self, patient_id: str, draft: str, code: str) -> None:
        """Note that a card ``code`` was shown for ``draft`` (``MedicationRequest/<id>``) of this patient."""
        ...

    def was_shown(self, patient_id: str, draft: str, code: str) -> bool:
        """Whether that card was shown within the ordering session."""
        ...


class AuditWriter(Protocol):
    """Makes audit records durable before the call is answered; never waits for the database.

    Each ``record_*`` returns once the record is complete in the local spool (or stored, without one), or raises
    ``AuditNotDurable``: the call is then answered 503, not as if it had been recorded.
    """

    def record_call(self, record: CallRecord) -> str:
        """Record one service call (answered or refused); returns its record id."""
        ...

    def record_feedback(self, record: FeedbackRecord) -> str:
        """Record one feedback item; it is linked to the call that issued the card (same issuer and service)."""
        ...

    def record_feedback_items(self, records: Sequence[FeedbackRecord]) -> list[str]:
        """Record every item of one feedback call together: all are durable, or none is."""
        ...

    def record_feedback_call(self, record: FeedbackCallRecord) -> str:
        """Record one feedback call that was not answered 200."""
        ...

    def check_ready(self) -> None:
        """Raise ``AuditStoreError`` unless records can reach the store now."""
        ...

    def readiness(self) -> Readiness:
        """Spool, store, backlog and quarantine, each checked within a time limit (``/readyz``)."""
        ...

    def has_pending(self) -> bool:
        """True while records wait for the store."""
        ...

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every waiting record is stored; False if that did not happen within ``timeout``."""
        ...

    def replay(self) -> int:
        """Store what waits now; returns how many were stored (raises ``AuditStoreError`` on an outage)."""
        ...

    def redrive(self) -> tuple[int, int]:
        """Hand quarantined records to the store again: (stored, still refused)."""
        ...

    def close(self) -> None:
        """Stop writing after a last attempt to store what waits."""
        ...


class AuditReader(Protocol):
    """Reads the audit log back (review page, CLI, export); it has no way to write."""

    def verify(self) -> ChainReport:
        """Walk the hash chain; the report names the first broken link."""
        ...

    def count(self) -> int:
        """How many records are stored."""
        ...

    def get(self, record_id: str) -> StoredRecord | None:
        """One stored record, or None."""
        ...

    def list_calls(self, filters: CallFilter, *, limit: int = 50, offset: int = 0) -> tuple[list[StoredRecord], int]:
        """A page of service calls matching ``filters`` (newest first) and the total matching."""
        ...

    def feedback_for(self, record_ids: Sequence[str]) -> dict[str, list[StoredRecord]]:
        """The feedback records linked to each of these calls."""
        ...

    def summary(self, filters: CallFilter) -> Summary:
        """Counts over the calls matching ``filters`` and their feedback."""
        ...

    def iter_records(self) -> Iterator[StoredRecord]:
        """Every record in chain order."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...

    def trends(self, filters: TrendFilter) -> Trends:
        """Cards shown, accepted and overridden per ISO week and recommendation, and overrides per reason."""
        ...

    def get_many(self, record_ids: Sequence[str]) -> dict[str, StoredRecord]:
        """The records with these ids that exist, by id."""
        ...

    def feedback_on_cards(self, card_uuids: Sequence[str]) -> list[StoredRecord]:
        """Every feedback record naming one of these cards, linked to its call or not, in chain order."""
        ...


class KeySource(Protocol):
    """The public keys of trusted issuers (JWK Sets); fail closed: ``KeysUnavailable`` when they cannot be had."""

    def find_key(self, location: KeyLocation, kid: str) -> VerificationKey | None:
        """The key ``kid`` of the set at ``location`` (a JWKS URL or file), or None when the set has no such key."""
        ...


class ReplayCache(Protocol):
    """Remembers each (issuer, jti) until the token expires."""

    def seen(self, issuer: str, jti: str, expires_at: float) -> bool:
        """Record the jti; True when it was already recorded and has not expired (a replay)."""
        ...


class Authenticator(Protocol):
    """Verifies the caller's CDS Hooks JWT (raises ``Unauthorized``); None only in development mode without a
    registry, where nobody is authenticated."""

    def __call__(self, authorization_header: str | None, audience: str) -> CallerIdentity | None: ...


class FhirServerGuard(Protocol):
    """Decides whether we may contact a FHIR server for this caller (SSRF defence); raises to refuse."""

    def check(self, fhir_server: str, caller: CallerIdentity | None) -> None:
        """Raise ``FhirServerNotAllowed`` (or ``FhirUnreachable`` for a name that does not resolve) to refuse."""
        ...

    def check_redirect(self, from_url: str, to_url: str) -> None:
        """Raise ``FhirServerNotAllowed`` when a redirect leaves the server."""
        ...


@dataclass(frozen=True)
class Suppression:
    """Feedback on a card that keeps its recommendation from being shown again until ``until`` (rules 7.5).

    ``answered_at`` is when the clinician answered (the EHR's outcomeTimestamp, never later than its receipt):
    a magnesium, creatinine or eGFR result newer than it ends the suppression early, which the hook decides.
    ``until`` already applies the 24-hour cap when the answered card was critical or ``urgent-evaluation``.
    """

    code: str  # the recommendation code suppressed
    feedback_record_id: str  # the feedback's audit record
    outcome: str  # "accepted" or "overridden"
    reason: str | None  # the override reason code, if any
    answered_at: datetime
    until: datetime
    answered_indicator: str  # the indicator of the card that was answered


class SuppressionSource(Protocol):
    """Which recommendations feedback keeps from being shown again, for one patient as one EHR names them."""

    def active(self, issuer: str | None, tenant: str | None, patient_id: str, now: datetime) -> list[Suppression]:
        """The suppressions whose period has not ended at ``now`` (answered at or before ``now``), latest first.

        Fails open: when the store cannot answer, no suppression (the card is shown again).
        """
        ...


class PatientSuppressions(Protocol):
    """The suppressions of one call's caller (issuer and tenant bound by the API), asked for by patient only: a hook
    never sees who called."""

    def active(self, patient_id: str, now: datetime) -> list[Suppression]:
        """The suppressions in force at ``now`` for this patient as the calling EHR names them."""
        ...


class NoSuppressions:
    """No feedback suppresses anything: the CLI (nobody answered a card there) and calls not yet bound."""

    def active(self, patient_id: str, now: datetime) -> list[Suppression]:
        """Nothing is suppressed."""
        return []


NO_SUPPRESSIONS = NoSuppressions()


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
    # The store of suppressions after feedback (clinical-rules.md 7.5); the API binds it to the caller per call into
    # ``suppressions``, the only one a hook reads.
    suppression_source: SuppressionSource | None = None
    suppressions: PatientSuppressions = NO_SUPPRESSIONS

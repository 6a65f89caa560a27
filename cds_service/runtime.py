"""The service's collaborators, built once by the app factory and handed to the hooks (DESIGN.md principle 4).

Each external dependency is an interface here with a real implementation chosen in ``create_app``; tests inject
in-memory ones. Nothing in this module reads the environment.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from cds_service.config import Settings
from cds_service.fhir.client import FhirClient
from cds_service.interfaces import HookDeps


class CallerIdentityLike(Protocol):
    """Who called us, as the JWT proved it."""

    @property
    def issuer(self) -> str: ...

    @property
    def tenant(self) -> str | None: ...

    @property
    def subject(self) -> str | None: ...


class Authenticator(Protocol):
    """Verifies the caller's CDS Hooks JWT; returns None only in development mode without a registry."""

    def __call__(self, authorization_header: str | None, audience: str) -> CallerIdentityLike | None: ...


class FhirServerGuard(Protocol):
    """Decides whether we may contact a FHIR server for this caller (SSRF defence); raises to refuse."""

    def check(self, fhir_server: str, caller: Any) -> None: ...

    def check_redirect(self, from_url: str, to_url: str) -> None: ...


def utc_now() -> datetime:
    """The real clock (injectable: tests and `evaluate --now` replace it)."""
    return datetime.now(UTC)


def new_uuid() -> str:
    """A random UUID string for cards and suggestions."""
    return str(uuid.uuid4())


@dataclass
class Runtime:
    """Everything a hook needs besides the request."""

    settings: Settings
    fhir_client: FhirClient
    terminology: Any
    authenticate: Authenticator
    fhir_guard: FhirServerGuard
    audit_log: Any
    clock: Callable[[], datetime] = utc_now
    id_factory: Callable[[], str] = new_uuid
    extras: dict[str, Any] = field(default_factory=dict)
    hook_deps: HookDeps = field(init=False)

    def __post_init__(self) -> None:
        from hooks.orders import TtlOrderSession

        # Rules page of this service: every card's source.url points there.
        self.hook_deps = HookDeps(
            fhir=self.fhir_client,
            terminology=self.terminology,
            clinical=self.settings.clinical,
            clock=self.clock,
            id_factory=self.id_factory,
            order_session=TtlOrderSession(self.settings.order_session_ttl_seconds),
            rules_url=self.settings.public_base_url.rstrip("/") + "/docs/clinical-rules",
        )

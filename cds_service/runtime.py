"""The collaborators of one running service, built once by ``cds_service.factory`` (DESIGN.md principle 4).

The API reads them from here; the hooks receive only their part (:class:`HookDeps`). Every field is typed by the
seam it fills (``cds_service.interfaces``), so tests and tools swap in the in-memory implementations. Nothing in
this module reads the environment.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from cds_service.audit.recorder import AuditRecorder
from cds_service.config import Settings
from cds_service.interfaces import (
    AuditReader,
    AuditWriter,
    Authenticator,
    Clock,
    FhirReader,
    FhirServerGuard,
    HookDeps,
    TerminologyService,
)


def utc_now() -> datetime:
    """The real clock (injectable: tests and `evaluate --now` replace it)."""
    return datetime.now(UTC)


def new_uuid() -> str:
    """A random UUID string for cards and suggestions."""
    return str(uuid.uuid4())


@dataclass(frozen=True)
class Runtime:
    """Everything the HTTP layer needs besides the request."""

    settings: Settings
    fhir: FhirReader
    terminology: TerminologyService
    authenticate: Authenticator
    fhir_guard: FhirServerGuard
    audit_writer: AuditWriter
    audit_reader: AuditReader
    recorder: AuditRecorder
    hook_deps: HookDeps
    clock: Clock

    def close(self) -> None:
        """Stop the audit writer (after a last drain), then release the reader, FHIR connections and threads."""
        self.audit_writer.close()
        writer: object = self.audit_writer  # one in-memory log may be both: close it once
        if self.audit_reader is not writer:
            self.audit_reader.close()
        self.fhir.close()

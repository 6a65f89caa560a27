"""The exception tree of MgCDS.

Typed exceptions are raised at the edges (request parsing, FHIR client, security, audit store) and turned into
CDS Hooks answers in exactly one place, ``cds_service.api.errors``::

    MgCDSError                          base; never escapes the HTTP layer untranslated
    +-- ConfigurationError              bad settings at start-up (not an HTTP answer: the process refuses to start)
    +-- ClientError                     the caller's fault -> 4xx
    |   +-- BadRequest                  400: malformed JSON, invalid CDS Hooks request, bad draft orders
    |   +-- NotFound                    404: unknown service id
    |   +-- UnsupportedMediaType        415: body is not application/json
    |   +-- PayloadTooLarge             413: body over the configured limit
    |   +-- Unauthorized                401: missing or invalid caller JWT (generic body; reason only in the log)
    |   |   +-- InvalidCallerToken      the CDS Hooks JWT failed a check (``reason`` names which)
    |   +-- FhirServerNotAllowed        400: fhirServer not allowlisted for the caller (no request is made)
    +-- PrerequisiteFailed              412: data the service needs could not be obtained (e.g. the Patient)
    +-- FhirError                       a FHIR server call failed (raised by the client edge, never by the engine)
    |   +-- FhirUnreachable             connection refused, DNS failure, timeout
    |   |   +-- FhirBudgetExhausted     the hook call's FHIR deadline or byte allowance ran out (not retried)
    |   +-- FhirAuthError               401/403 from the FHIR server (token expired or insufficient scope)
    |   +-- FhirNotFound                404
    |   +-- FhirServerError             5xx
    |   +-- FhirBadResponse             not JSON, not FHIR, an OperationOutcome where a Bundle was expected
    +-- AuditStoreError                 the audit store cannot be written or read
    |   +-- AuditNotDurable             503: a call's audit record could not be made durable in the spool
    +-- KeysUnavailable                 an issuer's JWKS could not be fetched or parsed (the caller then gets 401)
    +-- TerminologyError                a value set file is invalid, or a remote terminology call failed
    +-- CommandError                    a CLI command cannot do what it was asked: one line on stderr, exit 1
        +-- EvaluateError               ``mgcds evaluate``: the request, Bundle or server is unusable
        +-- InvokeError                 ``mgcds invoke`` and the CDS client: bad input, or the service failed
            +-- UnfillableTemplate      a prefetch template needs a token this request cannot fill

Each exception's message is safe to show to the caller: it never contains tokens or patient data values.
"""

from __future__ import annotations


class MgCDSError(Exception):
    """Base of every error MgCDS raises on purpose."""


class ConfigurationError(MgCDSError):
    """Settings are missing or invalid; the process refuses to start."""


class ClientError(MgCDSError):
    """The request is at fault; answered with ``status``."""

    status = 400
    error = "bad_request"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class BadRequest(ClientError):
    """The request body or parameters are invalid."""


class NotFound(ClientError):
    """No such resource (e.g. an unknown CDS service id)."""

    status = 404
    error = "not_found"


class UnsupportedMediaType(ClientError):
    """The body is not JSON."""

    status = 415
    error = "unsupported_media_type"


class PayloadTooLarge(ClientError):
    """The body is larger than the configured limit."""

    status = 413
    error = "payload_too_large"


class Unauthorized(ClientError):
    """The caller could not be authenticated; the detailed reason stays in the server log."""

    status = 401
    error = "unauthorized"


# What a 401 says, whatever the reason: telling a caller which check failed would help an attacker.
GENERIC_UNAUTHORIZED = "invalid or missing CDS Hooks JWT"


class InvalidCallerToken(Unauthorized):
    """The caller's JWT was missing or invalid; ``reason`` says why (for log and audit, not the caller)."""

    def __init__(self, reason: str, *, issuer: str | None = None) -> None:
        super().__init__(GENERIC_UNAUTHORIZED)
        self.reason = reason
        self.issuer = issuer


class FhirServerNotAllowed(ClientError):
    """The request names a FHIR server this caller may not make us contact."""

    status = 400
    error = "fhir_server_not_allowed"


class PrerequisiteFailed(MgCDSError):
    """Data the hook cannot work without could not be obtained (CDS Hooks: 412)."""

    status = 412
    error = "prefetch_unobtainable"

    def __init__(self, message: str, *, cause: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.cause = cause


class FhirError(MgCDSError):
    """A call to the EHR's FHIR server failed; ``kind`` names how, for cards and the audit log."""

    kind = "error"

    def __init__(self, message: str, *, url: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.url = url
        self.status = status


class FhirUnreachable(FhirError):
    """Connection refused, DNS failure or timeout."""

    kind = "unreachable"


class FhirBudgetExhausted(FhirUnreachable):
    """The hook call's shared FHIR deadline passed, or its byte allowance was used up (a slow or huge answer)."""

    kind = "budget-exhausted"


class FhirAuthError(FhirError):
    """The FHIR server refused the access token (401/403)."""

    kind = "unauthorized"


class FhirNotFound(FhirError):
    """The FHIR server answered 404."""

    kind = "not-found"


class FhirServerError(FhirError):
    """The FHIR server answered 5xx."""

    kind = "server-error"


class FhirBadResponse(FhirError):
    """The FHIR server answered something that is not the FHIR we asked for."""

    kind = "bad-response"


class AuditStoreError(MgCDSError):
    """The audit store could not be reached or written."""


class AuditNotDurable(AuditStoreError):
    """A call's audit record could not be made durable (the spool refused it): the call is answered 503."""

    status = 503
    error = "audit_unavailable"


class KeysUnavailable(MgCDSError):
    """An issuer's JWK Set could not be fetched or parsed."""


class TerminologyError(MgCDSError):
    """A value set is invalid, or a remote terminology lookup failed."""


class CommandError(MgCDSError):
    """A command of the ``mgcds`` CLI cannot do what it was asked; the message is the one line the user sees."""


class EvaluateError(CommandError):
    """The evaluate command's input is unusable."""


class InvokeError(CommandError):
    """A failure of ``mgcds invoke`` or the CDS client: bad input, an unreachable or failing service."""


class UnfillableTemplate(InvokeError):
    """A prefetch template uses a token this request cannot fill; the EHR then does not send that key."""

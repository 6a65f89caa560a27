"""The CDS Hooks 2.0 wire format as pydantic models: requests (one typed context per hook), cards, feedback.

Shared by the HTTP API, the hooks and the CLI; it imports no flask. Requests are validated strictly enough to answer
400 naming the field (``context.selections``); responses are validated before they leave, so that a bug of ours
never sends an invalid card to an EHR.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cds_service.audit import limits
from cds_service.engine.vocabulary import Hook
from cds_service.vocabulary import CardExtension

SUMMARY_MAX_LENGTH = 140  # CDS Hooks 2.0 "Card Attributes": summary SHOULD be under 140 characters
# Longest userId/patientId/encounterId accepted (FHIR ids are 64; references longer). One number with the audit
# store's columns (cds_service.audit.limits): what the API accepts, the store holds.
CONTEXT_ID_MAX_LENGTH = limits.CONTEXT_ID_MAX


def _no_control_characters(value: str) -> str:
    # An identifier never holds a control character; a NUL would not fit PostgreSQL text (issue 16, B8).
    if limits.has_control_character(value):
        raise ValueError("must not contain control characters")
    return value


NoControl = AfterValidator(_no_control_characters)


class _Wire(BaseModel):
    """Base: unknown fields are allowed in requests (the spec lets EHRs extend), kept as-is."""

    # hide_input_in_errors: a ValidationError's text (which can reach a log through an exception) never carries the
    # patient's data or a token.
    model_config = ConfigDict(extra="allow", populate_by_name=True, hide_input_in_errors=True)


class FhirAuthorization(_Wire):
    """The EHR's access token for its FHIR server (CDS Hooks 2.0 "Passing the Access Token")."""

    access_token: str = Field(min_length=1)
    token_type: Literal["Bearer"]
    expires_in: int = Field(ge=0)
    scope: str = Field(min_length=1)
    subject: str = Field(min_length=1)
    patient: str | None = None

    def __repr__(self) -> str:
        # Tokens never reach a log (DESIGN.md principle 9), not even through a repr in a traceback.
        return f"FhirAuthorization(token_type={self.token_type!r}, scope={self.scope!r}, access_token=<redacted>)"

    __str__ = __repr__


# --- Contexts: one model per hook (hook library: patient-view 1.0, order-select 1.0, order-sign 1.0) ----------

ContextId = Annotated[str, Field(min_length=1, max_length=CONTEXT_ID_MAX_LENGTH), NoControl]
Selection = Annotated[str, Field(min_length=1)]


class PatientViewContext(_Wire):
    """``context`` of patient-view: who is looking at which chart."""

    userId: ContextId  # noqa: N815 - the spec's field names
    patientId: ContextId  # noqa: N815
    encounterId: ContextId | None = None  # noqa: N815


class OrderSignContext(PatientViewContext):
    """``context`` of order-sign: the draft orders about to be signed (a FHIR Bundle)."""

    draftOrders: dict[str, Any]  # noqa: N815

    @field_validator("draftOrders")
    @classmethod
    def _bundle(cls, value: dict[str, Any]) -> dict[str, Any]:
        if value.get("resourceType") != "Bundle":
            raise ValueError("context.draftOrders must be a FHIR Bundle")
        return value


class OrderSelectContext(OrderSignContext):
    """``context`` of order-select: the draft orders and which of them were just selected."""

    selections: list[Selection]


# --- Requests ----------------------------------------------------------------------------------------------------


class _HookRequestBase(_Wire):
    """What every CDS Hooks 2.0 service request carries besides its hook's context."""

    hook: str = Field(min_length=1, max_length=200)
    hookInstance: Annotated[  # noqa: N815 - the spec's field name
        str, Field(min_length=1, max_length=limits.HOOK_INSTANCE_MAX), NoControl
    ]
    fhirServer: str | None = Field(default=None, max_length=2000)  # noqa: N815
    fhirAuthorization: FhirAuthorization | None = None  # noqa: N815
    prefetch: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _authorization_needs_server(self) -> _HookRequestBase:
        # CDS Hooks 2.0: fhirAuthorization is only meaningful with fhirServer ("If fhirAuthorization ... then
        # fhirServer MUST be present").
        if self.fhirAuthorization is not None and not self.fhirServer:
            raise ValueError("fhirAuthorization requires fhirServer")
        return self

    @property
    def access_token(self) -> str | None:
        """The EHR's FHIR access token, if it sent one."""
        return self.fhirAuthorization.access_token if self.fhirAuthorization is not None else None


class HookRequest(_HookRequestBase):
    """A CDS Hooks 2.0 service request (HTTP POST body) whose context is not yet read for a particular hook."""

    context: dict[str, Any]


class PatientViewRequest(_HookRequestBase):
    """A patient-view call."""

    context: PatientViewContext


class OrderSelectRequest(_HookRequestBase):
    """An order-select call."""

    context: OrderSelectContext


class OrderSignRequest(_HookRequestBase):
    """An order-sign call."""

    context: OrderSignContext


AnyHookRequest = PatientViewRequest | OrderSelectRequest | OrderSignRequest

REQUEST_MODELS: Mapping[Hook, type[AnyHookRequest]] = {
    Hook.PATIENT_VIEW: PatientViewRequest,
    Hook.ORDER_SELECT: OrderSelectRequest,
    Hook.ORDER_SIGN: OrderSignRequest,
}
CONTEXT_MODELS: Mapping[Hook, type[PatientViewContext]] = {
    Hook.PATIENT_VIEW: PatientViewContext,
    Hook.ORDER_SELECT: OrderSelectContext,
    Hook.ORDER_SIGN: OrderSignContext,
}


class HookMismatch(ValueError):
    """The request's ``hook`` is not the hook of the service it was sent to."""


def parse_hook_request(body: Mapping[str, Any], hook: Hook) -> AnyHookRequest:
    """Validate a request body for ``hook``: ValidationError naming the field, HookMismatch for another hook."""
    sent = body.get("hook")
    if not isinstance(sent, str) or sent != hook:
        # The generic model gives the precise error for a missing or malformed hook; a well-formed other hook is a
        # mismatch, reported before its context is read with the wrong model.
        HookRequest.model_validate(body)
        raise HookMismatch(f"hook {sent!r} does not match this service's hook ({hook})")
    return REQUEST_MODELS[hook].model_validate(body)


def validation_message(exc: ValidationError) -> tuple[str, str]:
    """The first validation error as (dotted field path, message) for a 400 body."""
    first = exc.errors(include_url=False)[0]
    path = ".".join(str(part) for part in first.get("loc", ())) or "body"
    message = str(first.get("msg", "invalid"))
    # Our own validators already name the field ("context.draftOrders must be ..."): don't say it twice.
    message = message.removeprefix("Value error, ")
    return path, message if message.startswith(path) else f"{path}: {message}"


# --- Responses -------------------------------------------------------------------------------------------------


class _Strict(BaseModel):
    """Base for what we send: no unknown fields, so a typo in our own code fails the response validation."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)  # cards carry PHI: see _Wire


class Coding(_Strict):
    """A FHIR Coding as CDS Hooks uses it (override reasons, feedback)."""

    system: str = Field(min_length=1)
    code: str = Field(min_length=1)
    display: str = Field(min_length=1)


class Source(_Strict):
    """Where a card's advice comes from."""

    label: str = Field(min_length=1)
    url: str | None = None
    icon: str | None = None
    topic: Coding | None = None


class Action(_Strict):
    """One FHIR change a suggestion proposes."""

    type: Literal["create", "update", "delete"]
    description: str = Field(min_length=1)
    resource: dict[str, Any] | None = None
    # CDS Hooks 2.0 "Action" (requirement 135 in reference/cds-hooks-2.0-requirements.csv): a string, the relative
    # reference of the resource to delete, e.g. "ServiceRequest/procedure-request-1" (spec-2.0.1-action-delete.json).
    resourceId: str | None = Field(default=None, min_length=1)  # noqa: N815

    @model_validator(mode="after")
    def _shape(self) -> Action:
        if self.type in ("create", "update") and not self.resource:
            raise ValueError(f"a {self.type} action needs a resource")
        if self.type == "delete" and not self.resourceId:
            raise ValueError("a delete action needs resourceId")
        return self


class Suggestion(_Strict):
    """A set of actions the clinician can accept as one."""

    label: str = Field(min_length=1)
    uuid: str = Field(min_length=1)
    isRecommended: bool | None = None  # noqa: N815
    actions: list[Action] = Field(min_length=1)


class Link(_Strict):
    """A link to a reference or a SMART app."""

    label: str = Field(min_length=1)
    url: str = Field(min_length=1)
    type: Literal["absolute", "smart"]
    appContext: str | None = None  # noqa: N815


class Card(_Strict):
    """A CDS Hooks 2.0 card as MgCDS sends it (every card carries its recommendation code)."""

    uuid: str = Field(min_length=1)
    summary: str = Field(min_length=1, max_length=SUMMARY_MAX_LENGTH - 1)
    detail: str | None = None
    indicator: Literal["info", "warning", "critical"]
    source: Source
    suggestions: list[Suggestion] | None = None
    selectionBehavior: Literal["at-most-one", "any"] | None = None  # noqa: N815
    overrideReasons: list[Coding] | None = None  # noqa: N815
    links: list[Link] | None = None
    extension: dict[str, Any]

    @model_validator(mode="after")
    def _selection_behavior(self) -> Card:
        if self.suggestions and self.selectionBehavior is None:
            raise ValueError("selectionBehavior is required when a card has suggestions")
        if CardExtension.RECOMMENDATION not in self.extension:
            raise ValueError(
                f"every MgCDS card names its recommendation in extension[{CardExtension.RECOMMENDATION!r}]"
            )
        return self


class CardsResponse(_Strict):
    """The body of a hook response."""

    cards: list[Card]


# --- Feedback --------------------------------------------------------------------------------------------------


class AcceptedSuggestion(_Wire):
    """A suggestion the clinician accepted."""

    id: Annotated[str, Field(min_length=1, max_length=200), NoControl]


class FeedbackCoding(_Wire):
    """An override reason as the EHR sends it back (display may be absent)."""

    code: Annotated[str, Field(min_length=1, max_length=limits.REASON_CODE_MAX), NoControl]
    system: Annotated[str, Field(max_length=limits.REASON_SYSTEM_MAX), NoControl] | None = None
    display: str | None = Field(default=None, max_length=500)


class OverrideReason(_Wire):
    """Why a clinician overrode a card."""

    reason: FeedbackCoding | None = None
    userComment: str | None = Field(default=None, max_length=4000)  # noqa: N815


class FeedbackItem(_Wire):
    """One feedback entry (CDS Hooks 2.0 "Feedback")."""

    # Our card uuids have 36 characters; the store's column holds CARD_ID_COLUMN: longer is refused here (400).
    card: Annotated[str, Field(min_length=1, max_length=limits.CARD_ID_MAX), NoControl]
    outcome: Literal["accepted", "overridden"]
    acceptedSuggestions: list[AcceptedSuggestion] | None = None  # noqa: N815
    overrideReason: OverrideReason | None = None  # noqa: N815
    outcomeTimestamp: datetime  # noqa: N815

    @field_validator("outcomeTimestamp")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("outcomeTimestamp must carry a time zone (ISO 8601 with Z or an offset)")
        return value

    @model_validator(mode="after")
    def _override_reason_only_when_overridden(self) -> FeedbackItem:
        # CDS Hooks 2.0 makes acceptedSuggestions required for accepted outcomes, but a card without suggestions
        # can only be accepted without them, and EHRs (HealthChain's client among them) send it that way: it is
        # accepted, and the record says no suggestion was named (issue 15 item 5). An override reason still
        # belongs to an overridden outcome only.
        if self.outcome == "accepted" and self.overrideReason is not None:
            raise ValueError("overrideReason is only allowed when outcome is 'overridden'")
        return self


class FeedbackRequest(_Wire):
    """The feedback body: ``{"feedback": [...]}``."""

    feedback: list[FeedbackItem] = Field(min_length=1, max_length=1000)

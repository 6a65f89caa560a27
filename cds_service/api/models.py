"""Pydantic models of the CDS Hooks 2.0 wire format: requests, cards, suggestions, actions, links, feedback.

Requests are validated strictly enough to answer 400 naming the field; responses are validated before they leave
so that a bug of ours never sends an invalid card to an EHR. This module imports no flask: cards.py and the CLI use
it too.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# The CDS Hooks 2.0 hooks this service implements, with the context fields each requires
# (hook library: patient-view 1.0, order-select 1.0, order-sign 1.0).
REQUIRED_CONTEXT: dict[str, tuple[str, ...]] = {
    "patient-view": ("userId", "patientId"),
    "order-select": ("userId", "patientId", "selections", "draftOrders"),
    "order-sign": ("userId", "patientId", "draftOrders"),
}

SUMMARY_MAX_LENGTH = 140  # CDS Hooks 2.0 "Card Attributes": summary SHOULD be under 140 characters


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


class HookRequest(_Wire):
    """A CDS Hooks 2.0 service request (HTTP POST body)."""

    hook: str = Field(min_length=1, max_length=200)
    hookInstance: str = Field(min_length=1, max_length=200)  # noqa: N815 - the spec's field name
    fhirServer: str | None = Field(default=None, max_length=2000)  # noqa: N815
    fhirAuthorization: FhirAuthorization | None = None  # noqa: N815
    context: dict[str, Any]
    prefetch: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _authorization_needs_server(self) -> HookRequest:
        # CDS Hooks 2.0: fhirAuthorization is only meaningful with fhirServer ("If fhirAuthorization ... then
        # fhirServer MUST be present").
        if self.fhirAuthorization is not None and not self.fhirServer:
            raise ValueError("fhirAuthorization requires fhirServer")
        return self

    def require_context(self, hook: str) -> None:
        """Raise ValueError naming the first missing or mistyped required context field of ``hook``."""
        for name in REQUIRED_CONTEXT.get(hook, ()):
            value = self.context.get(name)
            if value is None or value == "":
                raise ValueError(f"context.{name} is required for {hook}")
        for name in ("userId", "patientId", "encounterId"):
            value = self.context.get(name)
            if value is not None and (not isinstance(value, str) or len(value) > 200):
                raise ValueError(f"context.{name} must be a string of at most 200 characters")
        if "selections" in REQUIRED_CONTEXT.get(hook, ()):
            selections = self.context["selections"]
            if not isinstance(selections, list) or not all(isinstance(s, str) and s for s in selections):
                raise ValueError("context.selections must be a list of non-empty strings")
        if "draftOrders" in REQUIRED_CONTEXT.get(hook, ()):
            draft_orders = self.context["draftOrders"]
            if not isinstance(draft_orders, dict) or draft_orders.get("resourceType") != "Bundle":
                raise ValueError("context.draftOrders must be a FHIR Bundle")

    @property
    def patient_id(self) -> str:
        """The patient in context (validated present by require_context)."""
        return str(self.context.get("patientId", ""))


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
        if "org.mgcds.recommendation" not in self.extension:
            raise ValueError("every MgCDS card names its recommendation in extension['org.mgcds.recommendation']")
        return self


class CardsResponse(_Strict):
    """The body of a hook response."""

    cards: list[Card]


# --- Feedback --------------------------------------------------------------------------------------------------


class AcceptedSuggestion(_Wire):
    """A suggestion the clinician accepted."""

    id: str = Field(min_length=1, max_length=200)


class FeedbackCoding(_Wire):
    """An override reason as the EHR sends it back (display may be absent)."""

    code: str = Field(min_length=1, max_length=200)
    system: str | None = Field(default=None, max_length=500)
    display: str | None = Field(default=None, max_length=500)


class OverrideReason(_Wire):
    """Why a clinician overrode a card."""

    reason: FeedbackCoding | None = None
    userComment: str | None = Field(default=None, max_length=4000)  # noqa: N815


class FeedbackItem(_Wire):
    """One feedback entry (CDS Hooks 2.0 "Feedback")."""

    card: str = Field(min_length=1, max_length=200)
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
    def _accepted_has_suggestions(self) -> FeedbackItem:
        # CDS Hooks 2.0: acceptedSuggestions is REQUIRED for accepted outcomes, and an override reason belongs to
        # an overridden outcome only.
        if self.outcome == "accepted" and not self.acceptedSuggestions:
            raise ValueError("acceptedSuggestions is required when outcome is 'accepted'")
        if self.outcome == "accepted" and self.overrideReason is not None:
            raise ValueError("overrideReason is only allowed when outcome is 'overridden'")
        return self


class FeedbackRequest(_Wire):
    """The feedback body: ``{"feedback": [...]}``."""

    feedback: list[FeedbackItem] = Field(min_length=1, max_length=1000)

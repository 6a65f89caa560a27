"""The CDS services: one module per service (its discovery entry and handle()), and the registry of them."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from cds_service.cdshooks import AnyHookRequest, OrderSelectRequest, OrderSignRequest, PatientViewRequest
from cds_service.engine.recommend.types import Recommendation
from cds_service.fhir.prefetch import ResolvedData
from cds_service.interfaces import HookDeps, Suppression
from hooks.base import CdsService

RequestT = TypeVar("RequestT", PatientViewRequest, OrderSelectRequest, OrderSignRequest)


@dataclass
class HookOutcome:
    """What a hook produced: the cards, and what the audit log needs to explain them.

    ``recommendations`` are the ones the cards were built from, in card order (``cards[i]`` words
    ``recommendations[i]``); ``assessment["recommendations"]`` lists their codes.
    """

    cards: list[dict[str, Any]]
    assessment: dict[str, Any] | None = None
    data: ResolvedData | None = None
    notes: list[str] = field(default_factory=list)
    recommendations: tuple[Recommendation, ...] = ()
    # The recommendations not shown because feedback suppresses them (clinical-rules.md 7.5), for the audit record.
    suppressed: tuple[Suppression, ...] = ()


Handler = Callable[[AnyHookRequest, HookDeps], HookOutcome]


@dataclass(frozen=True)
class RegisteredService:
    """A service's discovery definition and the function that handles its calls."""

    definition: CdsService
    handle: Handler


def register(
    definition: CdsService, request_type: type[RequestT], handler: Callable[[RequestT, HookDeps], HookOutcome]
) -> RegisteredService:
    """A service whose handler is typed for its own hook's request (a request of another hook is our bug)."""

    def handle(request: AnyHookRequest, deps: HookDeps) -> HookOutcome:
        if not isinstance(request, request_type):
            raise TypeError(f"{definition.id} handles {request_type.__name__} only, not {type(request).__name__}")
        return handler(request, deps)

    return RegisteredService(definition, handle)


class ServiceRegistry:
    """The services this process offers, by id, in discovery order."""

    def __init__(self, services: Sequence[RegisteredService]) -> None:
        self._services = {s.definition.id: s for s in services}

    def get(self, service_id: str) -> RegisteredService | None:
        """The service with this id, if any."""
        return self._services.get(service_id)

    def discovery(self) -> list[dict[str, Any]]:
        """The ``services`` array of the discovery document."""
        return [s.definition.discovery_entry() for s in self._services.values()]

    def __iter__(self) -> Iterator[RegisteredService]:
        return iter(self._services.values())


def build_registry(observation_codes: Sequence[str]) -> ServiceRegistry:
    """The three MgCDS services, with prefetch templates for the given LOINC codes (``system|code``)."""
    from hooks import order_select, order_sign, patient_view

    return ServiceRegistry(
        [
            patient_view.service(observation_codes),
            order_select.service(observation_codes),
            order_sign.service(observation_codes),
        ]
    )

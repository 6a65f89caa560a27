"""The CDS services: one module per service (its discovery entry and handle()), and the registry of them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hooks.base import CdsService

if TYPE_CHECKING:
    from cds_service.cdshooks import AnyHookRequest as HookRequest
    from cds_service.fhir.prefetch import ResolvedData
    from cds_service.interfaces import HookDeps


@dataclass
class HookOutcome:
    """What a hook produced: the cards, and what the audit log needs to explain them."""

    cards: list[dict[str, Any]]
    assessment: dict[str, Any] | None = None
    data: ResolvedData | None = None
    notes: list[str] = field(default_factory=list)


Handler = Callable[["HookRequest", "HookDeps"], HookOutcome]


@dataclass(frozen=True)
class RegisteredService:
    """A service's discovery definition and the function that handles its calls."""

    definition: CdsService
    handle: Handler


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

    def __iter__(self) -> Any:
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

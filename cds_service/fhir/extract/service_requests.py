"""ServiceRequests -> order facts: which tests are already ordered (active, or drafts of this order session)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from cds_service.engine.facts import Evidence, OrderFact
from cds_service.fhir.extract.datatypes import (
    code_string,
    display_of,
    parse_fhir_datetime,
    read_codeable_concept,
    resource_id,
    status_of,
)
from cds_service.fhir.extract.observations import lab_concept
from cds_service.fhir.extract.patient import PatientScope
from cds_service.interfaces import TerminologyService


def read_service_requests(
    resources: Iterable[dict[str, Any]], terminology: TerminologyService, scope: PatientScope, *, draft: bool = False
) -> list[OrderFact]:
    """The facts of this patient's ServiceRequests for a test the rules may recommend."""
    facts: list[OrderFact] = []
    for resource in scope.mine(resources, "ServiceRequest"):
        concept = read_codeable_concept(resource.get("code"))
        if concept is None:
            continue
        match = terminology.classify_service_request(concept[0], concept[1])
        matched = lab_concept(match.concept) if match is not None else None
        if matched is None:
            continue
        facts.append(
            OrderFact(
                concept=matched,
                status=status_of(resource),
                is_draft=draft,
                evidence=Evidence(
                    resource_type="ServiceRequest",
                    resource_id=resource_id(resource),
                    code=code_string(concept[0]),
                    display=display_of(*concept),
                    date=parse_fhir_datetime(resource.get("authoredOn")),
                ),
            )
        )
    return facts

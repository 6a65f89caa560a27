"""Conditions -> condition facts (an alcohol use disorder, clinical-rules.md section 4)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from cds_service.engine.facts import ConditionFact, Evidence
from cds_service.engine.vocabulary import ConditionConcept
from cds_service.fhir.extract.datatypes import (
    code_string,
    display_of,
    first_code,
    parse_fhir_datetime,
    read_codeable_concept,
    resource_id,
)
from cds_service.fhir.extract.patient import PatientScope
from cds_service.interfaces import TerminologyService


def condition_concept(name: str | None) -> ConditionConcept | None:
    """The vocabulary's condition concept of a terminology concept name; None for one no rule reads."""
    try:
        return ConditionConcept(name) if name is not None else None
    except ValueError:
        return None


def read_conditions(
    resources: Iterable[dict[str, Any]], terminology: TerminologyService, scope: PatientScope
) -> list[ConditionFact]:
    """The facts of this patient's Conditions of a concept the rules use."""
    facts: list[ConditionFact] = []
    for resource in scope.mine(resources, "Condition"):
        concept = read_codeable_concept(resource.get("code"))
        if concept is None:
            continue
        matched = condition_concept(terminology.classify_condition(concept[0], concept[1]))
        if matched is None:
            continue
        facts.append(
            ConditionFact(
                concept=matched,
                clinical_status=first_code(resource.get("clinicalStatus")),
                verification_status=first_code(resource.get("verificationStatus")),
                evidence=Evidence(
                    resource_type="Condition",
                    resource_id=resource_id(resource),
                    code=code_string(concept[0]),
                    display=display_of(*concept),
                    date=parse_fhir_datetime(resource.get("onsetDateTime") or resource.get("recordedDate")),
                ),
            )
        )
    return facts

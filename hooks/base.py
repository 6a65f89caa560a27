"""What every MgCDS service shares: its discovery entry and its prefetch templates.

Prefetch templates use only CDS Hooks 2.0 tokens (``{{context.patientId}}``): root-level primitive context fields,
no FHIRPath, no nested paths (spec: "Prefetch tokens"), and only the query subset the spec recommends EHRs support:
type-level search on ``patient``, token search with equality, ``_sort`` and ``_count``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cds_service.engine.vocabulary import Hook
from cds_service.vocabulary import PrefetchKey

# How many Observations one page may hold: enough for a year of the engine's labs in one answer on most servers.
OBSERVATION_PAGE_SIZE = 200


def prefetch_templates(observation_codes: Sequence[str]) -> dict[str, str]:
    """The prefetch templates of every MgCDS service, for the LOINC codes the engine uses (``system|code``)."""
    codes = ",".join(observation_codes)
    patient = "{{context.patientId}}"
    return {
        PrefetchKey.PATIENT: f"Patient/{patient}",
        PrefetchKey.OBSERVATIONS: (
            f"Observation?patient={patient}&code={codes}&_sort=-date&_count={OBSERVATION_PAGE_SIZE}"
        ),
        PrefetchKey.MEDICATION_STATEMENTS: f"MedicationStatement?patient={patient}&status=active,intended",
        PrefetchKey.MEDICATION_REQUESTS: f"MedicationRequest?patient={patient}&status=active",
        PrefetchKey.CONDITIONS: f"Condition?patient={patient}&clinical-status=active",
        PrefetchKey.SERVICE_REQUESTS: f"ServiceRequest?patient={patient}&status=active,draft",
    }


@dataclass(frozen=True)
class CdsService:
    """One CDS service as discovery describes it."""

    id: str
    hook: Hook
    title: str
    description: str
    prefetch: Mapping[str, str]
    usage_requirements: str

    def discovery_entry(self) -> dict[str, Any]:
        """This service's entry in ``GET /cds-services``."""
        return {
            "hook": self.hook.value,
            "id": self.id,
            "title": self.title,
            "description": self.description,
            "prefetch": {str(key): template for key, template in self.prefetch.items()},
            "usageRequirements": self.usage_requirements,
        }


USAGE_REQUIREMENTS = (
    "Needs the patient's laboratory Observations (magnesium, creatinine, eGFR, alcohol use), medications "
    "(MedicationStatement and MedicationRequest), active Conditions and pending lab ServiceRequests, through "
    "prefetch or read access to the FHIR server (patient/*.read or user/*.read scopes). Callers authenticate "
    "with a CDS Hooks JWT (ES384 or RS384)."
)

"""Draft orders of the order hooks (``context.draftOrders``): which are R4 orders of this patient, which concerned.

Only FHIR R4 MedicationRequest and ServiceRequest are read; DSTU2/STU3 order resources are skipped with a note, as
are drafts without an id (a suggestion could not name them) and drafts of another patient.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cds_service.fhir.bundles import iter_bundle_resources
from cds_service.fhir.references import belongs_to_patient

# The resource types of R4 order entry this service reads; anything else in draftOrders is left alone.
ORDER_TYPES = frozenset({"MedicationRequest", "ServiceRequest"})
# Order resource types that only exist in DSTU2/STU3: skipped with a note (issue 5).
PRE_R4_ORDER_TYPES = frozenset(
    {"MedicationOrder", "ProcedureRequest", "DiagnosticOrder", "ReferralRequest", "ProcessRequest"}
)
# Elements of STU3 MedicationRequest that R4 renamed or removed: their presence marks an STU3 resource.
STU3_MEDICATION_REQUEST_ELEMENTS = frozenset({"context", "definition"})


@dataclass
class DraftOrders:
    """The orders of an order hook's ``context.draftOrders``."""

    resources: list[dict[str, Any]] = field(default_factory=list)
    refs: set[str] = field(default_factory=set)
    concerned: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)


def parse_draft_orders(bundle: Mapping[str, Any], selections: Sequence[str] | None, *, patient_id: str) -> DraftOrders:
    """Read the draft orders; ``selections`` (order-select) picks the concerned ones, else all are concerned."""
    drafts = DraftOrders()
    entries = bundle.get("entry")
    if entries is not None and not isinstance(entries, list):
        drafts.notes.append("draftOrders.entry is not a list; no draft orders read")
        return drafts
    for resource in iter_bundle_resources(bundle):
        resource_type = resource["resourceType"]
        rid = resource.get("id")
        ref = f"{resource_type}/{rid}" if isinstance(rid, str) and rid else None
        if ref is not None:
            drafts.refs.add(ref)
        if resource_type in PRE_R4_ORDER_TYPES or (
            resource_type == "MedicationRequest" and STU3_MEDICATION_REQUEST_ELEMENTS & resource.keys()
        ):
            drafts.notes.append(f"draft {ref or resource_type} is not FHIR R4 (DSTU2/STU3); skipped")
            continue
        if resource_type not in ORDER_TYPES:
            continue
        if ref is None:
            drafts.notes.append(f"a draft {resource_type} has no id; it cannot be named in a suggestion, skipped")
            continue
        if not belongs_to_patient(resource, {f"Patient/{patient_id}"}):
            drafts.notes.append(f"draft {ref} is for another patient; ignored")
            continue
        drafts.resources.append(resource)
    wanted = set(selections) if selections is not None else {f"{r['resourceType']}/{r['id']}" for r in drafts.resources}
    drafts.concerned = {f"{r['resourceType']}/{r['id']}" for r in drafts.resources} & wanted
    return drafts

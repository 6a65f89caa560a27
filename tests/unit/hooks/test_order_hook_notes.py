"""Notes about draft orders are reported once (issue 13, defect 3: the extractor and the hook both added them)."""

from __future__ import annotations

from typing import Any

import pytest

from cds_service.cdshooks import OrderSelectRequest, OrderSignRequest
from hooks import build_registry
from terminology import default_terminology
from tests.functional.conftest import load_example
from tests.unit.hooks.support import hook_deps

FOREIGN_DRAFT = {
    "resourceType": "MedicationRequest",
    "id": "draft-other-patient",
    "status": "draft",
    "intent": "order",
    "medicationCodeableConcept": {"text": "Furosemide 40 mg tablet"},
    "subject": {"reference": "Patient/someone-else"},
}
# parse_draft_orders' wording for a draft of another patient.
FOREIGN_NOTE = "draft MedicationRequest/draft-other-patient is for another patient; ignored"


def _request(hook: str) -> dict[str, Any]:
    body = load_example(f"{hook}-request.json")
    body["context"]["draftOrders"]["entry"].append({"resource": FOREIGN_DRAFT})
    return body


@pytest.mark.parametrize(
    ("service_id", "hook", "model"),
    [("mg-order-select", "order-select", OrderSelectRequest), ("mg-order-sign", "order-sign", OrderSignRequest)],
)
def test_a_draft_note_appears_once(service_id: str, hook: str, model: Any) -> None:
    service = build_registry(default_terminology().observation_search_codes()).get(service_id)
    assert service is not None
    outcome = service.handle(model.model_validate(_request(hook)), hook_deps())
    assert outcome.notes.count(FOREIGN_NOTE) == 1, outcome.notes

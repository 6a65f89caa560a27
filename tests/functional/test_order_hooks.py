"""Order entry over HTTP: clinical-rules.md section 8 for mg-order-select and mg-order-sign (issue 5's cases).

Expected codes and indicators come from the rules' table in section 8, applied by hand to each fixture below.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from typing import Any

import pytest
from fhir.resources.R4B.medicationrequest import MedicationRequest
from fhir.resources.R4B.servicerequest import ServiceRequest
from flask.testing import FlaskClient

from tests.conftest import PROJECT_ROOT, load_json, shared_path

PATIENT = "order-pt-1"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


def patient() -> dict[str, Any]:
    return {"resourceType": "Patient", "id": PATIENT, "gender": "female", "birthDate": "1960-05-05"}


def searchset(*resources: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in resources]}


def med_request(rid: str, text: str, *, status: str, code: str | None = None) -> dict[str, Any]:
    concept: dict[str, Any] = {"text": text}
    if code:
        concept["coding"] = [{"system": RXNORM, "code": code}]
    return {
        "resourceType": "MedicationRequest",
        "id": rid,
        "status": status,
        "intent": "order",
        "medicationCodeableConcept": concept,
        "subject": {"reference": f"Patient/{PATIENT}"},
    }


def serum_mg(value: float, unit: str, when: str = "2026-11-15T08:00:00Z") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": f"mg-{uuid.uuid4().hex[:8]}",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "19123-9"}]},
        "subject": {"reference": f"Patient/{PATIENT}"},
        "effectiveDateTime": when,
        "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit},
    }


def egfr(value: float, when: str = "2026-11-15T08:00:00Z") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": f"egfr-{uuid.uuid4().hex[:8]}",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "98979-8"}]},
        "subject": {"reference": f"Patient/{PATIENT}"},
        "effectiveDateTime": when,
        "valueQuantity": {"value": value, "unit": "mL/min/{1.73_m2}", "code": "mL/min/{1.73_m2}"},
    }


def order_request(
    hook: str,
    drafts: list[dict[str, Any]],
    *,
    selections: list[str] | None = None,
    observations: tuple[dict[str, Any], ...] = (),
    medication_requests: tuple[dict[str, Any], ...] = (),
) -> dict[str, Any]:
    context: dict[str, Any] = {
        "userId": "Practitioner/example",
        "patientId": PATIENT,
        "encounterId": "enc-9",
        "draftOrders": {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": d} for d in drafts]},
    }
    if hook == "order-select":
        context["selections"] = selections if selections is not None else [f"MedicationRequest/{drafts[0]['id']}"]
    return {
        "hook": hook,
        "hookInstance": str(uuid.uuid4()),
        "context": context,
        "prefetch": {
            "patient": patient(),
            "observations": searchset(*observations),
            "medicationStatements": searchset(),
            "medicationRequests": searchset(*medication_requests),
            "conditions": searchset(),
            "serviceRequests": searchset(),
        },
    }


def call(client: FlaskClient, request: dict[str, Any]) -> list[dict[str, Any]]:
    service = "mg-order-select" if request["hook"] == "order-select" else "mg-order-sign"
    response = client.post(f"/cds-services/{service}", json=request)
    assert response.status_code == 200, response.get_data(as_text=True)
    cards: list[dict[str, Any]] = response.get_json()["cards"]
    for card in cards:
        for suggestion in card.get("suggestions", ()):
            for action in suggestion["actions"]:
                if action["type"] == "create":
                    model = (
                        MedicationRequest
                        if action["resource"]["resourceType"] == "MedicationRequest"
                        else ServiceRequest
                    )
                    model.model_validate(action["resource"])  # valid FHIR R4 (R4B reads R4)
                    assert action["resource"]["subject"]["reference"] == f"Patient/{PATIENT}"
    return cards


def codes(cards: list[dict[str, Any]]) -> list[str]:
    return [c["extension"]["org.mgcds.recommendation"] for c in cards]


@pytest.mark.parametrize("name", ["order-select-example-1.json", "order-sign-example-1.json"])
def test_hook_library_r4_examples_give_no_cards(client: FlaskClient, name: str) -> None:
    example = load_json(shared_path("fixtures", "cds-hooks-spec", name))
    hook = "order-select" if "select" in name else "order-sign"
    request = {
        "hook": hook,
        "hookInstance": str(uuid.uuid4()),
        "context": example["context"],
        "prefetch": {"patient": {"resourceType": "Patient", "id": example["context"]["patientId"]}},
    }
    for key in ("observations", "medicationStatements", "medicationRequests", "conditions", "serviceRequests"):
        request["prefetch"][key] = searchset()
    response = client.post(f"/cds-services/mg-{hook}", json=request)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json() == {"cards": []}


def test_draft_omeprazole_without_magnesium_suggests_a_serum_test(client: FlaskClient) -> None:
    draft = med_request("d-ome", "Omeprazole 20 mg capsule", status="draft", code="7646")
    cards = call(client, order_request("order-select", [draft], observations=(egfr(95),)))
    assert codes(cards) == ["order-depletes-mg"]
    assert cards[0]["indicator"] == "info"
    assert "Omeprazole" in cards[0]["summary"]
    created = cards[0]["suggestions"][0]["actions"][0]
    assert created["type"] == "create"
    assert created["resource"]["resourceType"] == "ServiceRequest"
    assert created["resource"]["code"]["coding"][0]["code"] == "19123-9"


def test_draft_furosemide_with_low_serum_magnesium_is_a_warning_without_test(client: FlaskClient) -> None:
    # 0.62 mmol/L is `low` (0.50 to < 0.70): warning; serum known, so no test suggestion.
    draft = med_request("d-furo", "Furosemide 40 mg tablet", status="draft", code="4603")
    cards = call(client, order_request("order-sign", [draft], observations=(serum_mg(0.62, "mmol/L"), egfr(70))))
    depletes = [c for c in cards if c["extension"]["org.mgcds.recommendation"] == "order-depletes-mg"]
    assert len(depletes) == 1
    assert depletes[0]["indicator"] == "warning"
    assert "suggestions" not in depletes[0]


def test_draft_magnesium_oxide_is_switched_to_citrate_in_one_suggestion(client: FlaskClient) -> None:
    draft = med_request("d-oxide", "Magnesium oxide 400 mg tablet", status="draft")
    cards = call(client, order_request("order-sign", [draft], observations=(serum_mg(1.8, "mg/dL"), egfr(80))))
    switch = [c for c in cards if c["extension"]["org.mgcds.recommendation"] == "switch-to-organic"]
    assert len(switch) == 1
    suggestion = switch[0]["suggestions"]
    assert len(suggestion) == 1
    actions = suggestion[0]["actions"]
    assert [a["type"] for a in actions] == ["delete", "create"]
    assert actions[0]["resourceId"] == "MedicationRequest/d-oxide"
    assert "citrate" in str(actions[1]["resource"]["medicationCodeableConcept"]).lower()


def test_draft_magnesium_citrate_with_egfr_25_is_contraindicated_with_delete(client: FlaskClient) -> None:
    draft = med_request("d-citrate", "Magnesium citrate 150 mg tablet", status="draft")
    cards = call(client, order_request("order-sign", [draft], observations=(egfr(25),)))
    contraindicated = [
        c for c in cards if c["extension"]["org.mgcds.recommendation"] == "order-supplement-contraindicated"
    ]
    assert len(contraindicated) == 1
    assert contraindicated[0]["indicator"] == "warning"
    actions = contraindicated[0]["suggestions"][0]["actions"]
    assert actions == [
        {"type": "delete", "description": actions[0]["description"], "resourceId": "MedicationRequest/d-citrate"}
    ]


def test_draft_magnesium_citrate_while_doxycycline_is_active_needs_spacing(client: FlaskClient) -> None:
    draft = med_request("d-citrate", "Magnesium citrate 150 mg tablet", status="draft")
    doxy = med_request("doxy", "Doxycycline hyclate 100 mg capsule", status="active")
    cards = call(
        client,
        order_request(
            "order-select", [draft], observations=(egfr(80), serum_mg(0.80, "mmol/L")), medication_requests=(doxy,)
        ),
    )
    spacing = [c for c in cards if c["extension"]["org.mgcds.recommendation"] == "order-spacing"]
    assert len(spacing) == 1
    assert "2-3 h" in spacing[0]["detail"]


def test_draft_doxycycline_while_magnesium_citrate_is_active_needs_spacing(client: FlaskClient) -> None:
    draft = med_request("d-doxy", "Doxycycline hyclate 100 mg capsule", status="draft")
    citrate = med_request("mgc", "Magnesium citrate 150 mg tablet", status="active")
    cards = call(
        client,
        order_request(
            "order-select", [draft], observations=(egfr(80), serum_mg(0.80, "mmol/L")), medication_requests=(citrate,)
        ),
    )
    assert codes(cards) == ["order-spacing"]
    assert "Doxycycline" in cards[0]["summary"]


def test_ppi_draft_not_selected_is_silent_at_select_and_flagged_at_sign(client: FlaskClient) -> None:
    diet = {
        "resourceType": "NutritionOrder",
        "id": "diet-1",
        "status": "draft",
        "intent": "order",
        "patient": {"reference": f"Patient/{PATIENT}"},
    }
    ppi = med_request("d-panto", "Pantoprazole 40 mg tablet", status="draft")
    select = order_request("order-select", [diet, ppi], selections=["NutritionOrder/diet-1"], observations=(egfr(95),))
    assert call(client, select) == []
    sign = order_request("order-sign", [diet, ppi], observations=(egfr(95),))
    cards = call(client, sign)
    assert codes(cards) == ["order-depletes-mg"]
    assert "Pantoprazole" in cards[0]["summary"]


def test_order_sign_does_not_repeat_the_card_order_select_showed(client: FlaskClient) -> None:
    draft = med_request("d-ome-2", "Omeprazole 20 mg capsule", status="draft", code="7646")
    assert codes(call(client, order_request("order-select", [draft], observations=(egfr(95),)))) == [
        "order-depletes-mg"
    ]
    assert call(client, order_request("order-sign", [draft], observations=(egfr(95),))) == []
    other = med_request("d-ome-3", "Omeprazole 20 mg capsule", status="draft", code="7646")
    assert codes(call(client, order_request("order-sign", [other], observations=(egfr(95),)))) == ["order-depletes-mg"]


def test_a_selection_not_in_the_bundle_is_400(client: FlaskClient) -> None:
    draft = med_request("d-x", "Omeprazole 20 mg capsule", status="draft")
    request = order_request("order-select", [draft], selections=["MedicationRequest/not-there"])
    response = client.post("/cds-services/mg-order-select", json=request)
    assert response.status_code == 400
    assert response.get_json()["field"] == "context.selections"


def test_stu3_and_dstu2_drafts_are_skipped_not_fatal(client: FlaskClient) -> None:
    example = load_json(shared_path("fixtures", "cds-hooks-spec", "order-select-example-3.json"))
    request = order_request("order-select", [], selections=[])
    request["context"] = {**example["context"], "patientId": PATIENT}
    response = client.post("/cds-services/mg-order-select", json=request)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json() == {"cards": []}


def test_order_examples_through_mgcds_evaluate() -> None:
    for hook, expected in (("order-select", "order-depletes-mg"), ("order-sign", "switch-to-organic")):
        example = str(PROJECT_ROOT / "examples" / f"{hook}-request.json")
        command = [sys.executable, "-m", "cds_service.cli", "evaluate", "--hook", hook, "--json", "--request", example]
        command += ["--now", "2026-11-21T12:00:00Z"]
        result = subprocess.run(command, capture_output=True, text=True, check=False, cwd=PROJECT_ROOT, timeout=120)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["assessment"]["recommendations"] == [expected]


def _recommendations(cards: list[dict[str, Any]]) -> list[str]:
    return sorted(c["extension"]["org.mgcds.recommendation"] for c in cards)


@pytest.mark.parametrize(
    ("code", "text", "route"),
    [
        # RxNorm 1658244 "10 ML magnesium sulfate 500 MG/ML Injection": known by code alone (no text, no route).
        ("1658244", None, None),
        # A local description, with the route given as SNOMED CT 47625008 |Intravenous route|.
        (
            None,
            "Magnesium sulfate 2 g in 50 mL",
            {"coding": [{"system": "http://snomed.info/sct", "code": "47625008"}]},
        ),
        (None, "Magnesium sulfate 2 g", {"text": "IV piggyback over 1 hour (IV)"}),
        (None, "Magnesium sulfate 2 g IV over 1 hour", None),
    ],
)
def test_draft_parenteral_magnesium_sulfate_is_not_switched_to_oral_citrate(
    client: FlaskClient, code: str | None, text: str | None, route: dict[str, Any] | None
) -> None:
    # Safest reading (closing note): citrate's advantage is oral absorption; IV magnesium treats severe deficiency.
    draft = med_request("d-iv", text or "", status="draft", code=code)
    if text is None:
        del draft["medicationCodeableConcept"]["text"]
    if route is not None:
        draft["dosageInstruction"] = [{"route": route}]
    doxy = med_request("doxy", "Doxycycline hyclate 100 mg capsule", status="active")
    request = order_request(
        "order-sign", [draft], observations=(serum_mg(1.8, "mg/dL"), egfr(80)), medication_requests=(doxy,)
    )
    assert _recommendations(call(client, request)) == []


def test_draft_oral_magnesium_sulfate_granules_are_a_laxative_and_not_switched(client: FlaskClient) -> None:
    # RxNorm 1053346 "magnesium sulfate 1000 MG Granules for Oral Solution" (Epsom salt): version 2 section 5 makes
    # an oral solution of the sulfate a laxative-antacid, which is not a supplement: no switch-to-organic (v1 gave
    # one). eGFR 80 and serum 1.8 mg/dL (0.74 mmol/L) do not contraindicate it: no card.
    draft = med_request("d-oral", "", status="draft", code="1053346")
    del draft["medicationCodeableConcept"]["text"]
    cards = call(client, order_request("order-sign", [draft], observations=(serum_mg(1.8, "mg/dL"), egfr(80))))
    assert _recommendations(cards) == []


def test_iv_magnesium_sulfate_at_egfr_20_in_hypomagnesemia_is_monitored_never_deleted(client: FlaskClient) -> None:
    # Issue 14's first example: v1 said "supplement contraindicated" and offered to delete the IV order. Version 2
    # section 8: a parenteral draft with eGFR < 30 -> order-parenteral-mg-monitor (info), no suggestion at all.
    # Serum 1.4 mg/dL x 0.4114 = 0.57596 -> 0.58 mmol/L (low).
    draft = med_request("d-iv", "Magnesium sulfate 2 g in 50 mL", status="draft")
    draft["dosageInstruction"] = [{"route": {"coding": [{"system": "http://snomed.info/sct", "code": "47625008"}]}}]
    cards = call(client, order_request("order-sign", [draft], observations=(serum_mg(1.4, "mg/dL"), egfr(20))))
    assert _recommendations(cards) == ["order-parenteral-mg-monitor"]
    (card,) = cards
    assert card["indicator"] == "info"
    assert "suggestions" not in card
    assert card["extension"]["org.mgcds.draft-order"] == "MedicationRequest/d-iv"


def test_milk_of_magnesia_draft_at_egfr_25_is_contraindicated_and_not_switched(client: FlaskClient) -> None:
    # A laxative is oral magnesium for the contraindication (section 8), but not a supplement: no switch.
    draft = med_request("d-mom", "Milk of Magnesia 400 mg/5 mL oral suspension", status="draft")
    cards = call(client, order_request("order-sign", [draft], observations=(egfr(25),)))
    assert _recommendations(cards) == ["order-supplement-contraindicated"]
    assert cards[0]["suggestions"][0]["actions"][0]["resourceId"] == "MedicationRequest/d-mom"


def test_ppi_draft_for_a_patient_already_on_it_gets_no_card(client: FlaskClient) -> None:
    # Section 8: order-depletes-mg is not given when the drafted ingredient is already current in the record.
    draft = med_request("d-ome-9", "Omeprazole 20 mg capsule", status="draft", code="7646")
    taken = med_request("ome-on-file", "Omeprazole 20 mg capsule", status="active", code="7646")
    request = order_request("order-select", [draft], observations=(egfr(95),), medication_requests=(taken,))
    assert call(client, request) == []


@pytest.mark.parametrize("patient_extra", [{"birthDate": "2020-06-01"}, {"deceasedBoolean": True}])
def test_order_hooks_give_no_card_for_a_child_or_a_deceased_patient(
    client: FlaskClient, patient_extra: dict[str, Any]
) -> None:
    # The citrate draft at eGFR 25 gives order-supplement-contraindicated for an adult (test above); section 0: no
    # order-hook card for a child (born 2020: 6 years old) or a deceased patient.
    draft = med_request("d-cit-0", "Magnesium citrate 150 mg tablet", status="draft")
    request = order_request("order-sign", [draft], observations=(egfr(25),))
    request["prefetch"]["patient"] = {**patient(), **patient_extra}
    assert call(client, request) == []

"""Pure helpers of `mgcds invoke`, checked against the CDS Hooks 2.0.1 spec's own example payloads."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from cds_service.cdsclient import (
    build_context,
    build_feedback,
    build_hook_request,
    fill_prefetch_template,
    pick_service,
    service_base,
    sign_cds_jwt,
    signing_algorithm,
)
from cds_service.cli.invoke import format_cards, load_draft_orders
from cds_service.errors import InvokeError, UnfillableTemplate
from tests.conftest import load_json, shared_path

SPEC = ("fixtures", "cds-hooks-spec")


def _spec(name: str) -> Any:
    return load_json(shared_path(*SPEC, name))


def _unjekyll(template: str) -> str:
    """The spec's markdown wraps `{{` in Jekyll raw tags; strip them to get the template an EHR sees."""
    return re.sub(r"\{% (end)?raw\s+%\}", "", template)


def test_spec_prefetch_example_is_filled_from_the_context() -> None:
    templates = {k: _unjekyll(v) for k, v in _spec("spec-2.0.1-prefetch-2.json")["prefetch"].items()}
    context = {"patientId": "1288992", "userId": "PractitionerRole/123"}
    filled = {key: fill_prefetch_template(t, context) for key, t in templates.items()}
    assert filled == {
        "patient": "Patient/1288992",
        "hemoglobin-a1c": "Observation?patient=1288992&code=4548-4&_count=1&sort:desc=date",
        "diabetes-type2": "Condition?patient=1288992&code=44054006&category=problem-list-item&status=active",
        # spec-2.0.1-prefetch-3.json shows the same request's prefetch with "user": "123".
        "user": "PractitionerRole?_id=123",
    }


def test_user_token_of_another_type_cannot_be_filled() -> None:
    with pytest.raises(UnfillableTemplate, match="userPractitionerId"):
        fill_prefetch_template("Practitioner/{{userPractitionerId}}", {"userId": "PractitionerRole/123"})


@pytest.mark.parametrize("template", ["Patient/{{context.nope}}", "X?y={{today()}}", "X?d={{context.draftOrders}}"])
def test_unknown_or_non_primitive_tokens_cannot_be_filled(template: str) -> None:
    with pytest.raises(UnfillableTemplate):
        fill_prefetch_template(template, {"patientId": "1", "draftOrders": {"resourceType": "Bundle"}})


def test_context_values_are_url_encoded() -> None:
    assert fill_prefetch_template("Observation?patient={{context.patientId}}", {"patientId": "a b&c"}) == (
        "Observation?patient=a%20b%26c"
    )


def test_order_select_context_matches_the_hook_library_example() -> None:
    example = _spec("order-select-example-1.json")["context"]
    drafts = [entry["resource"] for entry in example["draftOrders"]["entry"]]
    context = build_context(
        "order-select",
        example["patientId"],
        example["userId"],
        drafts,
        example["selections"],
        example["encounterId"],
    )
    assert context == example


def test_order_select_selects_every_draft_by_default_and_rejects_unknown_selections() -> None:
    drafts = [{"resourceType": "MedicationRequest", "id": "a"}, {"resourceType": "ServiceRequest", "id": "b"}]
    assert build_context("order-select", "p", "Practitioner/x", drafts)["selections"] == [
        "MedicationRequest/a",
        "ServiceRequest/b",
    ]
    with pytest.raises(InvokeError, match="not among the draft orders"):
        build_context("order-select", "p", "Practitioner/x", drafts, ["MedicationRequest/zzz"])
    with pytest.raises(InvokeError, match="needs at least one --draft-order"):
        build_context("order-sign", "p", "Practitioner/x")


def test_drafts_without_a_patient_reference_get_the_context_patient() -> None:
    drafts = [
        {"resourceType": "MedicationRequest", "id": "a"},
        {"resourceType": "NutritionOrder", "id": "b"},
        {"resourceType": "ServiceRequest", "id": "c", "subject": {"reference": "Patient/other"}},
    ]
    entries = build_context("order-sign", "p1", "Practitioner/x", drafts)["draftOrders"]["entry"]
    assert entries[0]["resource"]["subject"] == {"reference": "Patient/p1"}
    assert entries[1]["resource"]["patient"] == {"reference": "Patient/p1"}
    # A reference the file gives is kept as it is (a mismatch is the service's to reject).
    assert entries[2]["resource"]["subject"] == {"reference": "Patient/other"}


def test_patient_view_context_has_only_user_and_patient() -> None:
    assert build_context("patient-view", "123", "Practitioner/example") == {
        "userId": "Practitioner/example",
        "patientId": "123",
    }


def test_hook_request_carries_fhir_authorization_shaped_like_the_spec() -> None:
    spec_auth = _spec("spec-2.0.1-fhir-authorization.json")["fhirAuthorization"]
    request = build_hook_request(
        "patient-view",
        {"userId": "Practitioner/example", "patientId": "123"},
        "https://fhir.example/r4",
        "tok",
        "svc",
    )
    auth = request["fhirAuthorization"]
    assert set(spec_auth) <= set(auth)
    assert (auth["access_token"], auth["token_type"], auth["expires_in"], auth["subject"]) == (
        "tok",
        "Bearer",
        300,
        "svc",
    )
    assert request["fhirServer"] == "https://fhir.example/r4"
    assert "prefetch" not in request
    assert len(request["hookInstance"]) == 36
    assert "fhirAuthorization" not in build_hook_request("patient-view", {}, "https://fhir.example/r4", None)


def _spec_private_key() -> ec.EllipticCurvePrivateKey:
    jwk = _spec("spec-2.0.1-jwk-private-example.json")
    key = jwt.algorithms.ECAlgorithm.from_jwk(json.dumps(jwk))
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def test_jwt_signed_with_the_spec_key_verifies_with_the_spec_jwks() -> None:
    now = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    audience = "https://cds.example.org/cds-services/some-service"
    token = sign_cds_jwt(_spec_private_key(), "https://fhir-ehr.example.com/", "example-kid", audience, now)
    jwks = _spec("spec-2.0.1-jwks.json")
    public_key = jwt.PyJWKSet.from_dict(jwks)["example-kid"].key
    header = jwt.get_unverified_header(token)
    assert (header["alg"], header["typ"], header["kid"]) == ("ES384", "JWT", "example-kid")
    claims = jwt.decode(
        token,
        public_key,
        algorithms=["ES384"],
        audience=audience,
        options={"verify_exp": False, "verify_iat": False},
    )
    assert claims["iss"] == claims["sub"] == "https://fhir-ehr.example.com/"
    assert claims["iat"] == 1795262400  # 2026-11-21T12:00:00Z as a Unix time
    assert claims["exp"] - claims["iat"] == 300  # the spec: expire within 5 minutes
    assert len(claims["jti"]) == 36


def test_algorithm_follows_the_key_type() -> None:
    assert signing_algorithm(ec.generate_private_key(ec.SECP384R1())) == "ES384"
    assert signing_algorithm(ec.generate_private_key(ec.SECP256R1())) == "ES256"
    assert signing_algorithm(rsa.generate_private_key(public_exponent=65537, key_size=2048)) == "RS384"
    with pytest.raises(InvokeError, match="secp521r1"):
        signing_algorithm(ec.generate_private_key(ec.SECP521R1()))


def test_feedback_accepted_matches_the_spec_example() -> None:
    expected = _spec("spec-2.0.1-feedback-accepted.json")
    card = {
        "uuid": "4e0a3a1e-3283-4575-ab82-028d55fe2719",
        "suggestions": [{"label": "x", "uuid": "e56e1945-20b3-4393-8503-a1a20fd73152"}],
    }
    assert build_feedback(card, "accepted", datetime(2021, 12, 11, 10, 5, 31, tzinfo=UTC)) == expected


def test_feedback_overridden_matches_the_spec_example() -> None:
    expected = _spec("spec-2.0.1-feedback-overridden.json")
    card = {"uuid": "f6b95768-b1c8-40dc-8385-bf3504b82ffb"}
    assert build_feedback(card, "overridden", datetime(2020, 12, 11, tzinfo=UTC)) == expected


def test_feedback_override_reason_must_be_offered_by_the_card() -> None:
    reasons = _spec("spec-2.0.1-override-reasons.json")
    offered = reasons["overrideReasons"] if isinstance(reasons, dict) else reasons
    card = {"uuid": "c1", "overrideReasons": offered}
    body = build_feedback(card, "overridden", datetime(2026, 1, 1, tzinfo=UTC), offered[0]["code"])
    assert body["feedback"][0]["overrideReason"]["reason"]["code"] == offered[0]["code"]
    with pytest.raises(InvokeError, match="offers no override reason"):
        build_feedback(card, "overridden", datetime(2026, 1, 1, tzinfo=UTC), "not-offered")
    with pytest.raises(InvokeError, match="no suggestion"):
        build_feedback({"uuid": "c2"}, "accepted", datetime(2026, 1, 1, tzinfo=UTC))


def test_cards_are_printed_with_number_indicator_and_summary() -> None:
    response = _spec("spec-2.0.1-cards-response.json")
    text = format_cards(response)
    for number, card in enumerate(response["cards"], start=1):
        assert f"{number}. [{card['indicator'].upper()}] {card['summary']}" in text
        for suggestion in card.get("suggestions", []):
            assert f"- {suggestion['label']}" in text
    assert format_cards({"cards": []}) == "No cards."


def test_pick_service_by_hook_or_id() -> None:
    discovery = _spec("spec-2.0.1-discovery-response.json")
    patient_view = [s for s in discovery["services"] if s["hook"] == "patient-view"]
    assert pick_service(discovery, "patient-view", patient_view[0]["id"]) == patient_view[0]
    with pytest.raises(InvokeError, match="no service with id"):
        pick_service(discovery, "patient-view", "no-such-service")
    with pytest.raises(InvokeError, match="0 services for hook order-sign"):
        pick_service({"services": []}, "order-sign", None)


def test_service_base_accepts_the_discovery_url() -> None:
    assert service_base("http://h:1/cds-services/") == "http://h:1"
    assert service_base("http://h:1/mgcds") == "http://h:1/mgcds"


def test_draft_orders_from_a_resource_or_a_bundle_get_ids(tmp_path: Path) -> None:
    single = tmp_path / "mr.json"
    single.write_text(json.dumps({"resourceType": "MedicationRequest", "status": "draft"}), encoding="utf-8")
    bundle = tmp_path / "b.json"
    bundle.write_text(
        json.dumps({"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "ServiceRequest", "id": "s"}}]}),
        encoding="utf-8",
    )
    orders = load_draft_orders([single, bundle])
    assert [o["resourceType"] for o in orders] == ["MedicationRequest", "ServiceRequest"]
    assert orders[0]["id"]
    assert orders[1]["id"] == "s"
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(InvokeError, match="cannot read draft order file"):
        load_draft_orders([bad])
    with pytest.raises(InvokeError, match="cannot read draft order file"):
        load_draft_orders([tmp_path / "missing.json"])

"""Issue 6 item 4: hostile payloads. Each gets a 4xx with a clear JSON message, or a 200 with the thing safely
ignored; never a 500, never a hang (pytest-timeout on every test).

Every case runs through :func:`check_answer`, the contract of issue 6 item 4: status is 200 or one of the documented
4xx/412 answers, the body is JSON of the documented shape, and a 200 carries valid cards. Cases whose answer is
known in advance (from the CDS Hooks 2.0 request schema or clinical-rules.md) also assert the status and field.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient

from cds_service.cdshooks import CardsResponse
from tests.functional.conftest import load_example

pytestmark = pytest.mark.timeout(20)

PV = "/cds-services/mg-patient-view"
OSEL = "/cds-services/mg-order-select"
OSIGN = "/cds-services/mg-order-sign"
EXAMPLE_FOR = {
    PV: "patient-view-request.json",
    OSEL: "order-select-request.json",
    OSIGN: "order-sign-request.json",
}
DOCUMENTED_STATUSES = {200, 400, 404, 412, 413, 415}
# A FHIR server on loopback port 9 (discard): dev mode allows it and nothing listens, so nothing is ever fetched.
DEAD_FHIR_SERVER = "http://127.0.0.1:9/fhir"
LOW_MG_DISPLAY = "Magnesium [Mass/volume] in Serum or Plasma"

Mutation = Callable[[dict[str, Any]], Any]


def post_raw(client: FlaskClient, path: str, data: bytes | str, content_type: str = "application/json") -> Any:
    return client.post(path, data=data, content_type=content_type)


def post(client: FlaskClient, path: str, body: Any) -> Any:
    return post_raw(client, path, json.dumps(body))


def check_answer(response: Any) -> dict[str, Any]:
    """The issue 6 item 4 contract for any answer; returns the JSON body."""
    assert response.status_code in DOCUMENTED_STATUSES, (response.status_code, response.get_data(as_text=True)[:500])
    assert response.is_json
    body: dict[str, Any] = response.get_json()
    if response.status_code == 200:
        CardsResponse.model_validate(body)
    else:
        assert set(body) <= {"error", "message", "status", "field"}
        assert body["status"] == response.status_code
        assert isinstance(body["message"], str)
        assert 0 < len(body["message"]) <= 2000  # clear, and never an echo of a huge input
    return body


def example(path: str) -> dict[str, Any]:
    return load_example(EXAMPLE_FOR[path])


def set_at(body: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    """Set ``value`` at a dotted path (list indexes as numbers); returns the body."""
    parts = dotted.split(".")
    node: Any = body
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node[part]
    last = parts[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return body


def nested_text(levels: int) -> str:
    """JSON text nested ``levels`` deep (objects and arrays alternating), built as text: no recursion here."""
    half = levels // 2
    return '{"a":[' * half + '"leaf"' + "]}" * half


# --- 1. malformed bodies -------------------------------------------------------------------------------------------


RAW_BODIES: dict[str, tuple[bytes, str, int]] = {
    "empty": (b"", "application/json", 400),
    "not-json": (b"{hook: patient-view", "application/json", 400),
    "json-array": (b"[]", "application/json", 400),
    "json-string": (b'"patient-view"', "application/json", 400),
    "json-null": (b"null", "application/json", 400),
    "nan": (b'{"hook": NaN}', "application/json", 400),
    "infinity": (b'{"hook": Infinity}', "application/json", 400),
    "latin-1": ('{"hook": "patient-view", "x": "caf\xe9"}'.encode("latin-1"), "application/json", 400),
    "utf-16": ('{"hook": "patient-view"}'.encode("utf-16"), "application/json", 400),
    "nested-100000": (b"[" * 100_000 + b"]" * 100_000, "application/json", 400),
    "nested-objects-50000": (b'{"a":' * 50_000 + b"1" + b"}" * 50_000, "application/json", 400),
    "xml": (b"<hook>patient-view</hook>", "application/xml", 415),
    "form": (b"hook=patient-view", "application/x-www-form-urlencoded", 415),
    "no-content-type": (b"{}", "", 415),
}


@pytest.mark.parametrize("case", sorted(RAW_BODIES))
def test_malformed_bodies_are_answered_with_a_clear_4xx(client: FlaskClient, case: str) -> None:
    data, content_type, status = RAW_BODIES[case]
    response = post_raw(client, PV, data, content_type)
    body = check_answer(response)
    assert response.status_code == status, body


def test_a_body_over_the_limit_is_413(client: FlaskClient) -> None:
    request = example(PV)
    request["padding"] = "x" * (5 * 1024 * 1024 + 1)  # Settings.max_body_bytes default: 5 MiB
    response = post(client, PV, request)
    assert check_answer(response)["error"] == "payload_too_large"
    assert response.status_code == 413


# --- 2. wrong types in every field of the request ------------------------------------------------------------------

WRONG_VALUES: list[Any] = [1, 2.5, True, None, [], ["x"], {}, {"a": 1}, ""]


def _top_level_cases() -> list[tuple[str, str, Any]]:
    cases = []
    for field in ("hook", "hookInstance", "context"):
        for value in WRONG_VALUES:
            cases.append((field, field, value))
    for value in WRONG_VALUES:
        if value is not None and value != "":  # an absent/empty fhirServer is legitimate (prefetch suffices)
            cases.append(("fhirServer", "fhirServer", value))
        if value is not None:
            cases.append(("fhirAuthorization", "fhirAuthorization", value))
        if not isinstance(value, dict) and value is not None:  # any object is a prefetch map (unknown keys ignored)
            cases.append(("prefetch", "prefetch", value))
    return cases


@pytest.mark.parametrize(("dotted", "expected_field", "value"), _top_level_cases())
def test_a_wrong_type_in_a_top_level_field_is_400_naming_it(
    client: FlaskClient, dotted: str, expected_field: str, value: Any
) -> None:
    request = set_at(example(PV), dotted, value)
    if dotted == "fhirAuthorization":
        request["fhirServer"] = DEAD_FHIR_SERVER
    response = post(client, PV, request)
    body = check_answer(response)
    assert response.status_code == 400, body
    assert body["field"].split(".")[0] == expected_field


FHIR_AUTHORIZATION = {
    "access_token": "opaque-token-value-123",
    "token_type": "Bearer",
    "expires_in": 300,
    "scope": "patient/*.read",
    "subject": "mgcds",
}


@pytest.mark.parametrize("subfield", sorted(FHIR_AUTHORIZATION))
@pytest.mark.parametrize("value", [1, [], {}, None, ""], ids=["int", "list", "object", "null", "empty"])
def test_a_wrong_type_inside_fhir_authorization_is_400(client: FlaskClient, subfield: str, value: Any) -> None:
    if subfield == "expires_in" and value == 1:
        value = "soon"  # 1 is a valid expires_in; a string is the wrong type
    request = example(PV)
    request["fhirServer"] = DEAD_FHIR_SERVER
    request["fhirAuthorization"] = {**FHIR_AUTHORIZATION, subfield: value}
    response = post(client, PV, request)
    body = check_answer(response)
    assert response.status_code == 400, body
    assert body["field"] == f"fhirAuthorization.{subfield}"
    assert "opaque-token-value-123" not in response.get_data(as_text=True)


@pytest.mark.parametrize("name", ["userId", "patientId", "encounterId"])
@pytest.mark.parametrize("value", [1, [], {}, True, "x" * 201], ids=["int", "list", "object", "bool", "201-chars"])
def test_a_wrong_type_in_a_context_id_is_400(client: FlaskClient, name: str, value: Any) -> None:
    request = example(PV)
    request["context"][name] = value
    response = post(client, PV, request)
    body = check_answer(response)
    assert response.status_code == 400, body
    assert body["field"] == f"context.{name}"
    assert name in body["message"]


PREFETCH_VALUES: list[Any] = [1, "x", [], ["x"], True, {}, {"resourceType": 1}, {"resourceType": ["Bundle"]}]


@pytest.mark.parametrize("key", ["patient", "observations", "medicationRequests", "conditions"])
@pytest.mark.parametrize("value", PREFETCH_VALUES, ids=lambda v: json.dumps(v))
def test_a_wrong_type_in_a_prefetch_value_is_never_a_500(client: FlaskClient, key: str, value: Any) -> None:
    request = example(PV)
    request["prefetch"][key] = value
    response = post(client, PV, request)
    body = check_answer(response)
    if key == "patient":
        # Without a usable Patient (and no fhirServer to read it) there is no patient to advise on: 412 or 400.
        assert response.status_code in (400, 412), body
    else:
        # Supporting data that cannot be read is named as unknown; the hook still answers (fail open).
        assert response.status_code == 200, body


BUNDLE_SHAPES: dict[str, Any] = {
    "entry-string": {"resourceType": "Bundle", "entry": "x"},
    "entry-object": {"resourceType": "Bundle", "entry": {"resource": {}}},
    "entry-items-not-objects": {"resourceType": "Bundle", "entry": [1, "x", None, [], True]},
    "resource-not-object": {"resourceType": "Bundle", "entry": [{"resource": "x"}, {"resource": []}, {"resource": 1}]},
    "resource-without-type": {"resourceType": "Bundle", "entry": [{"resource": {"id": "x"}}]},
    "resource-type-number": {"resourceType": "Bundle", "entry": [{"resource": {"resourceType": 7}}]},
    "link-garbage": {"resourceType": "Bundle", "link": "x", "entry": []},
    "next-link-without-server": {
        "resourceType": "Bundle",
        "link": [{"relation": "next", "url": "http://169.254.169.254/latest/meta-data/"}],
        "entry": [],
    },
    "operation-outcome": {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "processing"}]},
}


@pytest.mark.parametrize("shape", sorted(BUNDLE_SHAPES))
def test_broken_prefetch_bundles_are_ignored_safely(client: FlaskClient, shape: str) -> None:
    request = example(PV)
    request["prefetch"]["observations"] = BUNDLE_SHAPES[shape]
    response = post(client, PV, request)
    check_answer(response)
    assert response.status_code == 200


# --- 3. wrong types inside resources ---------------------------------------------------------------------------------

# (prefetch key, entry index or None for a single resource, dotted path inside the resource, value)
RESOURCE_MUTATIONS: dict[str, tuple[str, int | None, str, Any]] = {
    "obs-code-string": ("observations", 0, "code", "98979-8"),
    "obs-code-coding-object": ("observations", 0, "code.coding", {"code": "98979-8"}),
    "obs-coding-code-number": ("observations", 0, "code.coding.0.code", 98979),
    "obs-coding-system-list": ("observations", 0, "code.coding.0.system", ["http://loinc.org"]),
    "obs-value-abc": ("observations", 0, "valueQuantity.value", "abc"),
    "obs-value-list": ("observations", 0, "valueQuantity.value", [55]),
    "obs-value-huge-int": ("observations", 0, "valueQuantity.value", 10**400),
    "obs-value-float-overflow": ("observations", 0, "valueQuantity.value", "RAW:1e400"),
    "obs-value-negative": ("observations", 0, "valueQuantity.value", -55),
    "obs-valueQuantity-string": ("observations", 0, "valueQuantity", "55 mL/min"),
    "obs-unit-number": ("observations", 0, "valueQuantity.code", 5),
    "obs-effective-yesterday": ("observations", 0, "effectiveDateTime", "yesterday"),
    "obs-effective-month-13": ("observations", 0, "effectiveDateTime", "2026-13-45"),
    "obs-effective-year-0": ("observations", 0, "effectiveDateTime", "0000-01-01"),
    "obs-effective-far-future": ("observations", 0, "effectiveDateTime", "9999-12-31T23:59:59Z"),
    "obs-effective-number": ("observations", 0, "effectiveDateTime", 1_700_000_000),
    "obs-effective-period-string": ("observations", 0, "effectivePeriod", "2026"),
    "obs-subject-list": ("observations", 0, "subject", [{"reference": "Patient/example-mg-1"}]),
    "obs-subject-string": ("observations", 0, "subject", "Patient/example-mg-1"),
    "obs-subject-reference-number": ("observations", 0, "subject", {"reference": 1}),
    "obs-status-number": ("observations", 0, "status", 1),
    "obs-status-unknown-word": ("observations", 0, "status", "FINAL; DROP TABLE"),
    "obs-reference-range-string": ("observations", 0, "referenceRange", "0.44-0.59"),
    "obs-reference-range-garbage": ("observations", 0, "referenceRange", [{"low": "x", "high": [1]}]),
    "obs-component-string": ("observations", 0, "component", "x"),
    "obs-id-huge": ("observations", 0, "id", "i" * 100_000),
    "obs-id-number": ("observations", 0, "id", 42),
    "patient-birthdate-yesterday": ("patient", None, "birthDate", "yesterday"),
    "patient-birthdate-feb-30": ("patient", None, "birthDate", "1956-02-30"),
    "patient-birthdate-future": ("patient", None, "birthDate", "3000-01-01"),
    "patient-birthdate-number": ("patient", None, "birthDate", 1956),
    "patient-gender-number": ("patient", None, "gender", 1),
    "patient-gender-list": ("patient", None, "gender", ["female"]),
    "patient-name-string": ("patient", None, "name", "Ada Example"),
    "medreq-concept-string": ("medicationRequests", 0, "medicationCodeableConcept", "Lasix"),
    "medreq-coding-not-list": ("medicationRequests", 0, "medicationCodeableConcept.coding", "x"),
    "medreq-status-number": ("medicationRequests", 0, "status", 3),
    "medreq-subject-list": ("medicationRequests", 0, "subject", []),
    "medreq-authored-yesterday": ("medicationRequests", 0, "authoredOn", "yesterday"),
    "medreq-dosage-string": ("medicationRequests", 0, "dosageInstruction", "40 mg"),
    "medreq-reference-garbage": ("medicationRequests", 0, "medicationReference", {"reference": ["x"]}),
}


def _apply_resource_mutation(request: dict[str, Any], key: str, index: int | None, dotted: str, value: Any) -> str:
    """Apply the mutation; returns the JSON text (a RAW: value is spliced in unquoted, e.g. 1e400)."""
    resource = request["prefetch"][key] if index is None else request["prefetch"][key]["entry"][index]["resource"]
    marker = "__RAW_VALUE__"
    raw = isinstance(value, str) and value.startswith("RAW:")
    set_at(resource, dotted, marker if raw else value)
    text = json.dumps(request)
    return text.replace(f'"{marker}"', value.removeprefix("RAW:")) if raw else text


@pytest.mark.parametrize("case", sorted(RESOURCE_MUTATIONS))
def test_wrong_types_inside_resources_are_ignored_safely(client: FlaskClient, case: str) -> None:
    key, index, dotted, value = RESOURCE_MUTATIONS[case]
    request = example(PV)
    text = _apply_resource_mutation(request, key, index, dotted, value)
    response = post_raw(client, PV, text)
    body = check_answer(response)
    assert response.status_code == 200, body


def test_an_unusable_magnesium_value_never_becomes_a_card_figure(client: FlaskClient) -> None:
    """A magnesium result whose value is not a number is unusable (clinical-rules.md section 2), not a 500 or NaN."""
    for raw_value in ('"abc"', "1e400", "-1e400", "10" * 200):
        request = example(PV)
        request["prefetch"]["observations"]["entry"].append({"resource": _mg_observation("example-mg-1", 1.2)})
        text = json.dumps(request).replace('"value": 1.2', f'"value": {raw_value}')
        response = post_raw(client, PV, text)
        body = check_answer(response)
        assert response.status_code == 200, body
        text_out = json.dumps(body)
        assert not re.search(r"(?i)\b(inf|infinity|nan)\b", text_out), "a figure built from a non-finite value"
        assert "urgent-evaluation" not in text_out
    for element in ({"valueInteger": 10**400}, {"valueString": "1e999"}, {"valueString": "9" * 500}):
        request = example(PV)
        observation = _mg_observation("example-mg-1", 1.2)
        del observation["valueQuantity"]
        request["prefetch"]["observations"]["entry"].append({"resource": {**observation, **element}})
        body = check_answer(post(client, PV, request))
        assert not re.search(r"(?i)\b(inf|infinity|nan)\b", json.dumps(body))


# --- 4. unicode oddities ----------------------------------------------------------------------------------------------

UNICODE_VALUES = {
    "nul": "a\u0000b",
    "rtl-override": "\u202eevil\u202c",
    "zero-width": "\u200b\u200d\ufeff",
    "emoji": "\U0001f9ea\U0001f468\u200d\u2695\ufe0f",
    "lone-high-surrogate": "\ud800",
    "lone-low-surrogate": "x\udfffy",
    "combining-flood": "a" + "\u0301" * 150,
    "newlines": "line1\r\nline2\u2028line3",
}


@pytest.mark.parametrize("where", ["hookInstance", "context.userId", "context.encounterId", "display", "patient-name"])
@pytest.mark.parametrize("case", sorted(UNICODE_VALUES))
def test_unicode_oddities_never_cause_a_500(client: FlaskClient, where: str, case: str) -> None:
    value = UNICODE_VALUES[case]
    request = example(PV)
    if where == "display":
        set_at(request, "prefetch.medicationRequests.entry.0.resource.medicationCodeableConcept.text", value)
    elif where == "patient-name":
        set_at(request, "prefetch.patient.name", [{"family": value, "given": [value]}])
    else:
        set_at(request, where, value)
    # json.dumps escapes lone surrogates as \ud800: exactly what a hostile client would send.
    response = post(client, PV, request)
    body = check_answer(response)
    assert response.status_code in (200, 400), body


def test_unicode_in_the_patient_id_is_handled(client: FlaskClient) -> None:
    for value in UNICODE_VALUES.values():
        request = example(PV)
        request["context"]["patientId"] = value
        request["prefetch"]["patient"]["id"] = value
        response = post(client, PV, request)
        check_answer(response)


def test_a_very_long_patient_id_is_400_and_the_limit_itself_is_accepted(client: FlaskClient) -> None:
    request = example(PV)
    request["context"]["patientId"] = "p" * 201
    assert post(client, PV, request).status_code == 400
    request = example(PV)
    request["context"]["patientId"] = "p" * 200
    request["prefetch"]["patient"]["id"] = "p" * 200
    check_answer(post(client, PV, request))


# --- 5. huge arrays, huge strings, thousands of entries -------------------------------------------------------------


def _mg_observation(subject: str, mg_dl: float, oid: str = "mg-b") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": oid,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "19123-9", "display": LOW_MG_DISPLAY}]},
        "subject": {"reference": f"Patient/{subject}"},
        "effectiveDateTime": "2026-11-15T08:00:00Z",
        "valueQuantity": {"value": mg_dl, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"},
    }


def test_a_bundle_with_thousands_of_entries_is_answered(client: FlaskClient) -> None:
    request = example(PV)
    entries = request["prefetch"]["observations"]["entry"]
    template = entries[0]["resource"]
    for index in range(5000):
        copy_ = copy.deepcopy(template)
        copy_["id"] = f"egfr-{index}"
        copy_["effectiveDateTime"] = "2025-01-01T00:00:00Z"  # stale: the newest real one still decides
        entries.append({"resource": copy_})
    response = post(client, PV, request)
    body = check_answer(response)
    assert response.status_code == 200
    codes = [c["extension"]["org.mgcds.recommendation"] for c in body["cards"]]
    assert codes == ["test-serum-mg"]  # same answer as the plain example (examples/README.md)


@pytest.mark.parametrize("key", ["medicationRequests", "conditions", "serviceRequests", "medicationStatements"])
def test_huge_arrays_of_junk_in_prefetch_are_answered(client: FlaskClient, key: str) -> None:
    request = example(PV)
    request["prefetch"][key] = {"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Basic"}}] * 20000}
    response = post(client, PV, request)
    check_answer(response)
    assert response.status_code == 200


def test_a_huge_context_array_is_answered(client: FlaskClient) -> None:
    request = example(PV)
    request["context"]["extraList"] = list(range(200_000))
    response = post(client, PV, request)
    check_answer(response)
    assert response.status_code == 200


@pytest.mark.parametrize("where", ["display", "unknown-field", "note"])
def test_huge_strings_under_the_limit_are_answered(client: FlaskClient, where: str) -> None:
    big = "M" * (3 * 1024 * 1024)
    request = example(PV)
    resource = request["prefetch"]["medicationRequests"]["entry"][0]["resource"]
    if where == "display":
        resource["medicationCodeableConcept"]["text"] = big
    elif where == "unknown-field":
        request["vendorExtension"] = big
    else:
        resource["note"] = [{"text": big}]
    response = post(client, PV, request)
    body = check_answer(response)
    assert response.status_code == 200
    assert len(response.get_data()) < 200_000, "a huge input string must not be echoed into card text in full"
    assert body["cards"]


@pytest.mark.parametrize("levels", [50, 500, 900, 980, 1500])
@pytest.mark.parametrize("where", ["context", "resource-extension", "unknown-top-level"])
def test_deep_but_parseable_nesting_is_answered(client: FlaskClient, levels: int, where: str) -> None:
    """Near the parser's limit the structure reaches the service: model validation, the engine, the audit log and
    the response. None of them may hit the recursion limit with a 500."""
    request = example(PV)
    if where == "context":
        request["context"]["vendor"] = "__NESTED__"
    elif where == "resource-extension":
        request["prefetch"]["observations"]["entry"][0]["resource"]["extension"] = "__NESTED__"
    else:
        request["vendor"] = "__NESTED__"
    response = post_raw(client, PV, json.dumps(request).replace('"__NESTED__"', nested_text(levels)))
    body = check_answer(response)
    assert response.status_code in (200, 400), body


# --- 6. references and other patients ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reference",
    [
        "Patient/",
        "Patient",
        "/Patient/example-mg-1",
        "Patient/example-mg-1/_history/1",
        "https://other.example.org/fhir/Patient/example-mg-1",
        "#contained",
        "Patient/../../etc/passwd",
        "urn:uuid:0c5b9d4e-7d55-4b7e-9b0e-3f1f1c2b6a10",
        "Group/example-mg-1",
        "Patient/example-mg-1 ",
    ],
)
def test_invalid_or_odd_references_are_handled(client: FlaskClient, reference: str) -> None:
    request = example(PV)
    request["prefetch"]["observations"]["entry"].append(
        {"resource": {**_mg_observation("x", 1.0), "subject": {"reference": reference}}}
    )
    response = post(client, PV, request)
    body = check_answer(response)
    assert response.status_code == 200
    # 1.0 mg/dL is 0.41 mmol/L, severe-low (clinical-rules.md section 2): a reference that does not name this
    # patient must not let it produce the critical card. References that do name it (a version, an absolute URL
    # of the EHR's FHIR server ending in Patient/<id>, a leading slash) count as this patient by design.
    same_patient = (
        "Patient/example-mg-1/_history/1",
        "/Patient/example-mg-1",
        "https://other.example.org/fhir/Patient/example-mg-1",
    )
    if reference not in same_patient:
        codes = [c["extension"]["org.mgcds.recommendation"] for c in body["cards"]]
        assert "urgent-evaluation" not in codes, reference


def test_a_low_magnesium_of_another_patient_produces_no_card_for_this_one(client: FlaskClient) -> None:
    """Control first: the same result with this patient's subject is severe-low (1.0 mg/dL x 0.4114 = 0.41 mmol/L,
    below 0.50: clinical-rules.md section 2) and gives urgent-evaluation. With patient B's subject it is ignored."""
    own = example(PV)
    own["prefetch"]["observations"]["entry"].append({"resource": _mg_observation("example-mg-1", 1.0)})
    own_codes = [c["extension"]["org.mgcds.recommendation"] for c in check_answer(post(client, PV, own))["cards"]]
    assert own_codes[0] == "urgent-evaluation"

    foreign = example(PV)
    foreign["prefetch"]["observations"]["entry"].append({"resource": _mg_observation("patient-b", 1.0)})
    body = check_answer(post(client, PV, foreign))
    codes = [c["extension"]["org.mgcds.recommendation"] for c in body["cards"]]
    assert codes == ["test-serum-mg"]  # as if the foreign result were not there (examples/README.md)
    # The card shows only this patient's evidence (section 7.4); the note that a result was set aside stays in the
    # assessment (the audit record, mgcds evaluate).
    assert "0.41" not in body["cards"][0]["detail"]
    assert "Serum Mg: no result" in body["cards"][0]["detail"]


def test_another_patients_medications_do_not_count(client: FlaskClient) -> None:
    """Move this patient's furosemide and omeprazole to patient B: the MDS loses both drug points."""
    request = example(PV)
    for entry in request["prefetch"]["medicationRequests"]["entry"]:
        entry["resource"]["subject"] = {"reference": "Patient/patient-b"}
    body = check_answer(post(client, PV, request))
    # clinical-rules.md section 4: a retrieved list without such a drug scores 0 for each drug component; eGFR 55
    # still scores 2, so the MDS is 2 and test-serum-mg remains (mds.min >= 2).
    assert [c["extension"]["org.mgcds.recommendation"] for c in body["cards"]] == ["test-serum-mg"]
    detail = body["cards"][0]["detail"]
    assert "diuretic 0, PPI 0" in detail
    assert "Lasix" not in detail
    assert "Omeprazole" not in detail


def test_a_prefetched_patient_of_another_id_is_400(client: FlaskClient) -> None:
    request = example(PV)
    request["prefetch"]["patient"]["id"] = "patient-b"
    body = check_answer(post(client, PV, request))
    assert body["status"] == 400
    assert body["field"] == "prefetch.patient"


# --- 7. markup injection into card text ------------------------------------------------------------------------------

INJECTIONS = {
    "script": "<script>alert(1)</script>",
    "img-onerror": '<img src=x onerror="alert(1)">',
    "md-link": "[click me](javascript:alert(1))",
    "md-image": "![x](https://evil.example/t.png)",
    "bold": "**URGENT** stop all meds",
    "table": "| a | b |\n|---|---|\n| 1 | 2 |",
    "backticks": "```\ncode\n```",
    "heading": "# Heading",
    "autolink": "<https://evil.example>",
    "html-entity": "&lt;script&gt;",
}


def _assert_inert(text: str, raw: str) -> None:
    """``raw`` does not appear unescaped: no tag, no link syntax, no emphasis, no table, no code fence."""
    assert "<script" not in text
    assert "<img" not in text
    # A link needs an unescaped "](": "\\](" is a literal bracket (tests/unit/cards renders cards as GFM to prove it).
    assert re.search(r"(?<!\\)\]\(javascript:", text) is None
    assert re.search(r"(?<!\\)\]\(https://evil", text) is None
    assert "<https://evil" not in text
    assert "**URGENT**" not in text
    assert "| a | b |" not in text
    assert "```" not in text
    if raw.startswith("&") and "lt;script" in text:
        # In markdown the entity itself is escaped, so it shows literally; a plain-text summary shows it as is.
        assert "&amp;lt;script&amp;gt;" in text or "\n" not in text
    if raw.startswith("#"):
        assert "\n# Heading" not in text


@pytest.mark.parametrize("case", sorted(INJECTIONS))
def test_markup_in_drug_names_reaches_card_text_escaped(client: FlaskClient, case: str) -> None:
    raw = INJECTIONS[case]
    request = example(PV)
    concept = request["prefetch"]["medicationRequests"]["entry"][0]["resource"]["medicationCodeableConcept"]
    concept["text"] = raw
    concept["coding"][0]["display"] = raw
    body = check_answer(post(client, PV, request))
    assert body["cards"], "the furosemide line must still be evidence (RxNorm 315971 decides, not the text)"
    for card in body["cards"]:
        _assert_inert(card["summary"], raw)
        _assert_inert(card.get("detail", ""), raw)
        for suggestion in card.get("suggestions", []):
            _assert_inert(suggestion["label"], raw)


@pytest.mark.parametrize("case", sorted(INJECTIONS))
def test_markup_in_a_draft_order_reaches_order_card_text_escaped(client: FlaskClient, case: str) -> None:
    raw = INJECTIONS[case]
    request = example(OSIGN)
    draft = request["context"]["draftOrders"]["entry"][0]["resource"]
    draft["medicationCodeableConcept"]["text"] = f"Magnesium oxide 400 mg tablet {raw}"
    body = check_answer(post(client, OSIGN, request))
    assert body["cards"]
    for card in body["cards"]:
        _assert_inert(card["summary"], raw)
        _assert_inert(card.get("detail", ""), raw)


def test_markup_in_a_draft_order_id_is_escaped(client: FlaskClient) -> None:
    request = example(OSIGN)
    draft = request["context"]["draftOrders"]["entry"][0]["resource"]
    draft["id"] = "<script>x</script>"
    body = check_answer(post(client, OSIGN, request))
    for card in body["cards"]:
        _assert_inert(card["summary"], "<script>")
        _assert_inert(card.get("detail", ""), "<script>")


# --- 8. order hooks ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [OSEL, OSIGN], ids=["order-select", "order-sign"])
@pytest.mark.parametrize(
    "draft_orders",
    ["x", 1, [], {}, {"resourceType": "Patient"}, {"resourceType": ["Bundle"]}, None],
    ids=["string", "int", "list", "empty-object", "patient", "type-list", "null"],
)
def test_draft_orders_that_are_not_a_bundle_are_400(client: FlaskClient, path: str, draft_orders: Any) -> None:
    request = example(path)
    request["context"]["draftOrders"] = draft_orders
    body = check_answer(post(client, path, request))
    assert body["status"] == 400
    assert "draftOrders" in body["message"]


@pytest.mark.parametrize(
    "entries",
    ["x", {}, [1, "x", None, [], True], [{"resource": "x"}, {"resource": []}, {"fullUrl": 1}]],
    ids=["string", "object", "scalars", "resources-not-objects"],
)
def test_draft_order_entries_that_are_not_objects_are_safe(client: FlaskClient, entries: Any) -> None:
    request = example(OSIGN)
    request["context"]["draftOrders"]["entry"] = entries
    response = post(client, OSIGN, request)
    check_answer(response)
    assert response.status_code == 200  # nothing to evaluate: no card, no error


def test_selections_not_in_the_bundle_are_400_naming_context_selections(client: FlaskClient) -> None:
    request = example(OSEL)
    request["context"]["selections"] = ["MedicationRequest/not-there"]
    body = check_answer(post(client, OSEL, request))
    assert body["status"] == 400
    assert body["field"] == "context.selections"
    assert "MedicationRequest/not-there" in body["message"]


def test_a_hundred_thousand_selections_are_400_with_a_short_message(client: FlaskClient) -> None:
    request = example(OSEL)
    request["context"]["selections"] = [f"MedicationRequest/x{i}" for i in range(100_000)]
    response = post(client, OSEL, request)
    body = check_answer(response)
    assert body["field"] == "context.selections"


@pytest.mark.parametrize("selections", [1, "MedicationRequest/draft-omeprazole", [1], [None], [""], [{}]], ids=str)
def test_selections_of_the_wrong_type_are_400(client: FlaskClient, selections: Any) -> None:
    request = example(OSEL)
    request["context"]["selections"] = selections
    body = check_answer(post(client, OSEL, request))
    assert body["status"] == 400
    assert "selections" in body["message"]


def _many_drafts(count: int) -> dict[str, Any]:
    request = example(OSIGN)
    template = request["context"]["draftOrders"]["entry"][0]["resource"]
    entries = []
    for index in range(count):
        draft = copy.deepcopy(template)
        draft["id"] = f"draft-{index}"
        entries.append({"resource": draft})
    request["context"]["draftOrders"]["entry"] = entries
    return request


def test_eight_thousand_draft_orders_are_refused_quickly(client: FlaskClient) -> None:
    """8000 magnesium oxide drafts (about 3 MB, under the body limit) once took over 20 s (a card per draft, each
    checked against every other): now a 400 naming the field, before any evaluation."""
    response = post(client, OSIGN, _many_drafts(8_000))
    body = check_answer(response)
    assert response.status_code == 400
    assert body["field"] == "context.draftOrders"


def test_a_large_but_plausible_order_set_is_evaluated(client: FlaskClient) -> None:
    response = post(client, OSIGN, _many_drafts(200))
    body = check_answer(response)
    assert response.status_code == 200
    # examples/README.md: each magnesium oxide draft of this patient gets switch-to-organic.
    assert len(body["cards"]) == 200


@pytest.mark.parametrize(
    "stu3",
    [
        {"resourceType": "ProcedureRequest", "id": "pr-1", "status": "draft", "subject": {"reference": "Patient/x"}},
        {"resourceType": "MedicationOrder", "id": "mo-1", "status": "draft", "patient": {"reference": "Patient/x"}},
        {"resourceType": "MedicationRequest", "id": "stu3-1", "status": "draft", "context": {"reference": "E/1"}},
    ],
    ids=["ProcedureRequest", "MedicationOrder", "MedicationRequest-with-context"],
)
def test_stu3_draft_orders_are_skipped_with_a_note(client: FlaskClient, stu3: dict[str, Any]) -> None:
    request = example(OSIGN)
    stu3 = copy.deepcopy(stu3)
    for key in ("subject", "patient"):
        if key in stu3:
            stu3[key] = {"reference": "Patient/example-mg-3"}
    stu3.setdefault("medicationCodeableConcept", {"text": "Magnesium oxide 400 mg tablet"})
    request["context"]["draftOrders"]["entry"].append({"resource": stu3})
    body = check_answer(post(client, OSIGN, request))
    assert [c["extension"]["org.mgcds.recommendation"] for c in body["cards"]] == ["switch-to-organic"]
    assert "not FHIR R4" in body["cards"][0]["detail"]

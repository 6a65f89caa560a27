"""Extraction for clinical-rules.md version 2: Patient.deceased[x] and partial birth dates (section 0), the LOINC codes
of an eGFR (section 3's preference), and each magnesium medication's product kind and salt class (section 5).

Expected kinds are section 5's clauses applied by hand to each medication (the clause is named in each row).
"""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from cds_service.engine.vocabulary import Hook
from cds_service.fhir.extract import extract_facts
from cds_service.fhir.extract.datatypes import latest_fhir_date
from cds_service.fhir.extract.patient import patient_facts
from cds_service.fhir.prefetch import KeyData, ResolvedData
from cds_service.vocabulary import DataOrigin
from terminology import default_terminology

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SNOMED = "http://snomed.info/sct"


def _data(**resources: list[dict[str, Any]]) -> ResolvedData:
    keys = {"patient": [{"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1960-01-01"}]}
    keys.update(resources)
    return ResolvedData(keys={k: KeyData(k, DataOrigin.PREFETCH, v) for k, v in keys.items()})


def _request(
    rid: str, text: str, *, dosage: list[dict[str, Any]] | None = None, code: str | None = None
) -> dict[str, Any]:
    concept: dict[str, Any] = {"text": text} if text else {}
    if code is not None:
        concept["coding"] = [{"system": RXNORM, "code": code}]
    resource: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "id": rid,
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": concept,
        "subject": {"reference": "Patient/p1"},
    }
    if dosage is not None:
        resource["dosageInstruction"] = dosage
    return resource


def _facts(*requests: dict[str, Any]) -> Any:
    return extract_facts(
        _data(medicationRequests=list(requests)),
        patient_id="p1",
        encounter_id=None,
        hook=Hook.PATIENT_VIEW,
        terminology=default_terminology(),
    )


@pytest.mark.parametrize(
    ("patient", "deceased"),
    [
        ({"deceasedBoolean": True}, True),
        ({"deceasedBoolean": False}, False),
        ({"deceasedDateTime": "2026-01-02T10:00:00Z"}, True),
        ({"deceasedDateTime": "2026"}, True),  # "present" (section 0), however partial
        ({}, False),
    ],
)
def test_patient_deceased(patient: dict[str, Any], deceased: bool) -> None:
    assert patient_facts({"resourceType": "Patient", **patient}).deceased is deceased


@pytest.mark.parametrize(
    ("birth", "earliest", "latest"),
    [
        ("2008-05-17", date(2008, 5, 17), date(2008, 5, 17)),
        ("2008-02", date(2008, 2, 1), date(2008, 2, 29)),  # 2008 is a leap year
        ("2008", date(2008, 1, 1), date(2008, 12, 31)),
    ],
)
def test_partial_birth_date_is_read_at_both_ends(birth: str, earliest: date, latest: date) -> None:
    facts = patient_facts({"resourceType": "Patient", "birthDate": birth})
    assert (facts.birth_date, facts.birth_date_latest) == (earliest, latest)
    assert latest_fhir_date(birth) == latest


def test_egfr_keeps_its_loinc_codes_for_the_equal_time_preference() -> None:
    observation = {
        "resourceType": "Observation",
        "id": "e1",
        "status": "final",
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2026-01-10T08:00:00Z",
        "code": {
            "coding": [{"system": "urn:local", "code": "EGFR"}, {"system": "http://loinc.org", "code": "98980-6"}]
        },
        "valueQuantity": {"value": 29.6, "unit": "mL/min/{1.73_m2}"},
    }
    facts = extract_facts(
        _data(observations=[observation]),
        patient_id="p1",
        encounter_id=None,
        hook=Hook.PATIENT_VIEW,
        terminology=default_terminology(),
    )
    (egfr,) = facts.labs
    assert (egfr.concept, egfr.value, egfr.loinc_codes) == ("egfr", 29.6, ("98980-6",))


# (text, dosage, expected kind, expected salt class, section 5 clause)
PRODUCTS = [
    ("Magnesium glycinate 200 mg tablet", None, "oral-supplement", "mg-salt-organic", "solid oral form"),
    ("Magnesium oxide 400 mg tablet", None, "oral-supplement", "mg-salt-inorganic", "solid oral form"),
    ("Milk of Magnesia", None, "laxative-antacid", "mg-salt-inorganic", "hydroxide, in any oral form"),
    ("Magnesium citrate oral solution", None, "laxative-antacid", "mg-salt-organic", "oral solution of the citrate"),
    ("Magnesium sulfate 50% injection", None, "parenteral", "mg-salt-inorganic", "the word injection"),
    (
        "Magnesium sulfate 2 g",
        [{"route": {"coding": [{"system": SNOMED, "code": "47625008", "display": "Intravenous route"}]}}],
        "parenteral",
        "mg-salt-inorganic",
        "a parenteral route",
    ),
    ("Magnesium sulfate 2 g", [{"text": "2 g IV over 1 hour"}], "parenteral", "mg-salt-inorganic", "IV in the text"),
]


@pytest.mark.parametrize(
    ("text", "dosage", "kind", "salt", "clause"), PRODUCTS, ids=[p[0] + " " + p[4] for p in PRODUCTS]
)
def test_magnesium_product_kind_and_salt(
    text: str, dosage: list[dict[str, Any]] | None, kind: str, salt: str, clause: str
) -> None:
    (fact,) = _facts(_request("m1", text, dosage=dosage)).medications
    assert (fact.product_kind, fact.salt_class) == (kind, salt), clause
    assert fact.product_rule


def test_a_ppis_magnesium_salt_is_not_a_magnesium_product() -> None:
    # "esomeprazole magnesium" is the PPI's salt (section 5): the PPI counts, the magnesium does not.
    (fact,) = _facts(_request("m1", "Esomeprazole magnesium 40 mg delayed-release capsule")).medications
    assert "proton-pump-inhibitor" in fact.classes
    assert not fact.classes & {"mg-salt-organic", "mg-salt-inorganic", "mg-salt-unspecified"}
    assert (fact.product_kind, fact.salt_class) == (None, None)
    assert fact.ingredients == ("esomeprazole",)


def test_a_drug_without_magnesium_has_no_product_kind() -> None:
    (fact,) = _facts(_request("m1", "Furosemide 40 mg tablet")).medications
    assert (fact.product_kind, fact.salt_class) == (None, None)

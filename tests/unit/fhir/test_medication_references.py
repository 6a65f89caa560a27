"""Referenced Medications are read in the prefetch stage, in a second concurrent round; extraction reads nothing.

Which references are read follows what extraction will use (clinical-rules.md section 4: the drug of a current
medication): this patient's MedicationRequests and MedicationStatements, and draft orders, that name their drug
only through ``medicationReference`` to a Medication nobody sent.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import pytest

from cds_service.engine.vocabulary import Hook
from cds_service.errors import FhirNotFound
from cds_service.fhir.bundles import SearchResult
from cds_service.fhir.extract import extract_facts
from cds_service.fhir.prefetch import MAX_MEDICATION_READS, ResolvedData, resolve_prefetch
from cds_service.fhir.references import medication_key
from terminology import default_terminology

T = TypeVar("T")
SERVER = "https://ehr.example.org/fhir"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
TEMPLATES = {key: "unused" for key in ("patient", "medicationStatements", "medicationRequests")}


def _furosemide(medication_id: str) -> dict[str, Any]:
    # RxNorm 4603 is the ingredient furosemide (a loop diuretic in terminology/valuesets/drugs-loop-diuretic.json).
    return {"resourceType": "Medication", "id": medication_id, "code": {"coding": [{"system": RXNORM, "code": "4603"}]}}


class CountingReader:
    """A FHIR reader that serves Medications from a dict, on a real thread pool, counting the reads."""

    def __init__(self, medications: Mapping[str, dict[str, Any]], *, barrier: threading.Barrier | None = None) -> None:
        self.medications = medications
        self.reads: list[str] = []
        self.barrier = barrier
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=4)

    def read(self, base_url: str, relative: str, token: str | None) -> dict[str, Any]:
        with self._lock:
            self.reads.append(relative)
        if self.barrier is not None:
            self.barrier.wait()  # breaks (and fails the test) unless the reads are in flight together
        if relative not in self.medications:
            raise FhirNotFound(f"{relative} not found", status=404)
        return self.medications[relative]

    def search(self, base_url: str, query: str, token: str | None) -> SearchResult:
        raise AssertionError("the prefetch is complete: no search expected")

    def continue_bundle(self, base_url: str, bundle: Mapping[str, Any], token: str | None) -> SearchResult:
        raise AssertionError("no paging expected")

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        return self._pool.submit(fn, *args)

    def for_call(self) -> CountingReader:
        return self

    def close(self) -> None:
        self._pool.shutdown()


@pytest.fixture
def reader_factory() -> Iterator[Callable[..., CountingReader]]:
    made: list[CountingReader] = []

    def make(medications: Mapping[str, dict[str, Any]], **kwargs: Any) -> CountingReader:
        made.append(CountingReader(medications, **kwargs))
        return made[-1]

    yield make
    for reader in made:
        reader.close()


def _request(rid: str, medication: dict[str, Any], *, patient: str = "p1") -> dict[str, Any]:
    return {
        "resourceType": "MedicationRequest",
        "id": rid,
        "status": "active",
        "intent": "order",
        "subject": {"reference": f"Patient/{patient}"},
        **medication,
    }


def _searchset(*resources: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": r} for r in resources]}


def _resolve(
    reader: CountingReader,
    requests: list[dict[str, Any]],
    *,
    extra: tuple[dict[str, Any], ...] = (),
    fhir_server: str | None = SERVER,
    drafts: tuple[dict[str, Any], ...] = (),
) -> ResolvedData:
    prefetch = {
        "patient": {"resourceType": "Patient", "id": "p1"},
        "medicationStatements": _searchset(),
        "medicationRequests": _searchset(*requests, *extra),
    }
    return resolve_prefetch(
        TEMPLATES,
        {"patientId": "p1", "userId": "Practitioner/u"},
        prefetch,
        client=reader,
        fhir_server=fhir_server,
        access_token="token",
        drafts=drafts,
    )


@pytest.mark.parametrize(
    ("reference", "key"),
    [
        ("Medication/med-1", "Medication/med-1"),
        ("Medication/med-1/_history/3", "Medication/med-1"),  # a version of the same resource
        ("https://ehr.example.org/fhir/Medication/med-1", "Medication/med-1"),
        ("#med-1", None),  # contained: resolved inside the resource, never read
        ("Medication/../Patient/p2", None),  # not a FHIR id: no path traversal
        ("Medication/med-1?_include=*", None),  # no query injection
        ("Medication/", None),
        ("Patient/p1", None),
        ("Medication/" + "x" * 65, None),  # FHIR ids are at most 64 characters
    ],
)
def test_only_a_medication_with_a_fhir_id_is_a_key(reference: str, key: str | None) -> None:
    assert medication_key(reference) == key


def test_missing_medications_are_read_once_each_concurrently(reader_factory: Callable[..., CountingReader]) -> None:
    # Two distinct references: the barrier of two only opens if both reads are in flight at the same time.
    reader = reader_factory(
        {"Medication/m1": _furosemide("m1"), "Medication/m2": _furosemide("m2")},
        barrier=threading.Barrier(2, timeout=10),
    )
    requests = [
        _request("r1", {"medicationReference": {"reference": "Medication/m1"}}),
        _request("r2", {"medicationReference": {"reference": "Medication/m2"}}),
        _request("r3", {"medicationReference": {"reference": "Medication/m1/_history/2"}}),  # same as r1
    ]
    data = _resolve(reader, requests)
    assert sorted(reader.reads) == ["Medication/m1", "Medication/m2"]
    assert set(data.medications) == {"Medication/m1", "Medication/m2"}


def test_what_extraction_will_not_use_is_not_read(reader_factory: Callable[..., CountingReader]) -> None:
    reader = reader_factory({})
    sent = _furosemide("sent")
    requests = [
        _request("r1", {"medicationReference": {"reference": "Medication/sent"}}),  # the prefetch carried it
        _request("r2", {"medicationReference": {"reference": "#c1"}, "contained": [_furosemide("c1")]}),
        _request(
            "r3",
            {
                "medicationCodeableConcept": {"text": "Furosemide 40 mg tablet"},
                "medicationReference": {"reference": "Medication/coded"},  # the concept names the drug
            },
        ),
        _request("r4", {"medicationReference": {"reference": "Medication/theirs"}}, patient="p2"),
        _request("r5", {"medicationReference": {"reference": "Medication/../Patient/p2"}}),
    ]
    data = _resolve(reader, requests, extra=(sent,))
    assert reader.reads == []
    assert data.medications == {"Medication/sent": sent}


def test_without_a_fhir_server_nothing_is_read(reader_factory: Callable[..., CountingReader]) -> None:
    reader = reader_factory({"Medication/m1": _furosemide("m1")})
    data = _resolve(reader, [_request("r1", {"medicationReference": {"reference": "Medication/m1"}})], fhir_server=None)
    assert reader.reads == []
    assert data.medications == {}


def test_a_draft_orders_medication_is_read_too(reader_factory: Callable[..., CountingReader]) -> None:
    reader = reader_factory({"Medication/m9": _furosemide("m9")})
    draft = {**_request("d1", {"medicationReference": {"reference": "Medication/m9"}}), "status": "draft"}
    data = _resolve(reader, [], drafts=(draft,))
    assert reader.reads == ["Medication/m9"]
    assert "Medication/m9" in data.medications


def test_a_read_that_is_not_a_medication_is_not_used(reader_factory: Callable[..., CountingReader]) -> None:
    reader = reader_factory({"Medication/m1": {"resourceType": "Patient", "id": "m1"}})
    data = _resolve(reader, [_request("r1", {"medicationReference": {"reference": "Medication/m1"}})])
    assert reader.reads == ["Medication/m1"]
    assert data.medications == {}


def test_reads_per_call_are_bounded(reader_factory: Callable[..., CountingReader]) -> None:
    reader = reader_factory({})
    requests = [
        _request(f"r{i}", {"medicationReference": {"reference": f"Medication/m{i}"}})
        for i in range(MAX_MEDICATION_READS + 5)
    ]
    _resolve(reader, requests)
    assert len(reader.reads) == MAX_MEDICATION_READS


def test_an_unreadable_medication_fails_open_to_its_display_text(reader_factory: Callable[..., CountingReader]) -> None:
    # Medication/gone answers 404: the drug is classified by the reference's display ("Furosemide 40 mg tablet",
    # furosemide, a loop diuretic) and the fact says why; extraction itself reads nothing (no reader is given to it).
    reader = reader_factory({})
    reference = {"reference": "Medication/gone", "display": "Furosemide 40 mg tablet"}
    data = _resolve(reader, [_request("r1", {"medicationReference": reference})])
    assert reader.reads == ["Medication/gone"]
    facts = extract_facts(
        data, patient_id="p1", encounter_id=None, hook=Hook.PATIENT_VIEW, terminology=default_terminology()
    )
    (fact,) = facts.medications
    assert "loop-diuretic" in fact.classes
    assert fact.evidence.note == "Medication/gone not available; classified by its display text"
    assert facts.medications_known

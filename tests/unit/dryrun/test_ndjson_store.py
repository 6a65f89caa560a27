"""The NDJSON grouping store: one patient's resources found across files, on disk, in bounded memory."""

from __future__ import annotations

import gzip
import json
import sqlite3
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bench.population import population, write_ndjson
from cds_service.dryrun.ndjson import DryRunInputError, NdjsonStore, ndjson_files, patient_of
from cds_service.dryrun.worker import split_bundle

NOW = datetime(2026, 11, 21, 12, tzinfo=UTC)


def _lines(path: Path, resources: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in resources), encoding="utf-8")


def _obs(pid: str, oid: str) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": oid, "subject": {"reference": f"Patient/{pid}"}}


def test_resources_spread_over_files_in_any_order_come_back_per_patient(tmp_path: Path) -> None:
    export = tmp_path / "export"
    export.mkdir()
    _lines(export / "Observation.2.ndjson", [_obs("b", "o3"), _obs("a", "o2")])
    with gzip.open(export / "Observation.1.ndjson.gz", "wt", encoding="utf-8") as stream:
        stream.write(json.dumps(_obs("a", "o1")) + "\n\n" + "not json\n")
    _lines(
        export / "MedicationRequest.ndjson",
        [
            {
                "resourceType": "MedicationRequest",
                "id": "m1",
                "subject": {"reference": "https://ehr/fhir/Patient/b"},
                "medicationReference": {"reference": "Medication/med-1"},
            }
        ],
    )
    _lines(
        export / "Medication.ndjson",
        [{"resourceType": "Medication", "id": "med-1"}, {"resourceType": "Medication", "id": "med-2"}],
    )
    _lines(
        export / "Patient.ndjson",
        [
            {"resourceType": "Patient", "id": "b"},
            {"resourceType": "Patient", "id": "a"},
            {"resourceType": "Patient", "id": "a"},
        ],
    )
    _lines(
        export / "Encounter.ndjson", [{"resourceType": "Encounter", "id": "e1", "subject": {"reference": "Patient/a"}}]
    )
    store = NdjsonStore(tmp_path / "store.sqlite")
    try:
        report = store.ingest(ndjson_files([export]))
        assert report.files == 6
        assert report.bad_lines == 1
        assert report.duplicate_patients == 1
        assert report.ignored_types == {"Encounter": 1}
        assert list(store.patient_ids()) == ["b", "a"]  # the export's order
        patient, where, resources = store.patient("a")
        assert patient["id"] == "a"
        assert where.startswith("Patient.ndjson:")
        assert sorted(r["id"] for r in resources) == ["o1", "o2"]
        _patient, _where, resources_b = store.patient("b")
        assert sorted(r["id"] for r in resources_b) == ["m1", "med-1", "o3"]  # only the Medication it references
        assert list(store.orphans()) == []
    finally:
        store.close()


def test_resources_of_a_patient_the_export_lacks_are_orphans(tmp_path: Path) -> None:
    _lines(
        tmp_path / "Observation.ndjson",
        [_obs("ghost", "o1"), _obs("ghost", "o2"), {"resourceType": "Observation", "id": "x"}],
    )
    store = NdjsonStore(tmp_path / "s.sqlite")
    try:
        report = store.ingest([tmp_path / "Observation.ndjson"])
        assert report.without_patient == 1
        assert list(store.orphans()) == [("ghost", 2)]
        assert store.orphan_count() == 1
        with pytest.raises(KeyError):
            store.patient("ghost")
    finally:
        store.close()


@pytest.mark.parametrize(
    ("reference", "patient"),
    [
        ("Patient/123", "123"),
        ("https://ehr.example/fhir/Patient/123/_history/2", "123"),
        ("Group/9", None),
        ("urn:uuid:1", None),
    ],
)
def test_patient_of(reference: str, patient: str | None) -> None:
    assert patient_of({"subject": {"reference": reference}}) == patient


def test_an_empty_or_missing_input_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DryRunInputError, match="no .ndjson files"):
        ndjson_files([tmp_path])
    with pytest.raises(DryRunInputError, match="does not exist"):
        ndjson_files([tmp_path / "nope"])


def _ingest_peak(tmp_path: Path, patients: int) -> tuple[int, int, int]:
    """(input bytes, Python heap peak while ingesting, resources in the store) for a generated export."""
    export = tmp_path / f"export-{patients}"
    lines = write_ndjson(population(patients, seed=3, now=NOW), export, seed=3)
    size = sum(p.stat().st_size for p in export.iterdir())
    files = ndjson_files([export])
    store = NdjsonStore(tmp_path / f"store-{patients}.sqlite")
    tracemalloc.start()
    try:
        store.ingest(files)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        store.close()
    with sqlite3.connect(tmp_path / f"store-{patients}.sqlite") as db:
        stored = db.execute("SELECT count(*) FROM resources").fetchone()[0]
    expected = sum(n for name, n in lines.items() if not name.startswith(("Patient", "Medication.")))
    assert stored == expected  # every resource went to the file on disk
    return size, peak, stored


def test_grouping_is_on_disk_and_memory_does_not_grow_with_the_population(tmp_path: Path) -> None:
    small_size, small_peak, _ = _ingest_peak(tmp_path, 1000)
    big_size, big_peak, big_rows = _ingest_peak(tmp_path, 4000)
    assert big_size > 3.5 * small_size
    assert big_rows > 4000
    # Four times the patients, about the same memory: nothing is kept per patient (a dict of the export would
    # grow four-fold). The margin covers SQLite's and the allocator's noise.
    assert big_peak < 1.5 * small_peak
    assert big_peak < big_size / 4  # and far less than the export itself
    store_file = tmp_path / "store-4000.sqlite"
    assert store_file.stat().st_size > big_size / 2


def test_split_bundle_keeps_each_patient_its_own_and_the_shared() -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"fullUrl": "urn:uuid:a", "resource": {"resourceType": "Patient"}},
            {"resource": {"resourceType": "Patient", "id": "b"}},
            {"resource": {"resourceType": "Observation", "id": "oa", "subject": {"reference": "urn:uuid:a"}}},
            {
                "resource": {
                    "resourceType": "Observation",
                    "id": "ob",
                    "subject": {"reference": "https://x/fhir/Patient/b"},
                }
            },
            {"resource": {"resourceType": "Observation", "id": "oc", "subject": {"reference": "Patient/c"}}},
            {"resource": {"resourceType": "Medication", "id": "m"}},
        ],
    }
    parts = split_bundle(bundle)
    ids = {pid: [e["resource"].get("id") for e in part["entry"]] for pid, part in parts.items()}
    assert ids == {"a": [None, "oa", "m"], "b": ["b", "ob", "m"]}

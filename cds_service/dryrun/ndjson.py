"""A Bulk FHIR ``$export`` folder grouped by patient in an on-disk SQLite store.

An export writes one file per resource type (``Patient.ndjson``, ``Observation.ndjson``, often split in parts:
``Observation.1.ndjson``, ...), so one patient's resources are spread over every file, in any order. Reading them
into a dict would hold the whole population in memory; instead each line goes, as its raw text, into a SQLite table
keyed by the patient it references, and each patient is read back with one indexed query. Memory stays that of one
patient plus SQLite's page cache, whatever the size of the export.

The store is scratch space: journaling and fsync are off, and it is deleted with its folder after the run.
Workers open it read-only, each with its own connection.
"""

from __future__ import annotations

import gzip
import json
import sqlite3
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from cds_service.errors import CommandError
from cds_service.fhir.references import medication_key, medication_reference, reference_of

# Only these go to the patient's prefetch; anything else in the export is counted and left out.
PATIENT_RESOURCE_TYPES = frozenset(
    {"Observation", "MedicationRequest", "MedicationStatement", "Condition", "ServiceRequest"}
)
NDJSON_SUFFIXES = (".ndjson", ".ndjson.gz")
# Rows held before one executemany: bounds the raw lines in memory (a few hundred KiB), big enough to be fast.
_BATCH_ROWS = 1000
_PATIENT = "Patient/"


class DryRunInputError(CommandError):
    """The dry run's input cannot be read at all (not one patient's problem)."""


@dataclass
class IngestReport:
    """What reading the export found: lines by resource type, and what could not be used."""

    files: int = 0
    lines: int = 0
    by_type: Counter[str] = field(default_factory=Counter)
    bad_lines: int = 0
    ignored_types: Counter[str] = field(default_factory=Counter)
    without_patient: int = 0
    duplicate_patients: int = 0
    first_problems: list[str] = field(default_factory=list)

    def problem(self, text: str) -> None:
        """Remember the first few problems verbatim (the rest are counted)."""
        if len(self.first_problems) < 20:
            self.first_problems.append(text)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "files": self.files,
            "lines": self.lines,
            "resources_by_type": dict(sorted(self.by_type.items())),
            "unreadable_lines": self.bad_lines,
            "ignored_resource_types": dict(sorted(self.ignored_types.items())),
            "resources_without_patient": self.without_patient,
            "duplicate_patients": self.duplicate_patients,
            "first_problems": list(self.first_problems),
        }


def ndjson_files(paths: Iterable[Path]) -> list[Path]:
    """The NDJSON files named, or found (recursively, sorted) in the folders named."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith(NDJSON_SUFFIXES)))
        elif path.is_file():
            found.append(path)
        else:
            raise DryRunInputError(f"{path} does not exist")
    if not found:
        raise DryRunInputError("no .ndjson files in " + ", ".join(str(p) for p in paths))
    return found


def patient_of(resource: dict[str, Any]) -> str | None:
    """The id of the Patient a resource belongs to (``subject`` or ``patient``: ``Patient/X`` or ``.../Patient/X``)."""
    ref = reference_of(resource.get("subject")) or reference_of(resource.get("patient"))
    if ref is None or _PATIENT not in ref:
        return None
    patient_id = ref.rsplit(_PATIENT, 1)[1].split("/_history", 1)[0]
    return patient_id or None


def _open_text(path: Path) -> IO[str]:
    if path.name.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open(encoding="utf-8")


class NdjsonStore:
    """Resources of an export, grouped by patient on disk (SQLite)."""

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.path = path
        if read_only:
            self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        else:
            self._db = sqlite3.connect(path)
            self._db.executescript(
                """
                PRAGMA journal_mode = OFF;
                PRAGMA synchronous = OFF;
                CREATE TABLE IF NOT EXISTS patients (id TEXT PRIMARY KEY, source TEXT NOT NULL, body TEXT NOT NULL);
                CREATE TABLE IF NOT EXISTS resources (patient TEXT NOT NULL, body TEXT NOT NULL);
                CREATE TABLE IF NOT EXISTS medications (id TEXT PRIMARY KEY, body TEXT NOT NULL);
                """
            )

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    # -- writing (the parent, once) ---------------------------------------------------------------------------

    def ingest(self, files: Iterable[Path]) -> IngestReport:
        """Read every line of every file into the store; unreadable lines are counted, not fatal."""
        report = IngestReport()
        patients: list[tuple[str, str, str]] = []
        resources: list[tuple[str, str]] = []
        medications: list[tuple[str, str]] = []
        for path in files:
            report.files += 1
            try:
                with _open_text(path) as stream:
                    for number, line in enumerate(stream, start=1):
                        text = line.strip()
                        if not text:
                            continue
                        report.lines += 1
                        self._one_line(text, f"{path.name}:{number}", report, patients, resources, medications)
                        if len(patients) + len(resources) + len(medications) >= _BATCH_ROWS:
                            self._flush(report, patients, resources, medications)
            except (OSError, UnicodeDecodeError, EOFError) as exc:
                raise DryRunInputError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from exc
        self._flush(report, patients, resources, medications)
        # The index is built once after loading: faster than keeping it up to date row by row.
        self._db.execute("CREATE INDEX IF NOT EXISTS resources_by_patient ON resources (patient)")
        self._db.commit()
        return report

    @staticmethod
    def _one_line(
        text: str,
        where: str,
        report: IngestReport,
        patients: list[tuple[str, str, str]],
        resources: list[tuple[str, str]],
        medications: list[tuple[str, str]],
    ) -> None:
        try:
            resource = json.loads(text)
        except (ValueError, RecursionError):
            report.bad_lines += 1
            report.problem(f"{where}: not JSON")
            return
        kind = resource.get("resourceType") if isinstance(resource, dict) else None
        if not isinstance(kind, str):
            report.bad_lines += 1
            report.problem(f"{where}: not a FHIR resource")
            return
        report.by_type[kind] += 1
        if kind == "Patient":
            patient_id = resource.get("id")
            if not isinstance(patient_id, str) or not patient_id:
                report.bad_lines += 1
                report.problem(f"{where}: a Patient without id")
                return
            patients.append((patient_id, where, text))
        elif kind == "Medication":
            if isinstance(resource.get("id"), str):
                medications.append((resource["id"], text))
        elif kind in PATIENT_RESOURCE_TYPES:
            owner = patient_of(resource)
            if owner is None:
                report.without_patient += 1
                report.problem(f"{where}: {kind} names no Patient")
                return
            resources.append((owner, text))
        else:
            report.ignored_types[kind] += 1

    def _flush(
        self,
        report: IngestReport,
        patients: list[tuple[str, str, str]],
        resources: list[tuple[str, str]],
        medications: list[tuple[str, str]],
    ) -> None:
        before = self._db.total_changes
        self._db.executemany("INSERT OR IGNORE INTO patients (id, source, body) VALUES (?, ?, ?)", patients)
        report.duplicate_patients += len(patients) - (self._db.total_changes - before)
        self._db.executemany("INSERT INTO resources (patient, body) VALUES (?, ?)", resources)
        self._db.executemany("INSERT OR IGNORE INTO medications (id, body) VALUES (?, ?)", medications)
        self._db.commit()
        patients.clear()
        resources.clear()
        medications.clear()

    # -- reading (the parent lists patients, the workers read them) -------------------------------------------

    def patient_count(self) -> int:
        """How many Patients the export holds."""
        row = self._db.execute("SELECT count(*) FROM patients").fetchone()
        return int(row[0])

    def patient_ids(self) -> Iterator[str]:
        """Every Patient id, in the order the export listed them (streamed, not loaded at once)."""
        cursor = self._db.execute("SELECT id FROM patients ORDER BY rowid")
        for (patient_id,) in cursor:
            yield str(patient_id)

    def orphan_count(self) -> int:
        """How many patients resources reference without a Patient in the export."""
        row = self._db.execute(
            "SELECT count(DISTINCT patient) FROM resources WHERE patient NOT IN (SELECT id FROM patients)"
        ).fetchone()
        return int(row[0])

    def orphans(self) -> Iterator[tuple[str, int]]:
        """Patients that resources reference but the export has no Patient for, with their resource counts."""
        cursor = self._db.execute(
            "SELECT patient, count(*) FROM resources WHERE patient NOT IN (SELECT id FROM patients) "
            "GROUP BY patient ORDER BY patient"
        )
        for patient_id, count in cursor:
            yield str(patient_id), int(count)

    def patient(self, patient_id: str) -> tuple[dict[str, Any], str, list[dict[str, Any]]]:
        """One patient: the Patient, where it was read, and its resources with the Medications they reference."""
        row = self._db.execute("SELECT body, source FROM patients WHERE id = ?", (patient_id,)).fetchone()
        if row is None:
            raise KeyError(patient_id)
        patient = json.loads(row[0])
        rows = self._db.execute("SELECT body FROM resources WHERE patient = ? ORDER BY rowid", (patient_id,))
        resources = [json.loads(body) for (body,) in rows]
        return patient, str(row[1]), resources + self._medications_of(resources)

    def _medications_of(self, resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The Medications of the export that this patient's medication resources reference."""
        wanted: list[str] = []
        for resource in resources:
            reference = medication_reference(resource)
            key = medication_key(reference) if reference is not None else None
            if key is not None and key not in wanted:
                wanted.append(key)
        found = []
        for key in wanted:
            row = self._db.execute("SELECT body FROM medications WHERE id = ?", (key.split("/", 1)[1],)).fetchone()
            if row is not None:
                found.append(json.loads(row[0]))
        return found

"""The pool's side: each worker process builds the patient-view pipeline once and evaluates job after job.

Every patient goes through :class:`cds_service.cli.evaluate.Evaluator`, the code path of ``mgcds evaluate``, with
its resources as the hook's prefetch (or, from a FHIR server, fetched by the hook as an EHR's prefetch would be):
the same rules, the same suppression of tests already ordered. A patient that cannot be evaluated becomes a
skipped result with its reason; nothing a single patient holds stops the run.
"""

from __future__ import annotations

import json
import logging
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cds_service.cli.evaluate import (
    EVALUATE_USER,
    Evaluator,
    SmartFhirReader,
    entry_patient_id,
    parse_request,
    request_from_bundle,
    request_from_resources,
    request_from_server,
)
from cds_service.config import Settings
from cds_service.dryrun.ndjson import NdjsonStore
from cds_service.dryrun.results import PatientResult, result_from_outcome, skipped
from cds_service.dryrun.sources import BUNDLE, NDJSON, SERVER, Job
from cds_service.errors import MgCDSError
from cds_service.fhir.references import reference_of
from cds_service.fhir.smart import SmartBackendAuth, SmartSettings
from cds_service.interfaces import FhirReader
from cds_service.vocabulary import PrefetchKey
from hooks import HookOutcome

HOOK = "patient-view"
DRY_RUN_USER = "Practitioner/mgcds-dry-run"
HTTP_OK = 200
HTTP_PRECONDITION_FAILED = 412
_REASON_MAX = 300


@dataclass(frozen=True)
class WorkerConfig:
    """Everything a worker needs to build its pipeline (picklable: it is sent to each new process)."""

    settings: Settings
    now: datetime
    store_path: str | None = None
    fhir_server: str | None = None
    token: str | None = None
    smart: SmartSettings | None = None
    audit: bool = False


class PatientSkipped(Exception):
    """This patient cannot be evaluated; the message says why."""


class Worker:
    """One process's pipeline (and, for NDJSON, its own read-only connection to the store)."""

    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        wrap: Callable[[FhirReader], FhirReader] | None = None
        if config.smart is not None and config.fhir_server is not None:
            auth = SmartBackendAuth(config.smart, config.fhir_server)
            wrap = lambda inner: SmartFhirReader(inner, auth)  # noqa: E731 - a one-line factory
        self.evaluator = Evaluator(config.settings, now=config.now, wrap_reader=wrap)
        self.store = NdjsonStore(Path(config.store_path), read_only=True) if config.store_path else None
        self.recorder = None
        if config.audit:
            from cds_service.audit.recorder import AuditRecorder
            from cds_service.factory import build_audit_writer
            from cds_service.runtime import utc_now

            # Synchronous: each record is drained as it is written, so nothing waits in a thread when the pool ends.
            self.writer = build_audit_writer(config.settings, asynchronous=False)
            self.recorder = AuditRecorder(self.writer, clock=utc_now)
        self.service_id = self.evaluator.service_for(HOOK).definition.id

    def close(self) -> None:
        """Release the pipeline, the store connection and the audit writer."""
        self.evaluator.close()
        if self.store is not None:
            self.store.close()
        if self.recorder is not None:
            self.writer.close()

    # -- one job ----------------------------------------------------------------------------------------------

    def run(self, job: Job) -> list[PatientResult]:
        """Evaluate every patient of a job; each failure is that patient's skipped result."""
        if job.kind == BUNDLE:
            return self._bundle(job.refs[0])
        if job.kind == NDJSON:
            return [self._guarded(pid, "ndjson", self._ndjson) for pid in job.refs]
        if job.kind == SERVER:
            return [self._guarded(pid, f"Patient/{pid}", self._server) for pid in job.refs]
        raise ValueError(f"unknown job kind {job.kind!r}")  # pragma: no cover - our own jobs only

    def _guarded(self, patient_id: str, source: str, evaluate: Callable[[str], PatientResult]) -> PatientResult:
        try:
            return evaluate(patient_id)
        except (PatientSkipped, MgCDSError) as exc:
            return skipped(patient_id, source, str(exc)[:_REASON_MAX])
        except Exception as exc:
            # A bug of ours or data nobody foresaw: this patient is reported, the run goes on.
            logging.getLogger("mgcds.dryrun").exception("dry-run: patient %s failed", patient_id)
            return skipped(patient_id, source, f"internal error ({type(exc).__name__}): {str(exc)[:200]}")

    def _outcome(self, body: dict[str, Any]) -> HookOutcome:
        body["context"]["userId"] = DRY_RUN_USER if self.recorder is not None else EVALUATE_USER
        request = parse_request(body, HOOK)
        if self.recorder is None:
            return self.evaluator.handle(request)
        with self.recorder.hook_call(self.service_id) as call:
            call.request = request
            try:
                outcome = self.evaluator.handle(request)
            except MgCDSError as exc:
                call.refused(HTTP_PRECONDITION_FAILED, f"prerequisite_failed: {exc}")
                raise
            call.outcome = outcome
            call.answered(HTTP_OK)
            return outcome

    def _result(self, outcome: HookOutcome, source: str) -> PatientResult:
        patients = outcome.data.resources(PrefetchKey.PATIENT) if outcome.data is not None else []
        patient = patients[0] if patients else {}
        return result_from_outcome(patient, source, outcome.assessment, outcome.cards, self.config.now)

    def _ndjson(self, patient_id: str) -> PatientResult:
        if self.store is None:  # pragma: no cover - NDJSON jobs come with a store
            raise PatientSkipped("no NDJSON store")
        try:
            patient, where, resources = self.store.patient(patient_id)
        except KeyError:
            raise PatientSkipped("no Patient resource in the export") from None
        outcome = self._outcome(request_from_resources(patient, resources, HOOK))
        return self._result(outcome, where)

    def _server(self, patient_id: str) -> PatientResult:
        if self.config.fhir_server is None:  # pragma: no cover - server jobs come with a server
            raise PatientSkipped("no FHIR server")
        # With SMART the reader adds the token to each read; with --token it travels in fhirAuthorization.
        token = self.config.token if self.config.smart is None else None
        outcome = self._outcome(request_from_server(self.config.fhir_server, patient_id, token, HOOK))
        return self._result(outcome, f"Patient/{patient_id}")

    def _bundle(self, path_text: str) -> list[PatientResult]:
        path = Path(path_text)
        try:
            bundle = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            return [skipped("", path.name, f"the file cannot be read: {exc.strerror or exc}")]
        except UnicodeDecodeError:
            return [skipped("", path.name, "the file is not UTF-8 text")]
        except (ValueError, RecursionError):
            return [skipped("", path.name, "the file is not valid JSON")]
        if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
            return [skipped("", path.name, "the file is not a FHIR Bundle")]
        per_patient = split_bundle(bundle)
        if not per_patient:
            return [skipped("", path.name, "the Bundle holds no Patient with an id or fullUrl")]
        if len(per_patient) == 1:
            # One Patient: exactly what `mgcds evaluate --bundle FILE` builds, from the file as it is.
            (patient_id,) = per_patient
            return [self._guarded(patient_id, path.name, self._bundle_patient(bundle, None, path.name))]
        return [
            self._guarded(pid, path.name, self._bundle_patient(part, pid, path.name))
            for pid, part in per_patient.items()
        ]

    def _bundle_patient(
        self, bundle: dict[str, Any], patient_id: str | None, source: str
    ) -> Callable[[str], PatientResult]:
        def evaluate(_patient_id: str) -> PatientResult:
            outcome = self._outcome(request_from_bundle(bundle, patient_id, HOOK))
            return self._result(outcome, source)

        return evaluate


def split_bundle(bundle: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """One Bundle per Patient of ``bundle``: its Patient, its resources, and the resources that name no patient.

    This is what extraction would keep of the whole Bundle for that patient (resources of other patients are
    never used), so evaluating each part gives the answer `mgcds evaluate --bundle FILE --patient ID` gives, in
    one pass instead of one pass per patient.
    """
    entries = [e for e in bundle.get("entry") or () if isinstance(e, dict) and isinstance(e.get("resource"), dict)]
    owner_of: dict[str, str] = {}
    parts: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        patient_id = entry_patient_id(entry)
        if patient_id is None or entry["resource"].get("resourceType") != "Patient":
            continue
        parts.setdefault(patient_id, []).append(entry)
        owner_of[f"Patient/{patient_id}"] = patient_id
        if isinstance(entry.get("fullUrl"), str):
            owner_of[entry["fullUrl"]] = patient_id
    shared: list[dict[str, Any]] = []
    for entry in entries:
        resource = entry["resource"]
        if resource.get("resourceType") == "Patient":
            continue
        ref = reference_of(resource.get("subject")) or reference_of(resource.get("patient"))
        if ref is None:
            shared.append(entry)
            continue
        owner = owner_of.get(ref)
        if owner is None and "Patient/" in ref:
            owner = owner_of.get("Patient/" + ref.rsplit("Patient/", 1)[1])
        if owner is not None:
            parts[owner].append(entry)
    return {
        pid: {"resourceType": "Bundle", "type": bundle.get("type", "collection"), "entry": [*own, *shared]}
        for pid, own in parts.items()
    }


# -- the process pool's entry points (module-level: they are pickled by name) -------------------------------------

_worker: Worker | None = None


def initialize(config: WorkerConfig) -> None:
    """Pool initializer: build this process's pipeline once."""
    global _worker
    # Ctrl-C reaches the whole process group: the parent stops the pool; workers must not die mid-job with a
    # traceback each.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _worker = Worker(config)


def run_job(job: Job) -> list[PatientResult]:
    """Pool task: evaluate one job in this process's pipeline."""
    if _worker is None:  # pragma: no cover - the pool always runs initialize first
        raise RuntimeError("dry-run worker used before initialize()")
    return _worker.run(job)

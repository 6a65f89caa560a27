"""`mgcds dry-run`: the alert burden of a whole population, before go-live (issue 18, item 1).

Data flows one way, as in the service: a source yields jobs (``sources``: Bundle files, a Bulk FHIR NDJSON export
grouped by patient in an on-disk SQLite store (``ndjson``), or a FHIR server), a process pool evaluates each patient
through exactly the patient-view pipeline (``worker``, with :class:`cds_service.cli.evaluate.Evaluator`), each
patient becomes one small :class:`results.PatientResult`, the parent folds those into counters (``aggregate``) and
streams CSV rows, and the reports are written at the end (``reports``). ``runner`` drives the pool with a bounded
window of jobs in flight, so memory does not grow with the population.
"""

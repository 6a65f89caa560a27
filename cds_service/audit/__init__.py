"""The append-only, hash-chained audit log: see docs/audit.md.

Nothing is imported here, so that the plain data modules (``records``, ``model``, ``chain``) load without
SQLAlchemy. Modules:

- ``records``: what is recorded (CallRecord, FeedbackRecord, FeedbackCallRecord) and their JSON payloads;
- ``model``: entries on their way, stored records, review filters and counts; ``chain``: the hash chain;
- ``recorder``: turns one HTTP call into its record, whatever it was answered (in a ``finally``);
- ``writer``: the real AuditWriter (spool + background drain); ``spool``: the local append-only file;
- ``schema``, ``sqlwrite``, ``sqlread``, ``store``: the SQLite/PostgreSQL store (tables, appends, queries);
- ``memory``: the in-memory AuditWriter and AuditReader; ``export``: FHIR AuditEvent and CSV.
"""

"""The append-only, hash-chained audit log: see docs/audit.md.

Nothing is imported here, so that the plain data modules (``records``, ``model``, ``chain``) load without
SQLAlchemy. Modules:

- ``records``: what is recorded (CallRecord, FeedbackRecord, FeedbackCallRecord) and their JSON payloads;
- ``model``: entries on their way, stored records, review filters and counts; ``chain``: the hash chain;
- ``recorder``: turns one HTTP call into its record, whatever it was answered (in a ``finally``); a record that
  cannot be made durable turns the answer into 503;
- ``writer``: the real AuditWriter (spool + background drain); ``spool``: the local append-only file with checked
  writes and a streaming drain; ``quarantine``: records the store refused, kept with the reason;
- ``readiness``: spool, store, backlog and quarantine, each checked within a time limit (``/readyz``);
- ``schema``, ``sqlwrite``, ``sqlread``, ``store``: the SQLite/PostgreSQL store (tables, appends, queries);
  ``deadline``: the client-side time limit on store work; ``index_keys``: the keys of the card and feedback
  indexes; ``limits``: how long each value may be, in the API and in the store;
- ``suppression``: suppression after feedback (clinical-rules.md 7.5), read from the store;
- ``memory``: the in-memory AuditWriter and AuditReader; ``export``: FHIR AuditEvent and CSV.
"""

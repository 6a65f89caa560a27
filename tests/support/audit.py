"""Reading what an app under test recorded: flush its audit writer, then read through its audit reader."""

from __future__ import annotations

from flask import Flask

from cds_service.audit.model import StoredRecord
from cds_service.runtime import Runtime


def runtime_of(app: Flask) -> Runtime:
    """The app's collaborators."""
    runtime: Runtime = app.extensions["mgcds.runtime"]
    return runtime


def stored_records(app: Flask, timeout: float = 10) -> list[StoredRecord]:
    """Every record the app's audit log holds, once the writer has stored what it spooled."""
    runtime = runtime_of(app)
    assert runtime.audit_writer.flush(timeout)
    return list(runtime.audit_reader.iter_records())

"""The factory helpers choose each seam's implementation from Settings (what the app and every command use)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from cds_service.audit.memory import InMemoryAuditLog
from cds_service.audit.sqlread import SqlAuditReader
from cds_service.audit.writer import SpoolingAuditWriter
from cds_service.config import Settings
from cds_service.errors import AuditStoreError, ConfigurationError
from cds_service.factory import (
    build_audit_reader,
    build_audit_writer,
    build_hook_deps,
    build_replay_cache,
    build_runtime,
    build_security,
    unauthenticated,
)
from cds_service.security.fhir_allowlist import FhirServerPolicy
from cds_service.security.replay import InMemoryReplayCache, SqlReplayCache
from terminology import default_terminology
from tests.unit.audit.helpers import make_call


def test_an_in_memory_store_is_one_log_that_is_its_own_reader(tmp_path: Path) -> None:
    runtime = build_runtime(Settings(dev=True, instance_path=tmp_path, audit_url="sqlite://"))
    try:
        assert isinstance(runtime.audit_writer, InMemoryAuditLog)
        assert runtime.audit_reader is runtime.audit_writer
        record_id = runtime.audit_writer.record_call(make_call())
        assert runtime.audit_reader.get(record_id) is not None
    finally:
        runtime.close()


def test_a_sqlite_file_gets_a_spooling_writer_and_a_separate_read_only_reader(tmp_path: Path) -> None:
    settings = Settings(instance_path=tmp_path)
    writer, reader = build_audit_writer(settings, asynchronous=False), build_audit_reader(settings)
    try:
        assert isinstance(writer, SpoolingAuditWriter)
        assert writer.spool is not None
        assert writer.spool.path == tmp_path / "audit-spool.jsonl"
        assert isinstance(reader, SqlAuditReader)
        assert reader is not writer
    finally:
        writer.close()
        reader.close()


def test_development_mode_creates_the_sqlite_schema_and_production_does_not(tmp_path: Path) -> None:
    dev = build_runtime(Settings(dev=True, instance_path=tmp_path / "dev"))
    try:
        dev.audit_writer.check_ready()
    finally:
        dev.close()
    # Production: the schema is `mgcds audit init`'s job; until then readiness says so.
    prod = build_runtime(
        Settings(instance_path=tmp_path / "prod"),
        authenticate=unauthenticated,
        fhir_guard=FhirServerPolicy(None, dev=False),
    )
    try:
        with pytest.raises(AuditStoreError, match="mgcds audit init"):
            prod.audit_writer.check_ready()
    finally:
        prod.close()


def test_production_without_an_issuer_registry_refuses_to_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="MGCDS_TRUSTED_ISSUERS"):
        build_security(Settings(instance_path=tmp_path))


def test_development_without_a_registry_authenticates_nobody(tmp_path: Path) -> None:
    assert build_security(Settings(dev=True, instance_path=tmp_path)).authenticate is unauthenticated
    assert unauthenticated("Bearer anything", "https://mgcds.example.org") is None


def test_the_default_replay_cache_is_the_sqlite_audit_database_shared_by_workers(tmp_path: Path) -> None:
    """Issue 16 B3: two workers (two caches built from the same settings) and a restart see the same jtis."""
    settings = Settings(instance_path=tmp_path)
    worker_a, worker_b = build_replay_cache(settings), build_replay_cache(settings)
    assert isinstance(worker_a, SqlReplayCache)
    assert worker_a.seen("https://ehr.example.org", "jti-1", time.time() + 300) is False
    assert worker_b.seen("https://ehr.example.org", "jti-1", time.time() + 300) is True
    restarted = build_replay_cache(settings)
    assert restarted.seen("https://ehr.example.org", "jti-1", time.time() + 300) is True
    assert (tmp_path / "audit.sqlite3").exists()  # the audit database's file, not one of its own


def test_only_an_in_memory_audit_store_keeps_jtis_in_the_process(tmp_path: Path) -> None:
    cache = build_replay_cache(Settings(instance_path=tmp_path, audit_url="sqlite://"))
    assert isinstance(cache, InMemoryReplayCache)


def test_hook_deps_link_cards_to_this_services_rules_page(tmp_path: Path) -> None:
    runtime = build_runtime(Settings(dev=True, instance_path=tmp_path, audit_url="sqlite://"))
    try:
        settings = Settings(public_base_url="https://cds.example.org/mgcds/")
        deps = build_hook_deps(settings, fhir=runtime.fhir, terminology=default_terminology())
        assert deps.rules_url == "https://cds.example.org/mgcds/docs/clinical-rules"
        assert deps.clinical == settings.clinical
    finally:
        runtime.close()

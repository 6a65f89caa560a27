"""Every MGCDS_* variable: a good value and what it becomes, a bad value and the error naming the variable.

The expected values are what the README's settings table promises each variable means (its unit and form), written
out by hand; the bad values are the mistakes an operator makes (a word where a number goes, zero where a positive
count goes, a plain password where a hash goes, a newline pasted into a value).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cds_service.config import CLINICAL_PARSERS, Settings, load_settings, variables
from cds_service.engine.settings import ClinicalSettings
from cds_service.errors import ConfigurationError

SCRYPT_HASH = "scrypt:32768:8:1$salt0123$" + "ab" * 64

# variable, a good value, what load_settings makes of it, a bad value
CASES: list[tuple[str, str, Any, str]] = [
    ("MGCDS_DEV", "yes", True, "maybe"),
    ("MGCDS_HOST", "0.0.0.0", "0.0.0.0", "  "),  # noqa: S104 - a bind address, not a server here
    ("MGCDS_PORT", "9090", 9090, "65536"),
    ("MGCDS_WORKERS", "3", 3, "0"),
    ("MGCDS_THREADS", "8", 8, "eight"),
    ("MGCDS_WORKER_CONNECTIONS", "16", 16, "0"),
    ("MGCDS_REUSE_PORT", "off", False, "sometimes"),
    ("MGCDS_LOG_LEVEL", "debug", "DEBUG", "LOUD"),
    ("MGCDS_PUBLIC_BASE_URL", "https://cds.example.org", "https://cds.example.org", "cds.example.org"),
    ("MGCDS_INSTANCE_PATH", "/var/lib/mgcds", Path("/var/lib/mgcds"), ""),
    ("MGCDS_AUDIT_URL", "postgresql://u@db/audit", "postgresql://u@db/audit", "mysql://u@db/audit"),
    ("MGCDS_AUDIT_SPOOL_PATH", "/tmp/spool.jsonl", Path("/tmp/spool.jsonl"), "/tmp/a\nb"),
    ("MGCDS_AUDIT_RETENTION_DAYS", "30", 30, "0"),
    ("MGCDS_AUDIT_FSYNC", "Always", "always", "sometimes"),
    ("MGCDS_AUDIT_STORE_TIMEOUT_SECONDS", "2.5", 2.5, "0"),
    ("MGCDS_AUDIT_BACKLOG_MAX_AGE_SECONDS", "120", 120.0, "-1"),
    ("MGCDS_AUDIT_SPOOL_MIN_FREE_BYTES", "1048576", 1048576, "1 MB"),
    ("MGCDS_REVIEWER_TOKEN", "0123456789abcdef", "0123456789abcdef", "token\n"),
    ("MGCDS_REVIEWER_USER", "auditor", "auditor", ""),
    ("MGCDS_REVIEWER_PASSWORD_HASH", SCRYPT_HASH, SCRYPT_HASH, "correct horse battery staple"),
    ("MGCDS_REVIEWER_AUTH_CLIENT_LIMIT", "3/minute;10/hour", "3/minute;10/hour", "three a minute"),
    ("MGCDS_REVIEWER_AUTH_GLOBAL_LIMIT", "2 per second", "2 per second", "2/fortnight"),
    ("MGCDS_MAX_BODY_BYTES", "1024", 1024, "-1"),
    ("MGCDS_CORS_ORIGINS", "https://a.org, https://b.org", ("https://a.org", "https://b.org"), "https://a.org\t"),
    ("MGCDS_FHIR_TIMEOUT_SECONDS", "2.5", 2.5, "nan"),
    ("MGCDS_FHIR_PAGE_CAP", "3", 3, "0"),
    ("MGCDS_FHIR_CACHE_TTL_SECONDS", "0", 0, "-5"),
    ("MGCDS_FHIR_CACHE_SIZE", "10", 10, "0"),
    ("MGCDS_FHIR_MAX_CONCURRENCY", "2", 2, "0"),
    ("MGCDS_FHIR_MAX_ENTRIES", "100", 100, "1e3"),
    ("MGCDS_TRUSTED_ISSUERS", "/etc/mgcds/issuers.json", Path("/etc/mgcds/issuers.json"), "/etc/\x00"),
    ("MGCDS_JWT_ALGORITHMS", "es256,RS384", ("ES256", "RS384"), "ES384,HS256"),
    ("MGCDS_JWT_CLOCK_SKEW_SECONDS", "0", 0, "-1"),
    ("MGCDS_JWKS_CACHE_TTL_SECONDS", "600", 600, "ten"),
    ("MGCDS_FHIR_CALL_BUDGET_SECONDS", "4.5", 4.5, "0"),
    ("MGCDS_FHIR_CALL_MAX_BYTES", "1048576", 1048576, "100"),
    ("MGCDS_FHIR_CACHE_MAX_BYTES", "0", 0, "-1"),
    ("MGCDS_JWT_MAX_LIFETIME_SECONDS", "120", 120, "0"),
    ("MGCDS_TERMINOLOGY_URL", "https://rxnav.nlm.nih.gov", "https://rxnav.nlm.nih.gov", "ftp://rxnav"),
    ("MGCDS_TERMINOLOGY_KIND", "RxNav", "rxnav", "snomed"),
    ("MGCDS_TERMINOLOGY_TIMEOUT_SECONDS", "0.5", 0.5, "0"),
    ("MGCDS_TERMINOLOGY_CACHE_TTL_SECONDS", "3600", 3600, "1.5"),
    ("MGCDS_ORDER_SESSION_TTL_SECONDS", "60", 60, "an hour"),
    ("MGCDS_CONTROL_SOCKET", "off", "off", "/run/a\nb.ctl"),
    ("MGCDS_BENCH_FLOOR", "on", True, "2"),
    ("MGCDS_CLINICAL_MAGNESIUM_WINDOW_DAYS", "30", 30, "0"),
    ("MGCDS_CLINICAL_RENAL_WINDOW_DAYS", "180", 180, "-1"),
    ("MGCDS_CLINICAL_ALCOHOL_WINDOW_DAYS", "730", 730, "a year"),
    ("MGCDS_CLINICAL_IONIZED_LOW_MMOL_L", "0.45", 0.45, "inf"),
    ("MGCDS_CLINICAL_IONIZED_HIGH_MMOL_L", "0.60", 0.60, "-0.6"),
    ("MGCDS_CLINICAL_SERUM_MG_TEST_LOINC", "2601-3", "2601-3", "2885-2"),
    ("MGCDS_CLINICAL_IONIZED_MG_TEST_LOINC", "21377-7", "21377-7", "ionized"),
    ("MGCDS_CLINICAL_SUPPLEMENT_ELEMENTAL_MG_PER_DAY", "250", 250, "0"),
    ("MGCDS_CLINICAL_SUPPRESSION_ACCEPTED_DAYS", "0", 0, "-1"),
    ("MGCDS_CLINICAL_SUPPRESSION_ALREADY_ADDRESSED_DAYS", "14", 14, "two weeks"),
    ("MGCDS_CLINICAL_SUPPRESSION_RECENT_RESULT_ELSEWHERE_DAYS", "60", 60, "1.5"),
    ("MGCDS_CLINICAL_SUPPRESSION_PATIENT_DECLINED_DAYS", "90", 90, "3651"),
    ("MGCDS_CLINICAL_SUPPRESSION_NOT_CLINICALLY_RELEVANT_DAYS", "730", 730, "-365"),
    ("MGCDS_CLINICAL_SUPPRESSION_OTHER_REASON_DAYS", "30", 30, "thirty"),
]


def _value(settings: Settings, variable: str) -> Any:
    if variable.startswith("MGCDS_CLINICAL_"):
        return getattr(settings.clinical, variable.removeprefix("MGCDS_CLINICAL_").lower())
    return getattr(settings, variable.removeprefix("MGCDS_").lower())


def test_the_table_covers_every_variable() -> None:
    assert sorted(case[0] for case in CASES) == sorted(variable.name for variable in variables())


def test_every_clinical_threshold_has_a_parser() -> None:
    # The engine's dataclass knows nothing of the environment; a field added there must be parsed here.
    assert set(CLINICAL_PARSERS) == {f for f in ClinicalSettings.__dataclass_fields__}


@pytest.mark.parametrize(("variable", "raw", "expected", "bad"), CASES, ids=[case[0] for case in CASES])
def test_a_good_value_is_parsed(variable: str, raw: str, expected: Any, bad: str) -> None:
    settings = load_settings({variable: raw})
    assert _value(settings, variable) == expected


@pytest.mark.parametrize(("variable", "raw", "expected", "bad"), CASES, ids=[case[0] for case in CASES])
def test_a_bad_value_is_a_configuration_error_naming_the_variable(
    variable: str, raw: str, expected: Any, bad: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_settings({variable: bad})
    assert str(caught.value).startswith(f"{variable}: ")


def test_absent_variables_leave_the_defaults() -> None:
    assert load_settings({}) == Settings()


def test_variables_without_the_prefix_are_not_read() -> None:
    assert load_settings({"PORT": "1", "DEV": "1", "MGCDS_UNKNOWN": "x"}) == Settings()


def test_the_dev_review_link_cannot_come_from_the_environment() -> None:
    # Issue 18 item 3: only `mgcds serve --dev` makes one; no variable can turn it on in production.
    environ = {"MGCDS_DEV_REVIEW_TOKEN": "x" * 43, "MGCDS_DEV": "0"}
    assert load_settings(environ).dev_review_token == ""
    assert load_settings({**environ, "MGCDS_DEV": "1"}).dev_review_token == ""


def test_a_dev_review_link_outside_dev_mode_is_refused() -> None:
    from cds_service.config import validate

    with pytest.raises(ConfigurationError, match="only in development mode"):
        validate(Settings(dev=False, dev_review_token="t" * 43))
    validate(Settings(dev=True, dev_review_token="t" * 43))


def test_empty_optional_paths_mean_none() -> None:
    settings = load_settings({"MGCDS_TRUSTED_ISSUERS": "", "MGCDS_AUDIT_SPOOL_PATH": " "})
    assert settings.trusted_issuers is None
    assert settings.audit_spool_path is None


def test_the_ionized_interval_must_be_ordered() -> None:
    # Each bound parses on its own; only together are they wrong.
    with pytest.raises(ConfigurationError, match="MGCDS_CLINICAL_IONIZED_LOW_MMOL_L must be below"):
        load_settings({"MGCDS_CLINICAL_IONIZED_LOW_MMOL_L": "0.6", "MGCDS_CLINICAL_IONIZED_HIGH_MMOL_L": "0.5"})


def test_the_sqlite_default_and_the_spool_sit_in_the_instance_folder(tmp_path: Path) -> None:
    settings = load_settings({"MGCDS_INSTANCE_PATH": str(tmp_path)})
    assert settings.resolved_audit_url == f"sqlite:///{tmp_path.resolve() / 'audit.sqlite3'}"
    assert settings.resolved_spool_path == tmp_path / "audit-spool.jsonl"

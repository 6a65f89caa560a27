"""Settings: the one place that reads the environment (variables prefixed ``MGCDS_``).

Everything else receives a :class:`Settings` (or the part of it it needs) as an argument, so tests build their own
settings and never touch ``os.environ``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar

from cds_service.engine.settings import ClinicalSettings
from cds_service.errors import ConfigurationError

PREFIX = "MGCDS_"

T = TypeVar("T")


@dataclass(frozen=True)
class Settings:
    """All of MgCDS's configuration; build with :func:`load_settings` or directly in tests."""

    # Development mode: the only way to run without caller authentication (loud warning at start).
    dev: bool = False
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 2
    threads: int = 4
    # Most connections one worker holds (gunicorn's worker_connections). Workers accept greedily: with few
    # long-lived keep-alive clients one worker may take them all while the other idles (docs/performance.md).
    # A cap at or just above the expected client count spreads them, but a client beyond the total waits for
    # a free slot, so the default stays gunicorn's.
    worker_connections: int = 1000
    log_level: str = "INFO"
    # The externally visible base URL of this service (behind a proxy too); JWT `aud` is checked against it.
    public_base_url: str = "http://127.0.0.1:8080"
    instance_path: Path = Path("instance")
    # Audit store: SQLAlchemy URL; empty means a SQLite file in the instance folder.
    audit_url: str = ""
    audit_spool_path: Path | None = None
    audit_retention_days: int = 3650
    # Reviewer access to /audit: a bearer token, or basic auth with a password hash (werkzeug format).
    reviewer_token: str = ""
    reviewer_user: str = "reviewer"
    reviewer_password_hash: str = ""
    max_body_bytes: int = 5 * 1024 * 1024
    cors_origins: tuple[str, ...] = ()
    # FHIR client
    fhir_timeout_seconds: float = 5.0
    fhir_page_cap: int = 10
    fhir_cache_ttl_seconds: int = 60
    fhir_cache_size: int = 2048
    fhir_max_concurrency: int = 8
    fhir_max_entries: int = 5000
    # Security
    trusted_issuers: Path | None = None
    jwt_algorithms: tuple[str, ...] = ("ES384", "RS384")
    jwt_clock_skew_seconds: int = 60
    jwks_cache_ttl_seconds: int = 300
    # Remote terminology (FHIR terminology server or RxNav); empty: local value sets only.
    terminology_url: str = ""
    terminology_kind: str = "fhir"
    terminology_timeout_seconds: float = 2.0
    terminology_cache_ttl_seconds: int = 86400
    # Order hooks: how long an order-select card suppresses the same card at order-sign for the same draft.
    order_session_ttl_seconds: int = 1800
    # Benchmark only: mounts POST /bench/floor, the framework-cost floor of bench/run.py. Never on by default.
    bench_floor: bool = False
    clinical: ClinicalSettings = field(default_factory=ClinicalSettings)

    @property
    def resolved_audit_url(self) -> str:
        """The audit store URL, defaulting to a SQLite file in the instance folder."""
        if self.audit_url:
            return self.audit_url
        return f"sqlite:///{(self.instance_path / 'audit.sqlite3').resolve()}"

    @property
    def resolved_spool_path(self) -> Path:
        """Where audit records wait while the store is unreachable."""
        return self.audit_spool_path or (self.instance_path / "audit-spool.jsonl")

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with some fields changed (CLI flags, tests)."""
        return replace(self, **changes)


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"expected a boolean (1/0, true/false), got {raw!r}")


def _tuple(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _path(raw: str) -> Path:
    return Path(raw).expanduser()


_PARSERS: dict[str, Callable[[str], Any]] = {
    "bool": _bool,
    "int": int,
    "float": float,
    "str": str,
    "tuple[str, ...]": _tuple,
    "Path": _path,
    "Path | None": _path,
}


def _parse(name: str, type_name: str, raw: str) -> Any:
    parser = _PARSERS.get(type_name)
    if parser is None:  # pragma: no cover - a programming error caught by the unit tests
        raise ConfigurationError(f"no parser for setting type {type_name}")
    try:
        return parser(raw)
    except ValueError as exc:
        raise ConfigurationError(f"{PREFIX}{name.upper()}: {exc}") from exc


def _load_dataclass(cls: type[T], environ: Mapping[str, str], prefix: str) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for f in fields(cls):  # type: ignore[arg-type]
        if f.name == "clinical":
            continue
        key = f"{prefix}{f.name.upper()}"
        if key in environ:
            values[f.name] = _parse(f.name, str(f.type), environ[key])
    return values


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from ``MGCDS_*`` variables (clinical ones as ``MGCDS_CLINICAL_*``)."""
    env = os.environ if environ is None else environ
    clinical = ClinicalSettings(**_load_dataclass(ClinicalSettings, env, f"{PREFIX}CLINICAL_"))
    settings = Settings(clinical=clinical, **_load_dataclass(Settings, env, PREFIX))
    validate(settings)
    return settings


def validate(settings: Settings) -> None:
    """Reject settings that cannot work, with a message naming the variable."""
    if not 0 < settings.port < 65536:
        raise ConfigurationError(f"{PREFIX}PORT must be 1-65535, got {settings.port}")
    if settings.worker_connections < 1:
        raise ConfigurationError(f"{PREFIX}WORKER_CONNECTIONS must be at least 1")
    if settings.max_body_bytes <= 0:
        raise ConfigurationError(f"{PREFIX}MAX_BODY_BYTES must be positive")
    if settings.fhir_timeout_seconds <= 0:
        raise ConfigurationError(f"{PREFIX}FHIR_TIMEOUT_SECONDS must be positive")
    if settings.fhir_page_cap < 1:
        raise ConfigurationError(f"{PREFIX}FHIR_PAGE_CAP must be at least 1")
    if settings.terminology_kind not in {"fhir", "rxnav"}:
        raise ConfigurationError(f"{PREFIX}TERMINOLOGY_KIND must be 'fhir' or 'rxnav'")
    bad_algs = [a for a in settings.jwt_algorithms if a not in {"ES384", "RS384", "ES256", "RS256"}]
    if bad_algs:
        raise ConfigurationError(f"{PREFIX}JWT_ALGORITHMS: not allowed: {', '.join(bad_algs)} (never none or HMAC)")
    c = settings.clinical
    if not 0 < c.ionized_low_mmol_l < c.ionized_high_mmol_l:
        raise ConfigurationError(f"{PREFIX}CLINICAL_IONIZED_LOW_MMOL_L must be below ..._HIGH_MMOL_L")
    if c.serum_mg_test_loinc not in {"19123-9", "2601-3"}:
        raise ConfigurationError(f"{PREFIX}CLINICAL_SERUM_MG_TEST_LOINC must be 19123-9 or 2601-3")
    for name in ("magnesium_window_days", "renal_window_days", "alcohol_window_days"):
        if getattr(c, name) <= 0:
            raise ConfigurationError(f"{PREFIX}CLINICAL_{name.upper()} must be positive")

"""Settings: the one place that reads the environment (variables prefixed ``MGCDS_``).

Everything else receives a :class:`Settings` (or the part of it it needs) as an argument, so tests build their own
settings and never touch ``os.environ``.

Each field declares its own parser (``_setting(default, parser)`` keeps it in the field's metadata): the parser
turns the variable's text into the value or raises ValueError saying what is wrong, and :func:`load_settings`
turns that into a :class:`ConfigurationError` naming the variable. The clinical thresholds live in the pure engine
(:class:`ClinicalSettings`), which knows nothing of the environment, so their parsers are listed here in
:data:`CLINICAL_PARSERS`. Checks across fields (the ionized interval) are in :func:`validate`.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import Field, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar

from cds_service.engine.settings import ClinicalSettings
from cds_service.errors import ConfigurationError

PREFIX = "MGCDS_"
CLINICAL_PREFIX = f"{PREFIX}CLINICAL_"

T = TypeVar("T")
Parser = Callable[[str], Any]
_PARSER_KEY = "mgcds.parser"

# Algorithms a CDS Hooks JWT may use (spec: asymmetric only, ES384/RS384 recommended); never none or HMAC.
ALLOWED_JWT_ALGORITHMS = frozenset({"ES384", "RS384", "ES256", "RS256"})
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_LOINC = re.compile(r"^\d{1,7}-\d$")  # LOINC codes: digits, a hyphen, one check digit


# --- parsers: text in, value out, ValueError saying what is wrong -------------------------------------------------


def boolean(raw: str) -> bool:
    """1/0, true/false, yes/no, on/off (empty is false)."""
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"expected a boolean (1/0, true/false), got {raw!r}")


def integer(minimum: int | None = None, maximum: int | None = None) -> Callable[[str], int]:
    """A parser of whole numbers within [minimum, maximum]."""

    def parse(raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ValueError(f"expected a whole number, got {raw!r}") from None
        if minimum is not None and value < minimum:
            raise ValueError(f"must be at least {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise ValueError(f"must be at most {maximum}, got {value}")
        return value

    return parse


def optional_integer(minimum: int | None = None, maximum: int | None = None) -> Callable[[str], int | None]:
    """A parser of whole numbers within [minimum, maximum], or None for an empty value."""
    parse_integer = integer(minimum, maximum)

    def parse(raw: str) -> int | None:
        return parse_integer(raw) if raw.strip() else None

    return parse


def positive_number(raw: str) -> float:
    """A finite number above zero (timeouts, concentrations)."""
    try:
        value = float(raw.strip())
    except ValueError:
        raise ValueError(f"expected a number, got {raw!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"must be a finite number above 0, got {raw!r}")
    return value


def text(raw: str) -> str:
    """Any single-line text (a control character is a copy-paste accident, not a value)."""
    if _CONTROL.search(raw):
        raise ValueError("contains a control character (a newline or tab?)")
    return raw


def non_empty_text(raw: str) -> str:
    """Single-line text that is not blank."""
    value = text(raw).strip()
    if not value:
        raise ValueError("must not be empty")
    return value


def choice(*allowed: str) -> Callable[[str], str]:
    """A parser accepting one of ``allowed`` (case-insensitive, given back as listed)."""

    def parse(raw: str) -> str:
        for option in allowed:
            if raw.strip().lower() == option.lower():
                return option
        raise ValueError(f"must be one of {', '.join(allowed)}, got {raw!r}")

    return parse


def comma_list(raw: str) -> tuple[str, ...]:
    """Comma-separated items, blanks dropped."""
    return tuple(part.strip() for part in text(raw).split(",") if part.strip())


def path(raw: str) -> Path:
    """A file system path (``~`` expanded)."""
    return Path(non_empty_text(raw)).expanduser()


def optional_path(raw: str) -> Path | None:
    """A path, or None when empty."""
    return path(raw) if raw.strip() else None


def http_url(raw: str) -> str:
    """An absolute http(s) URL."""
    value = non_empty_text(raw)
    scheme, sep, rest = value.partition("://")
    if not sep or scheme.lower() not in {"http", "https"} or not rest or rest.startswith("/"):
        raise ValueError(f"expected an absolute http(s) URL, got {raw!r}")
    return value


def optional_http_url(raw: str) -> str:
    """An absolute http(s) URL, or empty for none."""
    return http_url(raw) if raw.strip() else ""


def audit_url(raw: str) -> str:
    """A SQLAlchemy URL of a SQLite or PostgreSQL audit store, or empty for the default SQLite file."""
    value = text(raw).strip()
    if not value:
        return ""
    scheme, sep, _ = value.partition("://")
    if not sep or scheme.split("+", 1)[0].lower() not in {"sqlite", "postgresql", "postgres"}:
        raise ValueError(f"expected a sqlite:// or postgresql:// URL, got {scheme + sep or value!r}")
    return value


def jwt_algorithms(raw: str) -> tuple[str, ...]:
    """A non-empty comma-separated subset of the asymmetric JWT algorithms."""
    names = tuple(name.upper() for name in comma_list(raw))
    if not names:
        raise ValueError("at least one algorithm is needed")
    refused = [name for name in names if name not in ALLOWED_JWT_ALGORITHMS]
    if refused:
        raise ValueError(f"not allowed: {', '.join(refused)} (never none or HMAC)")
    return names


def log_level(raw: str) -> str:
    """A logging level name."""
    return choice(*LOG_LEVELS)(raw)


def password_hash(raw: str) -> str:
    """A werkzeug password hash (``scrypt:...$salt$hash``), or empty for none: never the password itself."""
    value = text(raw).strip()
    if not value:
        return ""
    method = value.split("$", 1)[0].split(":", 1)[0]
    if value.count("$") != 2 or method not in {"scrypt", "pbkdf2"}:
        raise ValueError("not a werkzeug password hash (make one with werkzeug.security.generate_password_hash)")
    return value


def rate_limits(raw: str) -> str:
    """One or more rates in the ``limits`` package's notation, ``;``-separated: ``5/minute;30/hour``."""
    from limits import parse_many

    value = non_empty_text(raw)
    try:
        parse_many(value)
    except ValueError:
        raise ValueError(f"expected rates such as 5/minute;30/hour, got {raw!r}") from None
    return value


def loinc(raw: str) -> str:
    """A LOINC code (``19123-9``)."""
    value = raw.strip()
    if not _LOINC.fullmatch(value):
        raise ValueError(f"not a LOINC code, got {raw!r}")
    return value


def _setting(default: T, parser: Callable[[str], T]) -> T:
    """A Settings field with its default and the parser of its variable."""
    return field(default=default, metadata={_PARSER_KEY: parser})


@dataclass(frozen=True)
class Settings:
    """All of MgCDS's configuration; build with :func:`load_settings` or directly in tests."""

    # Development mode: the only way to run without caller authentication (loud warning at start).
    dev: bool = _setting(False, boolean)
    host: str = _setting("127.0.0.1", non_empty_text)
    port: int = _setting(8080, integer(1, 65535))
    workers: int = _setting(2, integer(1))
    threads: int = _setting(4, integer(1))
    # Most connections one worker holds (gunicorn's worker_connections). Workers accept greedily: with few
    # long-lived keep-alive clients one worker may take them all while the other idles (docs/performance.md).
    # A cap at or just above the expected client count spreads them, but a client beyond the total waits for
    # a free slot, so the default stays gunicorn's.
    worker_connections: int = _setting(1000, integer(1))
    # One listening socket per worker (SO_REUSEPORT), the kernel spreading connections over them; off: one shared
    # socket, accepted greedily (docs/performance.md, round 2).
    reuse_port: bool = _setting(True, boolean)
    log_level: str = _setting("INFO", log_level)
    # The externally visible base URL of this service (behind a proxy too); JWT `aud` is checked against it.
    public_base_url: str = _setting("http://127.0.0.1:8080", http_url)
    instance_path: Path = _setting(Path("instance"), path)
    # Audit store: SQLAlchemy URL; empty means a SQLite file in the instance folder.
    audit_url: str = _setting("", audit_url)
    audit_spool_path: Path | None = _setting(None, optional_path)
    audit_retention_days: int = _setting(3650, integer(1))
    # Spool fsync policy: "off" survives any process kill (the kernel holds the page cache); "always" also survives
    # power loss, at a measured cost per call (docs/audit.md).
    audit_fsync: str = _setting("off", choice("off", "always"))
    # Longest wait for the audit store (statement, lock, stalled network) before the attempt is abandoned and logged.
    audit_store_timeout_seconds: float = _setting(10.0, positive_number)
    # /readyz: degraded when a record has waited longer than this; not ready below this much free spool space.
    audit_backlog_max_age_seconds: float = _setting(60.0, positive_number)
    audit_spool_min_free_bytes: int = _setting(32 * 1024 * 1024, integer(0))
    # Reviewer access to /audit: a bearer token, or basic auth with a password hash (werkzeug format).
    reviewer_token: str = _setting("", text)
    reviewer_user: str = _setting("reviewer", non_empty_text)
    reviewer_password_hash: str = _setting("", password_hash)
    # Checks of a reviewer credential not already verified, per client address and for all clients together
    # (each check may cost a scrypt hash; beyond either budget a check is 429 before any hashing: issue 16 B11).
    # Kept in each worker process's memory: with N workers, N times these (docs/security.md).
    reviewer_auth_client_limit: str = _setting("5/minute;30/hour", rate_limits)
    reviewer_auth_global_limit: str = _setting("1/second;20/minute", rate_limits)
    max_body_bytes: int = _setting(5 * 1024 * 1024, integer(1))
    cors_origins: tuple[str, ...] = _setting((), comma_list)
    # FHIR client
    fhir_timeout_seconds: float = _setting(5.0, positive_number)
    fhir_page_cap: int = _setting(10, integer(1))
    fhir_cache_ttl_seconds: int = _setting(60, integer(0))
    fhir_cache_size: int = _setting(2048, integer(1))
    fhir_max_concurrency: int = _setting(8, integer(1))
    fhir_max_entries: int = _setting(5000, integer(1))
    # Security
    trusted_issuers: Path | None = _setting(None, optional_path)
    jwt_algorithms: tuple[str, ...] = _setting(("ES384", "RS384"), jwt_algorithms)
    jwt_clock_skew_seconds: int = _setting(60, integer(0))
    jwks_cache_ttl_seconds: int = _setting(300, integer(0))
    # Security round 2 (issue 16; docs/security.md). All FHIR reads of one hook call share one deadline, well inside
    # the EHR's patience, and one byte allowance; the cache is bounded by bytes as well as entries.
    fhir_call_budget_seconds: float = _setting(8.0, positive_number)
    fhir_call_max_bytes: int = _setting(16 * 1024 * 1024, integer(1024))
    fhir_cache_max_bytes: int = _setting(16 * 1024 * 1024, integer(0))
    # A CDS Hooks JWT may live this long past its iat (the spec recommends five minutes).
    jwt_max_lifetime_seconds: int = _setting(300, integer(1))
    # Remote terminology (FHIR terminology server or RxNav); empty: local value sets only.
    terminology_url: str = _setting("", optional_http_url)
    terminology_kind: str = _setting("fhir", choice("fhir", "rxnav"))
    terminology_timeout_seconds: float = _setting(2.0, positive_number)
    terminology_cache_ttl_seconds: int = _setting(86400, integer(0))
    # Order hooks: how long an order-select card suppresses the same card at order-sign for the same draft.
    order_session_ttl_seconds: int = _setting(1800, integer(0))
    # gunicorn's control socket (gunicornc): empty for `<instance>/gunicorn-<port>.ctl`, one per service, so two
    # services on one host never share gunicorn's default path; "off" for none.
    control_socket: str = _setting("", text)
    # Benchmark only: mounts POST /bench/floor, the framework-cost floor of bench/run.py. Never on by default.
    bench_floor: bool = _setting(False, boolean)
    clinical: ClinicalSettings = field(default_factory=ClinicalSettings)
    # The one-time link to /audit printed by `mgcds serve --dev` (generated there, before gunicorn forks, so every
    # worker knows it). Never read from the environment, and ignored unless ``dev`` is on (issue 18 item 3).
    dev_review_token: str = field(default="", repr=False)

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


# The engine's thresholds (cds_service.engine.settings knows nothing of the environment): MGCDS_CLINICAL_<FIELD>.
CLINICAL_PARSERS: Mapping[str, Parser] = {
    "magnesium_window_days": integer(1),
    "renal_window_days": integer(1),
    "alcohol_window_days": integer(1),
    "ionized_low_mmol_l": positive_number,
    "ionized_high_mmol_l": positive_number,
    "serum_mg_test_loinc": choice("19123-9", "2601-3"),
    "ionized_mg_test_loinc": loinc,
    "supplement_elemental_mg_per_day": integer(1),
    # 0 turns a suppression off; the recent-result-elsewhere period is the magnesium window unless set.
    "suppression_accepted_days": integer(0, 3650),
    "suppression_already_addressed_days": integer(0, 3650),
    "suppression_recent_result_elsewhere_days": optional_integer(0, 3650),
    "suppression_patient_declined_days": integer(0, 3650),
    "suppression_not_clinically_relevant_days": integer(0, 3650),
    "suppression_other_reason_days": integer(0, 3650),
}


@dataclass(frozen=True)
class Variable:
    """One environment variable: its name, the field it sets and that field's parser."""

    name: str
    attribute: str
    parser: Parser
    clinical: bool = False


def _settings_fields() -> Iterator[Field[Any]]:
    for f in fields(Settings):
        if _PARSER_KEY in f.metadata:  # clinical has its own variables; dev_review_token has none
            yield f


def variables() -> list[Variable]:
    """Every variable :func:`load_settings` reads, in declaration order."""
    found = [Variable(f"{PREFIX}{f.name.upper()}", f.name, f.metadata[_PARSER_KEY]) for f in _settings_fields()]
    for f in fields(ClinicalSettings):
        parser = CLINICAL_PARSERS.get(f.name)
        if parser is None:  # a new clinical threshold needs a parser here before it can be configured
            raise ConfigurationError(f"no parser for {CLINICAL_PREFIX}{f.name.upper()} in CLINICAL_PARSERS")
        found.append(Variable(f"{CLINICAL_PREFIX}{f.name.upper()}", f.name, parser, clinical=True))
    return found


def _parse(variable: Variable, raw: str) -> Any:
    try:
        return variable.parser(raw)
    except ValueError as exc:
        raise ConfigurationError(f"{variable.name}: {exc}") from exc


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from ``MGCDS_*`` variables (clinical ones as ``MGCDS_CLINICAL_*``)."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    clinical: dict[str, Any] = {}
    for variable in variables():
        if variable.name in env:
            (clinical if variable.clinical else values)[variable.attribute] = _parse(variable, env[variable.name])
    settings = Settings(clinical=ClinicalSettings(**clinical), **values)
    validate(settings)
    return settings


def validate(settings: Settings) -> None:
    """Reject combinations of settings that cannot work, with a message naming the variables."""
    if settings.dev_review_token and not settings.dev:
        raise ConfigurationError("a development review link exists only in development mode (mgcds serve --dev)")
    c = settings.clinical
    if not 0 < c.ionized_low_mmol_l < c.ionized_high_mmol_l:
        raise ConfigurationError(
            f"{CLINICAL_PREFIX}IONIZED_LOW_MMOL_L must be below {CLINICAL_PREFIX}IONIZED_HIGH_MMOL_L "
            f"(got {c.ionized_low_mmol_l} and {c.ionized_high_mmol_l})"
        )

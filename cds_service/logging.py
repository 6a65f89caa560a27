"""Structured logging: one JSON object per line on stderr, with tokens redacted as a last line of defence.

Log lines say what happened to which call (hookInstance, service id, card uuids, timings, outcome), never
who the patient is, what their values are, or which token was presented. Two guards enforce it:

- only fields in :data:`SAFE_FIELDS` passed through ``extra=`` are written; any other extra key is dropped and
  its name listed under ``dropped_fields`` (so a mistake is visible without leaking the value);
- :class:`RedactingFilter` rewrites bearer tokens, JWT-shaped strings and ``access_token`` values in the
  message, its arguments, string extras and exception text before any handler formats the record.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Iterable
from typing import Any

REDACTED = "[REDACTED]"

# Extra fields a log line may carry: ids of the call and its cards, timings, outcomes. No patient data.
SAFE_FIELDS = frozenset(
    {
        "event",
        "hook_instance",
        "hookInstance",
        "service_id",
        "serviceId",
        "hook",
        "card_uuids",
        "cardUuids",
        "card_count",
        "duration_ms",
        "timings",
        "status",
        "http_status",
        "method",
        "path",
        "reason",
        "issuer",
        "tenant",
        "key_id",
        "request_id",
        "fhir_kind",
        "fhir_status",
        "outcome",
        "count",
        "component",
    }
)

_STANDARD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}
_HANDLER_NAME = "mgcds-json"

_PATTERNS = (
    # Authorization headers and anything else shaped "Bearer <token>".
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9\-._~+/]+=*"), r"\1 " + REDACTED),
    # Any JWS/JWT compact serialisation: base64url JSON header ("eyJ") and two more segments.
    (re.compile(r"\beyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*"), REDACTED),
    # access_token / refresh_token / id_token / client_secret values in JSON, query strings or reprs.
    (
        re.compile(
            r"(?i)([\"']?(?:access_token|refresh_token|id_token|client_secret)[\"']?\s*[:=]\s*[\"']?)[^\"'&\s,}]+"
        ),
        r"\1" + REDACTED,
    ),
)


def redact(text: str) -> str:
    """The text with bearer tokens, JWT-shaped strings and token fields replaced by ``[REDACTED]``."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list | tuple):
        return [_redact_value(item) for item in value]
    if isinstance(value, dict):
        return {key: _redact_value(item) for key, item in value.items()}
    return value


class RedactingFilter(logging.Filter):
    """Rewrites every record so that no token survives in its message, arguments, extras or exception text."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact the record in place; never drops it."""
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            message = f"{record.msg!r} (unformattable arguments)"
        record.msg = redact(message)
        record.args = None
        for key, value in list(record.__dict__.items()):
            if key not in _STANDARD_ATTRS:
                record.__dict__[key] = _redact_value(value)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        record.exc_info = None
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message and the allowlisted extra fields."""

    def __init__(self, safe_fields: Iterable[str] = SAFE_FIELDS) -> None:
        super().__init__()
        self._safe_fields = frozenset(safe_fields)

    def format(self, record: logging.LogRecord) -> str:
        """The record as a single JSON line (already redacted by the filter; redacted again here)."""
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        dropped: list[str] = []
        for key, value in record.__dict__.items():
            if key in _STANDARD_ATTRS or key.startswith("_"):
                continue
            if key in self._safe_fields:
                line[key] = value
            else:
                dropped.append(key)
        if dropped:
            line["dropped_fields"] = sorted(dropped)
        if record.exc_text:
            line["exception"] = record.exc_text
        elif record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return redact(json.dumps(line, default=str, ensure_ascii=False))


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time of each record (test runners and servers swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> Any:
        """The current ``sys.stderr``."""
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        return  # always the current sys.stderr


def build_handler(stream: Any = None) -> logging.Handler:
    """A stderr (or ``stream``) handler with the JSON formatter and the redacting filter."""
    handler = logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactingFilter())
    return handler


def logging_configured() -> bool:
    """True when :func:`configure_logging` has installed its handler on the root logger."""
    return any(handler.get_name() == _HANDLER_NAME for handler in logging.getLogger().handlers)


def configure_logging(level: str, *, stream: Any = None) -> None:
    """Send all logging to stderr as redacted JSON lines at ``level``; safe to call more than once."""
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    root = logging.getLogger()
    for existing in list(root.handlers):
        if existing.get_name() == _HANDLER_NAME:
            root.removeHandler(existing)
    root.addHandler(build_handler(stream))
    root.setLevel(numeric)
    # urllib3 logs full URLs at DEBUG; FHIR query strings can carry patient ids.
    logging.getLogger("urllib3").setLevel(max(numeric, logging.INFO))

"""Structured logging (issue 6 item 6): JSON lines, allowlisted fields only, tokens redacted."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from cds_service.logging import REDACTED, configure_logging, redact

# A syntactically valid JWT (header {"alg":"ES384","typ":"JWT"}), not signed by anything real.
FAKE_JWT = "eyJhbGciOiJFUzM4NCIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJodHRwczovL2Voci5leGFtcGxlLm9yZyJ9.c2lnbmF0dXJlLWJ5dGVz"
FAKE_ACCESS_TOKEN = "opaque-access-token-8f2b1c"  # noqa: S105 - a test value


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    """configure_logging into a buffer; the root logger is restored afterwards."""
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    stream = io.StringIO()
    configure_logging("INFO", stream=stream)
    yield stream
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    """Every log line, parsed (each must be one JSON object)."""
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_one_json_object_per_line_with_safe_fields(log_stream: io.StringIO) -> None:
    logging.getLogger("cds_service.test").info(
        "cards returned",
        extra={
            "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
            "service_id": "mg-patient-view",
            "card_uuids": ["u1"],
            "duration_ms": 12.5,
        },
    )
    (line,) = lines(log_stream)
    assert line["message"] == "cards returned"
    assert line["level"] == "INFO"
    assert line["hookInstance"] == "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea"
    assert line["service_id"] == "mg-patient-view"
    assert line["card_uuids"] == ["u1"]
    assert line["duration_ms"] == 12.5


def test_unlisted_fields_are_dropped_by_name_only(log_stream: io.StringIO) -> None:
    logging.getLogger("cds_service.test").info("x", extra={"patient_name": "Alfreda Wyman", "mg_value": 0.61})
    (line,) = lines(log_stream)
    assert line["dropped_fields"] == ["mg_value", "patient_name"]
    assert "Alfreda" not in log_stream.getvalue()
    assert "0.61" not in log_stream.getvalue()


@pytest.mark.parametrize(
    "text",
    [
        f"Authorization: Bearer {FAKE_JWT}",
        f"authorization: bearer {FAKE_ACCESS_TOKEN}",
        f"token={FAKE_JWT}",
        f'{{"access_token": "{FAKE_ACCESS_TOKEN}", "token_type": "Bearer"}}',
        f"https://ehr.example.org/fhir?access_token={FAKE_ACCESS_TOKEN}&x=1",
    ],
)
def test_redact(text: str) -> None:
    redacted = redact(text)
    assert FAKE_JWT not in redacted
    assert FAKE_ACCESS_TOKEN not in redacted
    assert REDACTED in redacted


def test_tokens_are_redacted_from_message_args_extras_and_exceptions(log_stream: io.StringIO) -> None:
    log = logging.getLogger("cds_service.test")
    log.warning("header was %s", f"Bearer {FAKE_JWT}")
    log.info("fhirAuthorization", extra={"reason": f"access_token={FAKE_ACCESS_TOKEN}"})
    try:
        raise ValueError(f"bad token {FAKE_JWT}")
    except ValueError:
        log.exception("failed")
    text = log_stream.getvalue()
    assert FAKE_JWT not in text
    assert FAKE_ACCESS_TOKEN not in text
    assert len(lines(log_stream)) == 3
    assert "ValueError" in lines(log_stream)[2]["exception"]


def test_configure_twice_keeps_one_handler(log_stream: io.StringIO) -> None:
    configure_logging("WARNING", stream=log_stream)
    logging.getLogger("cds_service.test").warning("once")
    assert len(lines(log_stream)) == 1


def test_unknown_level_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown log level"):
        configure_logging("LOUD")

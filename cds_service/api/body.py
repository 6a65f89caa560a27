"""Request bodies: media type, size and JSON syntax checked at the edge (415, 413, 400), before any parsing.

The size limit holds whatever the framing. With ``Content-Length`` the header says it; a chunked body (or any body
the server terminates itself) has no length to check up front, and werkzeug's stream stops quietly at the limit, so
a body read up to exactly the limit could be the first part of a larger one (5 MiB of valid JSON followed by junk
was parsed and answered 200). The limit for the stream is therefore one byte more than ours: reading that byte
means the body is over the limit.
"""

from __future__ import annotations

import json
import re
from typing import Any

import msgspec
from flask import current_app, request

from cds_service.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType


def _reject_constant(name: str) -> Any:
    # NaN and Infinity are not JSON (RFC 8259); Python's parser would accept them.
    raise ValueError(f"{name} is not valid JSON")


# A \uD800-\uDFFF escape: only then can the parsed body hold a lone surrogate (raw UTF-8 cannot encode one).
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def _has_lone_surrogate(value: Any) -> bool:
    """True when a string (or key) anywhere in ``value`` holds an unpaired surrogate (not valid Unicode text)."""
    stack = [value]
    while stack:  # iterative: the body may be nested as deeply as the parser allows
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _parse_json_stdlib(raw: bytes) -> Any:
    try:
        text = raw.decode("utf-8")
        return json.loads(text, parse_constant=_reject_constant)
    except UnicodeDecodeError as exc:
        raise BadRequest("the body is not UTF-8", field="body") from exc
    except RecursionError as exc:
        raise BadRequest("the JSON body is nested too deeply", field="body") from exc
    except ValueError as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}", field="body") from exc


_fast_decoder = msgspec.json.Decoder()


def read_body(limit: int) -> bytes:
    """The raw request body, PayloadTooLarge (413) when it is over ``limit`` bytes however it was framed."""
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"request body is larger than {limit} bytes")
    # One byte past our limit, for the stream: a body that fills it is over the limit (set before the stream opens).
    request.max_content_length = limit + 1
    raw = request.get_data(cache=True)
    if len(raw) > limit:
        raise PayloadTooLarge(f"request body is larger than {limit} bytes")
    return raw


def read_json_body(limit: int | None = None) -> Any:
    """The request body as JSON, with 415/413/400 for the wrong media type, size or syntax.

    ``limit`` defaults to the service's ``MGCDS_MAX_BODY_BYTES``.
    """
    mimetype = request.mimetype or ""
    if mimetype != "application/json" and not mimetype.endswith("+json"):
        raise UnsupportedMediaType("the body must be JSON (Content-Type: application/json)")
    if limit is None:
        limit = int(current_app.extensions["mgcds.settings"].max_body_bytes)
    return parse_json(read_body(limit))


def parse_json(raw: bytes) -> Any:
    """A request body's bytes as JSON; BadRequest (400) naming what is wrong with it.

    msgspec reads the body (about half the CPU of the standard library's parser on a 45 KB prefetch); whatever it
    refuses is read again by the standard library, whose answer, value or refusal, is the API's, exactly as before
    the switch: msgspec refuses everything ``json.loads`` refuses (NaN, a byte order mark, bad UTF-8, control
    characters) and some documents ``json.loads`` reads (numbers beyond a double, which read as infinity; integers
    past msgspec's range). Where both read a document they give the same value (tests/unit/test_json_body.py).
    """
    try:
        body = _fast_decoder.decode(raw)
    except (msgspec.DecodeError, RecursionError):
        body = _parse_json_stdlib(raw)
    # A lone surrogate escape (e.g. "\\ud800") is legal JSON syntax but not text (RFC 8259 section 8.2): it could not
    # be written to the audit log or any UTF-8 store, so the request is refused here rather than failing later.
    if _SURROGATE_ESCAPE.search(raw) and _has_lone_surrogate(body):
        raise BadRequest("the body contains an unpaired UTF-16 surrogate escape (not valid Unicode)", field="body")
    return body

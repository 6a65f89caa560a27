"""Text from the EHR made safe for a card: markdown and HTML inert, one line, bounded length.

Drug names, displays, ids, values and notes come from the EHR; escaped here, they cannot inject markup into the card
(the detail is markdown) nor a multi-megabyte string into every card (issue 6 item 4, huge strings).
"""

from __future__ import annotations

import re

_MARKDOWN_SPECIALS = re.compile(r"([\\`*_{}\[\]()#+\-.!|~])")
_WHITESPACE = re.compile(r"\s+")

# Input text (drug names, displays, ids, notes) is shown at most this long: a multi-megabyte display from the EHR
# must not be echoed into every card (issue 6 item 4, huge strings).
MAX_INPUT_TEXT_CHARS = 300


def _printable(text: str) -> str:
    # Most text is printable already: skip the per-character pass then (performance; same result).
    return text if text.isprintable() else "".join(ch if ch.isprintable() else " " for ch in text)


def escape_markdown(text: str, limit: int = MAX_INPUT_TEXT_CHARS) -> str:
    """Make input text inert in markdown and HTML: one line, at most ``limit`` characters, markdown specials
    escaped, <>& as entities."""
    # Only a bounded prefix is examined: a multi-megabyte input must not cost a pass over all of it.
    flat = _WHITESPACE.sub(" ", _printable(text[: limit * 4])).strip()
    if len(flat) > limit or len(text) > limit * 4:
        flat = flat[: limit - 3].rstrip() + "..."
    escaped = _MARKDOWN_SPECIALS.sub(r"\\\1", flat)
    return escaped.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def plain_text(text: str, limit: int) -> str:
    """Input text for a plain-text summary: one line, no markup characters, at most ``limit`` characters."""
    # Only a bounded prefix is examined: a multi-megabyte input must not cost a pass over all of it.
    flat = _WHITESPACE.sub(" ", _printable(text[: limit * 4])).strip()
    flat = re.sub(r"[<>*_`\[\]#|~\\]", "", flat)
    return flat if len(flat) <= limit and len(text) <= limit * 4 else flat[: limit - 3].rstrip() + "..."

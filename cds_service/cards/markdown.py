"""Text from the EHR made safe for a card: markdown and HTML inert, one line, bounded length.

Drug names, displays, ids, values and units come from the EHR; escaped here, they cannot inject markup into the card
(the detail is GitHub-flavoured markdown) nor a multi-megabyte string into every card (issue 6 item 4, huge strings).

Escaping is as light as inertness allows (issue 15): a backslash before every "." or "-" rendered fine but left
``\\.`` inside autolinked URLs (``http://www%5C.nlm...``) and in clients that show the text raw. Only the characters
that can open markup mid-line are escaped; what GFM would turn into a link (``scheme://``, ``www.``, an e-mail
address) is broken up so that it stays text. EHR text never starts a line in a card; a leading block marker is
escaped anyway.
"""

from __future__ import annotations

import re

# Inline markup a GFM renderer reads anywhere in a line: emphasis, code, links and images, tables, strikethrough.
_INLINE_SPECIALS = re.compile(r"([\\`*_\[\]|~])")
# Markers that only mean something at the start of a line (headings, lists, quotes, thematic breaks).
_LEADING_BLOCK = re.compile(r"^(\d*)([#+\-=.)])(?=\s|$)")
# GFM's extended autolinks: "scheme://" (the "//" escaped stops it), "www." (the dot escaped stops it).
_SCHEME_SLASHES = re.compile(r":(?=//)")
_WWW = re.compile(r"(?i)\b(www)\.")
# An e-mail autolink is found after escapes are resolved, so no escape stops it: the "@" is replaced by the
# full-width commercial at (U+FF20), which reads the same and links to nothing.
_AT = "\uff20"
_WHITESPACE = re.compile(r"\s+")

# Input text (drug names, displays, ids, notes) is shown at most this long: a multi-megabyte display from the EHR
# must not be echoed into every card (issue 6 item 4, huge strings).
MAX_INPUT_TEXT_CHARS = 300


def _printable(text: str) -> str:
    # Most text is printable already: skip the per-character pass then (performance; same result).
    return text if text.isprintable() else "".join(ch if ch.isprintable() else " " for ch in text)


def _one_line(text: str, limit: int) -> str:
    # Only a bounded prefix is examined: a multi-megabyte input must not cost a pass over all of it.
    flat = _WHITESPACE.sub(" ", _printable(text[: limit * 4])).strip()
    if len(flat) > limit or len(text) > limit * 4:
        flat = flat[: limit - 3].rstrip() + "..."
    return flat


def escape_markdown(text: str, limit: int = MAX_INPUT_TEXT_CHARS) -> str:
    """Make input text inert in GFM and HTML: one line, at most ``limit`` characters, no markup, no autolink."""
    flat = _one_line(text, limit)
    escaped = _INLINE_SPECIALS.sub(r"\\\1", flat)
    escaped = _LEADING_BLOCK.sub(r"\1\\\2", escaped)
    escaped = _SCHEME_SLASHES.sub(r":\\", escaped)
    escaped = _WWW.sub(r"\1\\.", escaped).replace("@", _AT)
    return escaped.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def plain_text(text: str, limit: int) -> str:
    """Input text for a plain-text summary: one line, no markup characters, at most ``limit`` characters."""
    # Only a bounded prefix is examined: a multi-megabyte input must not cost a pass over all of it.
    flat = _WHITESPACE.sub(" ", _printable(text[: limit * 4])).strip()
    flat = re.sub(r"[<>*_`\[\]#|~\\]", "", flat)
    return flat if len(flat) <= limit and len(text) <= limit * 4 else flat[: limit - 3].rstrip() + "..."

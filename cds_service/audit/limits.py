"""How long each value may be, in the API and in the store: one number per field, so that they cannot disagree.

Issue 16 (B8): the API accepted a 100-character card id that the 64-character column refused, and the writer then
retried that batch forever. The API models (``cds_service.cdshooks``) and the store columns
(``cds_service.audit.schema``) both read these numbers, and ``tests/unit/audit/test_limits.py`` checks that every
value the API accepts fits its column. Plain constants and one compiled pattern: importing this loads nothing else.
"""

from __future__ import annotations

import re

RECORD_ID_COLUMN = 64  # record ids are uuid4 hex (32)
CARD_ID_MAX = 64  # a feedback item's ``card``: our card uuids have 36 characters
CARD_ID_COLUMN = 64
SERVICE_ID_COLUMN = 128  # a URL path segment; ids of unknown services (answered 404) are cut to this in the record
CONTEXT_ID_MAX = 200  # userId, patientId, encounterId (FHIR ids are at most 64; references are longer)
CONTEXT_ID_COLUMN = 256
HOOK_INSTANCE_MAX = 200  # hookInstance: the spec's UUID, but any text this long is accepted
HOOK_INSTANCE_COLUMN = 256
OUTCOME_COLUMN = 32  # "accepted" or "overridden"
RECOMMENDATION_COLUMN = 64  # our own recommendation codes
INDICATOR_COLUMN = 16  # info, warning, critical
REASON_CODE_MAX = 200  # an override reason's code
REASON_CODE_COLUMN = 200
REASON_SYSTEM_MAX = 500  # an override reason's system
REASON_SYSTEM_COLUMN = 500
KEY_COLUMN = 64  # SHA-256 hex of (issuer, tenant, service or patient): fixed width whatever the caller's claims
TIMESTAMP_COLUMN = 32

# Characters PostgreSQL text cannot hold (NUL), and the other C0 controls and DEL, which no identifier has: an id
# containing one is refused with 400 (a NUL in patientId stopped the PostgreSQL store before).
CONTROL_CHARACTERS = "".join(chr(c) for c in range(0x20)) + "\x7f"
NO_CONTROL_PATTERN = r"^[^\x00-\x1f\x7f]*$"
# The same set as a compiled search: on every hook call and every stored value, a scan in C instead of a Python
# generator over the characters (performance; tests/unit/audit/test_limits.py compares the two definitions).
_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")


def has_control_character(value: str) -> bool:
    """True when ``value`` holds one of CONTROL_CHARACTERS."""
    return _CONTROL_CHARACTER.search(value) is not None

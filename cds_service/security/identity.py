"""Who called: the identity a verified CDS Hooks JWT proves (plain data, named by the seams in interfaces.py)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CallerIdentity:
    """The verified issuer and the claims the rest of the service may use."""

    issuer: str
    subject: str | None
    tenant: str | None
    jti: str
    key_id: str | None

"""Recommendations -> CDS Hooks 2.0 cards (clinical-rules.md sections 7 and 8).

``assemble.build_cards`` builds one card per recommendation; ``wording`` holds every text, ``markdown`` makes EHR
text inert, ``suggestions`` turns suggestion specs into FHIR R4 resources and validates them.
"""

from __future__ import annotations

from cds_service.cards.assemble import build_cards
from cds_service.cards.markdown import escape_markdown, plain_text
from cds_service.cards.suggestions import CardBuildError, medication_request, service_request

__all__ = ["CardBuildError", "build_cards", "escape_markdown", "medication_request", "plain_text", "service_request"]

"""MgCDS decision engine: pure functions from facts and `now` to an assessment, then to recommendations (no I/O).

``assess`` (``engine.assessment``) draws the conclusions; ``engine.recommend.recommend`` turns them into
recommendations. The recommendation function is not re-exported here: it would shadow its own package.
"""

from __future__ import annotations

from cds_service.engine.assessment import Assessment, assess, assessment_to_dict
from cds_service.engine.settings import ClinicalSettings
from cds_service.engine.vocabulary import RULES_VERSION

__all__ = ["RULES_VERSION", "Assessment", "ClinicalSettings", "assess", "assessment_to_dict"]

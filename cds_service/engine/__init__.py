"""MgCDS decision engine: pure functions from facts and `now` to an assessment (no I/O)."""

from __future__ import annotations

from cds_service.engine.assessment import Assessment, assess, assessment_to_dict
from cds_service.engine.recommend import recommend
from cds_service.engine.settings import ClinicalSettings

__all__ = ["Assessment", "ClinicalSettings", "assess", "assessment_to_dict", "recommend"]

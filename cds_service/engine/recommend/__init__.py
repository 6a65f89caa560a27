"""Recommendations: from an assessment (and the facts it came from) to what the cards will advise.

``recommend`` dispatches by hook: section 7 of clinical-rules.md for patient-view (``patient_view``), section 8 for
the order hooks (``orders``). The types a recommendation is made of are in ``types``; the suggestions both rule
sets offer in ``suggestions``. The pipeline calls ``recommend`` once per hook call; the assessment never carries
recommendations (data flows one way).
"""

from __future__ import annotations

from cds_service.engine.assessment import Assessment
from cds_service.engine.facts import Facts
from cds_service.engine.recommend.orders import order_recommendations
from cds_service.engine.recommend.patient_view import patient_view_recommendations
from cds_service.engine.recommend.types import Recommendation
from cds_service.engine.settings import ClinicalSettings
from cds_service.engine.vocabulary import ORDER_HOOKS, Hook

__all__ = ["recommend"]


def recommend(assessment: Assessment, facts: Facts, settings: ClinicalSettings) -> tuple[Recommendation, ...]:
    """Section 7 for patient-view, section 8 for the order hooks."""
    if facts.hook == Hook.PATIENT_VIEW:
        return patient_view_recommendations(assessment, facts, settings)
    if facts.hook in ORDER_HOOKS:
        return order_recommendations(assessment, facts, settings)
    return ()  # a hook the rules do not cover gets no advice rather than another hook's

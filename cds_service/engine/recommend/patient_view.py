"""Patient-view recommendations (clinical-rules.md section 7), in the order of its table.

No recommendation, no card: a patient with nothing actionable gets none (alert fatigue is a safety problem).
Safest readings where the rules leave a gap are written next to the rule they refine.
"""

from __future__ import annotations

from cds_service.engine.assessment import Assessment
from cds_service.engine.facts import Facts, MedicationFact
from cds_service.engine.medications import is_supplement, with_class
from cds_service.engine.pending_tests import has_open_order
from cds_service.engine.recommend.figures import common_figures, mg_evidence
from cds_service.engine.recommend.suggestions import (
    order_creatinine,
    order_ionized_magnesium,
    order_serum_magnesium,
    start_citrate,
    start_organic_salts,
)
from cds_service.engine.recommend.types import Recommendation, SpacingAdvice
from cds_service.engine.settings import ClinicalSettings
from cds_service.engine.vocabulary import (
    INTERACTING_CLASSES,
    Deficiency,
    DrugClass,
    EgfrSource,
    Indicator,
    LabConcept,
    MagnesiumCategory,
    Qualifier,
    RecommendationCode,
)

TEST_SERUM_MDS_MIN = 2  # clinical-rules.md section 7: test when mds.min >= 2
TEST_IONIZED_MDS_MIN = 3  # clinical-rules.md section 7: serum normal with mds.min >= 3


def spacing_for(current: tuple[MedicationFact, ...]) -> tuple[SpacingAdvice, ...]:
    """Spacing advice for every current interacting drug (section 7)."""
    advice: list[SpacingAdvice] = []
    for drug in current:
        for interaction in INTERACTING_CLASSES:
            if interaction in drug.classes:
                advice.append(SpacingAdvice(interaction, drug))
    return tuple(advice)


def patient_view_recommendations(
    assessment: Assessment, facts: Facts, settings: ClinicalSettings
) -> tuple[Recommendation, ...]:
    """The section 7 table, in its order."""
    a = assessment
    serum, ionized = a.serum_mg.category, a.ionized_mg.category
    figures = common_figures(a)
    out: list[Recommendation] = []
    orders_flag = () if facts.orders_known else (Qualifier.ORDERS_UNKNOWN,)

    if serum == MagnesiumCategory.SEVERE_LOW:
        out.append(
            Recommendation(RecommendationCode.URGENT_EVALUATION, Indicator.CRITICAL, figures, evidence=mg_evidence(a))
        )

    if (
        serum == MagnesiumCategory.UNKNOWN
        and (a.mds.min >= TEST_SERUM_MDS_MIN or a.other_risk_drugs)
        and not has_open_order(facts, LabConcept.SERUM_MAGNESIUM)
    ):
        evidence = tuple(e for c in a.mds.components for e in c.evidence) + a.other_risk_evidence
        out.append(
            Recommendation(
                RecommendationCode.TEST_SERUM_MG,
                Indicator.INFO,
                figures,
                suggestions=(order_serum_magnesium(settings),),
                evidence=evidence,
                qualifiers=orders_flag,
            )
        )

    if (
        ionized == MagnesiumCategory.UNKNOWN
        and (
            serum == MagnesiumCategory.LOW_NORMAL
            or (serum == MagnesiumCategory.NORMAL and a.mds.min >= TEST_IONIZED_MDS_MIN)
        )
        and not has_open_order(facts, LabConcept.IONIZED_MAGNESIUM)
    ):
        out.append(
            Recommendation(
                RecommendationCode.TEST_IONIZED_MG,
                Indicator.INFO,
                figures,
                suggestions=(order_ionized_magnesium(settings),),
                evidence=mg_evidence(a),
                qualifiers=orders_flag,
            )
        )

    deficient = a.deficiency in (Deficiency.LIKELY, Deficiency.POSSIBLE)
    below_30 = a.egfr.below_30
    egfr_known = a.egfr.source != EgfrSource.NONE

    if (
        deficient
        and serum != MagnesiumCategory.SEVERE_LOW
        and not egfr_known
        and not has_open_order(facts, LabConcept.SERUM_CREATININE)
    ):
        out.append(
            Recommendation(
                RecommendationCode.CHECK_RENAL_FUNCTION,
                Indicator.INFO,
                figures,
                suggestions=(order_creatinine(),),
                evidence=mg_evidence(a),
            )
        )

    # Safest reading: a comparator that leaves < 30 open (e.g. "<60") counts as possibly below 30.
    renal_risk = egfr_known and below_30 is not False
    if deficient and renal_risk:
        qualifiers = () if below_30 else (Qualifier.EGFR_BELOW_30_NOT_EXCLUDED,)
        out.append(
            Recommendation(
                RecommendationCode.SUPPLEMENT_RENAL_CAUTION,
                Indicator.WARNING,
                figures,
                evidence=a.egfr.evidence + mg_evidence(a),
                qualifiers=qualifiers,
            )
        )

    current = a.current_medications
    organic = with_class(current, {DrugClass.MG_SALT_ORGANIC})
    # Safest reading (clinical-rules.md is silent): switch-to-organic is an oral-absorption argument [FIO21], so
    # intravenous or intramuscular magnesium (sulfate for eclampsia, torsades, severe deficiency) is never switched.
    inorganic = tuple(m for m in with_class(current, {DrugClass.MG_SALT_INORGANIC}) if not m.parenteral)
    # Safest reading: a magnesium supplement of unstated salt may be organic already; starting another could pass
    # the 350 mg/day unsupervised upper level [PIC20], so no new start is suggested. A patient on parenteral
    # magnesium is being treated already: no oral start on top of it either.
    unstated = with_class(current, {DrugClass.MG_SALT_UNSPECIFIED}) + tuple(
        m for m in current if m.parenteral and is_supplement(m)
    )
    spacing = spacing_for(current)
    meds_flag = () if facts.medications_known else (Qualifier.MEDICATIONS_UNKNOWN,)

    # switch-to-organic wins over supplement-organic when an inorganic salt is taken (section 7). Safest
    # reading: no new magnesium order when eGFR may be below 30 (supplement-renal-caution says why).
    if deficient and inorganic and not organic and not renal_risk:
        out.append(
            Recommendation(
                RecommendationCode.SWITCH_TO_ORGANIC,
                Indicator.INFO,
                (*figures, ("drug", inorganic[0].display or ", ".join(inorganic[0].ingredients))),
                concerned_draft=None,
                suggestions=(start_citrate(settings),),
                spacing=spacing,
                evidence=tuple(m.evidence for m in inorganic) + mg_evidence(a),
            )
        )
    elif (
        deficient
        and serum != MagnesiumCategory.SEVERE_LOW
        and egfr_known
        and below_30 is False
        and not organic
        and not unstated
    ):
        out.append(
            Recommendation(
                RecommendationCode.SUPPLEMENT_ORGANIC,
                Indicator.WARNING if a.deficiency == Deficiency.LIKELY else Indicator.INFO,
                figures,
                suggestions=start_organic_salts(settings),
                spacing=spacing,
                evidence=mg_evidence(a) + a.egfr.evidence,
                qualifiers=meds_flag,
            )
        )

    supplements = tuple(m for m in current if is_supplement(m))
    if serum == MagnesiumCategory.HIGH and supplements:
        out.append(
            Recommendation(
                RecommendationCode.STOP_SUPPLEMENT,
                Indicator.WARNING,
                (*figures, ("drug", supplements[0].display or ", ".join(supplements[0].ingredients))),
                evidence=mg_evidence(a) + tuple(m.evidence for m in supplements),
            )
        )
    return tuple(out)

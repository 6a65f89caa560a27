"""Recommendations (clinical-rules.md section 7 for patient-view; section 8 via ``order_rules``).

No recommendation, no card: a patient with nothing actionable gets none (alert fatigue is a safety problem).
Safest readings where the rules leave a gap are written next to the rule they refine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cds_service.engine import recommendation as r
from cds_service.engine.deficiency import LIKELY, POSSIBLE
from cds_service.engine.egfr import SOURCE_NONE
from cds_service.engine.facts import (
    INTERACTING_CLASSES,
    IONIZED_MAGNESIUM,
    MG_SALT_INORGANIC,
    MG_SALT_ORGANIC,
    MG_SALT_UNSPECIFIED,
    ORDER_SELECT,
    ORDER_SIGN,
    PATIENT_VIEW,
    SERUM_CREATININE,
    SERUM_MAGNESIUM,
    Facts,
    MedicationFact,
)
from cds_service.engine.magnesium import HIGH, LOW_NORMAL, NORMAL, SEVERE_LOW, UNKNOWN
from cds_service.engine.medications import is_supplement, with_class
from cds_service.engine.order_rules import order_recommendations
from cds_service.engine.settings import ClinicalSettings

if TYPE_CHECKING:
    from cds_service.engine.assessment import Assessment

TEST_SERUM_MDS_MIN = 2  # clinical-rules.md section 7: test when mds.min >= 2
TEST_IONIZED_MDS_MIN = 3  # clinical-rules.md section 7: serum normal with mds.min >= 3
CREATININE_LOINC = "2160-0"  # clinical-rules.md section 7


def recommend(assessment: Assessment, facts: Facts, settings: ClinicalSettings) -> tuple[r.Recommendation, ...]:
    """Section 7 for patient-view, section 8 for the order hooks."""
    if facts.hook == PATIENT_VIEW:
        return patient_view_recommendations(assessment, facts, settings)
    if facts.hook in (ORDER_SELECT, ORDER_SIGN):
        return order_recommendations(assessment, facts, settings)
    return ()  # a hook the rules do not cover gets no advice rather than another hook's


def spacing_for(current: tuple[MedicationFact, ...]) -> tuple[r.SpacingAdvice, ...]:
    """Spacing advice for every current interacting drug (section 7)."""
    advice: list[r.SpacingAdvice] = []
    for drug in current:
        for interaction in INTERACTING_CLASSES:
            if interaction in drug.classes:
                advice.append(r.SpacingAdvice(interaction, drug))
    return tuple(advice)


def patient_view_recommendations(
    assessment: Assessment, facts: Facts, settings: ClinicalSettings
) -> tuple[r.Recommendation, ...]:
    """The section 7 table, in its order."""
    a = assessment
    serum, ionized = a.serum_mg.category, a.ionized_mg.category
    figures = r.common_figures(a)
    out: list[r.Recommendation] = []
    orders_flag = () if facts.orders_known else ("orders-unknown",)

    if serum == SEVERE_LOW:
        out.append(r.Recommendation(r.URGENT_EVALUATION, r.CRITICAL, figures, evidence=r.mg_evidence(a)))

    if (
        serum == UNKNOWN
        and (a.mds.min >= TEST_SERUM_MDS_MIN or a.other_risk_drugs)
        and not r.has_open_order(facts, SERUM_MAGNESIUM)
    ):
        evidence = tuple(e for c in a.mds.components for e in c.evidence) + a.other_risk_evidence
        suggestion = r.SuggestionSpec(
            "order-serum-mg", (r.CreateServiceRequest(settings.serum_mg_test_loinc, SERUM_MAGNESIUM),)
        )
        out.append(
            r.Recommendation(
                r.TEST_SERUM_MG,
                r.INFO,
                figures,
                suggestions=(suggestion,),
                evidence=evidence,
                qualifiers=orders_flag,
            )
        )

    if (
        ionized == UNKNOWN
        and (serum == LOW_NORMAL or (serum == NORMAL and a.mds.min >= TEST_IONIZED_MDS_MIN))
        and not r.has_open_order(facts, IONIZED_MAGNESIUM)
    ):
        suggestion = r.SuggestionSpec(
            "order-ionized-mg", (r.CreateServiceRequest(settings.ionized_mg_test_loinc, IONIZED_MAGNESIUM),)
        )
        out.append(
            r.Recommendation(
                r.TEST_IONIZED_MG,
                r.INFO,
                figures,
                suggestions=(suggestion,),
                evidence=r.mg_evidence(a),
                qualifiers=orders_flag,
            )
        )

    deficient = a.deficiency in (LIKELY, POSSIBLE)
    below_30 = a.egfr.below_30
    egfr_known = a.egfr.source != SOURCE_NONE

    if deficient and serum != SEVERE_LOW and not egfr_known and not r.has_open_order(facts, SERUM_CREATININE):
        suggestion = r.SuggestionSpec("order-creatinine", (r.CreateServiceRequest(CREATININE_LOINC, SERUM_CREATININE),))
        out.append(
            r.Recommendation(
                r.CHECK_RENAL_FUNCTION, r.INFO, figures, suggestions=(suggestion,), evidence=r.mg_evidence(a)
            )
        )

    # Safest reading: a comparator that leaves < 30 open (e.g. "<60") counts as possibly below 30.
    renal_risk = egfr_known and below_30 is not False
    if deficient and renal_risk:
        qualifiers = () if below_30 else ("egfr-below-30-not-excluded",)
        out.append(
            r.Recommendation(
                r.SUPPLEMENT_RENAL_CAUTION,
                r.WARNING,
                figures,
                evidence=a.egfr.evidence + r.mg_evidence(a),
                qualifiers=qualifiers,
            )
        )

    current = a.current_medications
    organic = with_class(current, {MG_SALT_ORGANIC})
    # Safest reading (clinical-rules.md is silent): switch-to-organic is an oral-absorption argument [FIO21], so
    # intravenous or intramuscular magnesium (sulfate for eclampsia, torsades, severe deficiency) is never switched.
    inorganic = tuple(m for m in with_class(current, {MG_SALT_INORGANIC}) if not m.parenteral)
    # Safest reading: a magnesium supplement of unstated salt may be organic already; starting another could pass
    # the 350 mg/day unsupervised upper level [PIC20], so no new start is suggested. A patient on parenteral
    # magnesium is being treated already: no oral start on top of it either.
    unstated = with_class(current, {MG_SALT_UNSPECIFIED}) + tuple(
        m for m in current if m.parenteral and is_supplement(m)
    )
    spacing = spacing_for(current)
    meds_flag = () if facts.medications_known else ("medications-unknown",)

    # switch-to-organic wins over supplement-organic when an inorganic salt is taken (section 7). Safest
    # reading: no new magnesium order when eGFR may be below 30 (supplement-renal-caution says why).
    if deficient and inorganic and not organic and not renal_risk:
        out.append(
            r.Recommendation(
                r.SWITCH_TO_ORGANIC,
                r.INFO,
                (*figures, ("drug", inorganic[0].display or ", ".join(inorganic[0].ingredients))),
                concerned_draft=None,
                suggestions=(_citrate_suggestion("switch-to-magnesium-citrate", settings),),
                spacing=spacing,
                evidence=tuple(m.evidence for m in inorganic) + r.mg_evidence(a),
            )
        )
    elif deficient and serum != SEVERE_LOW and egfr_known and below_30 is False and not organic and not unstated:
        suggestions = tuple(
            r.SuggestionSpec(
                "start-" + salt.replace(" ", "-"),
                (r.CreateMedicationRequest(salt, settings.supplement_elemental_mg_per_day),),
            )
            for salt in r.ORGANIC_SALTS
        )
        out.append(
            r.Recommendation(
                r.SUPPLEMENT_ORGANIC,
                r.WARNING if a.deficiency == LIKELY else r.INFO,
                figures,
                suggestions=suggestions,
                spacing=spacing,
                evidence=r.mg_evidence(a) + a.egfr.evidence,
                qualifiers=meds_flag,
            )
        )

    supplements = tuple(m for m in current if is_supplement(m))
    if serum == HIGH and supplements:
        out.append(
            r.Recommendation(
                r.STOP_SUPPLEMENT,
                r.WARNING,
                (*figures, ("drug", supplements[0].display or ", ".join(supplements[0].ingredients))),
                evidence=r.mg_evidence(a) + tuple(m.evidence for m in supplements),
            )
        )
    return tuple(out)


def _citrate_suggestion(key: str, settings: ClinicalSettings) -> r.SuggestionSpec:
    return r.SuggestionSpec(
        key, (r.CreateMedicationRequest(r.SWITCH_TARGET_SALT, settings.supplement_elemental_mg_per_day),)
    )

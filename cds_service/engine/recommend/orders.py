"""Order entry recommendations: order-select and order-sign (clinical-rules.md section 8).

Drafts in ``context.draftOrders`` count as current medications; the concerned drafts (the selections at
order-select, every draft at order-sign) are the ones cards speak about, and each card names its draft. The
order hooks emit only section-8 codes: patient-view's testing cards are not repeated for drugs already taken.
"""

from __future__ import annotations

from cds_service.engine.assessment import Assessment
from cds_service.engine.facts import Facts, MedicationFact
from cds_service.engine.medications import is_supplement
from cds_service.engine.pending_tests import has_open_order
from cds_service.engine.recommend.figures import common_figures, mg_evidence
from cds_service.engine.recommend.suggestions import delete_draft, order_serum_magnesium, replace_draft_with_citrate
from cds_service.engine.recommend.types import Recommendation, SpacingAdvice, SuggestionSpec
from cds_service.engine.settings import ClinicalSettings
from cds_service.engine.vocabulary import (
    DIURETIC_CLASSES,
    INTERACTING_CLASSES,
    DrugClass,
    Indicator,
    LabConcept,
    MagnesiumCategory,
    Qualifier,
    RecommendationCode,
)

# Drugs whose draft gets `order-depletes-mg` (section 8).
DEPLETING_CLASSES = DIURETIC_CLASSES | {DrugClass.PROTON_PUMP_INHIBITOR, DrugClass.MG_WASTING_OTHER}


def concerned_drafts(facts: Facts) -> tuple[MedicationFact, ...]:
    """The draft medication orders the cards concern."""
    return tuple(m for m in facts.medications if m.is_draft and m.is_concerned)


def draft_name(draft: MedicationFact) -> str:
    """How a draft is named in summaries: its display, else its ingredients."""
    return draft.display or ", ".join(draft.ingredients) or f"{draft.resource_type}/{draft.resource_id}"


def order_recommendations(
    assessment: Assessment, facts: Facts, settings: ClinicalSettings
) -> tuple[Recommendation, ...]:
    """Section 8 rules for every concerned draft, in draft order."""
    out: list[Recommendation] = []
    for draft in concerned_drafts(facts):
        out.extend(_for_draft(draft, assessment, facts, settings))
    return tuple(out)


def _for_draft(
    draft: MedicationFact, assessment: Assessment, facts: Facts, settings: ClinicalSettings
) -> list[Recommendation]:
    a = assessment
    figures = (*common_figures(a), ("drug", draft_name(draft)))
    serum = a.serum_mg.category
    out: list[Recommendation] = []

    if draft.classes & DEPLETING_CLASSES:
        offered: tuple[SuggestionSpec, ...] = ()
        if serum == MagnesiumCategory.UNKNOWN and not has_open_order(facts, LabConcept.SERUM_MAGNESIUM):
            offered = (order_serum_magnesium(settings),)
        out.append(
            Recommendation(
                RecommendationCode.ORDER_DEPLETES_MG,
                Indicator.WARNING if serum in (MagnesiumCategory.LOW, MagnesiumCategory.SEVERE_LOW) else Indicator.INFO,
                figures,
                concerned_draft=draft,
                suggestions=offered,
                evidence=(draft.evidence, *mg_evidence(a)),
            )
        )

    contraindicated = False
    if is_supplement(draft):
        below_30 = a.egfr.below_30
        # Safest reading: an eGFR whose comparator leaves < 30 open (e.g. "<60") counts as possibly below 30.
        renal = a.egfr.value is not None and below_30 is not False
        if renal or serum == MagnesiumCategory.HIGH:
            contraindicated = True
            qualifiers = (Qualifier.EGFR_BELOW_30_NOT_EXCLUDED,) if renal and below_30 is None else ()
            out.append(
                Recommendation(
                    RecommendationCode.ORDER_SUPPLEMENT_CONTRAINDICATED,
                    Indicator.WARNING,
                    figures,
                    concerned_draft=draft,
                    suggestions=(delete_draft(draft),),
                    evidence=(draft.evidence, *a.egfr.evidence, *mg_evidence(a)),
                    qualifiers=qualifiers,
                )
            )

    # A contraindicated salt is not switched: the switch would create another magnesium order. Nor is a parenteral
    # one: the bioavailability argument for citrate is about oral absorption (safest reading, see patient_view.py).
    if DrugClass.MG_SALT_INORGANIC in draft.classes and not contraindicated and not draft.parenteral:
        out.append(
            Recommendation(
                RecommendationCode.SWITCH_TO_ORGANIC,
                Indicator.INFO,
                figures,
                concerned_draft=draft,
                suggestions=(replace_draft_with_citrate(draft, settings),),
                evidence=(draft.evidence,),
            )
        )

    others = tuple(m for m in a.current_medications if m is not draft)
    spacing: list[SpacingAdvice] = []
    # Spacing is about chelation in the gut: it concerns oral magnesium only.
    if is_supplement(draft):
        if not draft.parenteral:
            spacing = [SpacingAdvice(c, m) for m in others for c in INTERACTING_CLASSES if c in m.classes]
    else:
        supplements = [m for m in others if is_supplement(m) and not m.parenteral]
        if supplements:
            spacing = [SpacingAdvice(c, draft) for c in INTERACTING_CLASSES if c in draft.classes]
            figures = (*figures, ("supplement", draft_name(supplements[0])))
    if spacing:
        partners = tuple(s.drug.evidence for s in spacing if s.drug is not draft)
        out.append(
            Recommendation(
                RecommendationCode.ORDER_SPACING,
                Indicator.INFO,
                figures,
                concerned_draft=draft,
                spacing=tuple(spacing),
                evidence=(draft.evidence, *partners),
            )
        )
    return out

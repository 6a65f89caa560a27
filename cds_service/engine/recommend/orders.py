"""Order entry recommendations: order-select and order-sign (clinical-rules.md section 8).

Drafts in ``context.draftOrders`` count as current medications; the concerned drafts (the selections at
order-select, every draft at order-sign) are the ones cards speak about, and each card names its draft. The
order hooks emit only section-8 codes: patient-view's testing cards are not repeated for drugs already taken.
Adults only (section 0): a child or a deceased patient gets no order card. A parenteral magnesium order is never
offered for deletion: it treats severe deficiency, eclampsia and torsades.
"""

from __future__ import annotations

from cds_service.engine.assessment import Assessment
from cds_service.engine.facts import Facts, MedicationFact
from cds_service.engine.medications import (
    ingredients_with,
    is_inorganic_supplement,
    is_oral_magnesium,
    is_parenteral_magnesium,
)
from cds_service.engine.pending_tests import has_open_order
from cds_service.engine.recommend.figures import common_figures, mg_evidence
from cds_service.engine.recommend.patient_view import spacing_for
from cds_service.engine.recommend.suggestions import delete_draft, order_serum_magnesium, replace_draft_with_citrate
from cds_service.engine.recommend.types import Recommendation, SpacingAdvice, SuggestionSpec
from cds_service.engine.settings import ClinicalSettings
from cds_service.engine.vocabulary import (
    DIURETIC_CLASSES,
    HIGH_CATEGORIES,
    LOW_CATEGORIES,
    DrugClass,
    Indicator,
    LabConcept,
    MagnesiumCategory,
    Qualifier,
    RecommendationCode,
    Scope,
)

# Drugs whose draft gets `order-depletes-mg` (section 8).
DEPLETING_CLASSES = DIURETIC_CLASSES | {DrugClass.PROTON_PUMP_INHIBITOR, DrugClass.MG_WASTING_OTHER}


def concerned_drafts(facts: Facts) -> tuple[MedicationFact, ...]:
    """The draft medication orders the cards concern."""
    return tuple(m for m in facts.medications if m.is_draft and m.is_concerned)


def draft_name(draft: MedicationFact) -> str:
    """How a draft is named in summaries: its display, else its ingredients."""
    return draft.display or ", ".join(draft.ingredients) or f"{draft.resource_type}/{draft.resource_id}"


def already_taken(draft: MedicationFact, current: tuple[MedicationFact, ...]) -> bool:
    """Whether every depleting ingredient of the draft is already current in the record (drafts do not count)."""
    drafted = {i.lower() for i in ingredients_with(draft, DEPLETING_CLASSES)}
    on_record = {i.lower() for m in current if not m.is_draft for i in m.ingredients}
    # Safest reading: a combination draft that adds a depleting ingredient the patient does not take (triamterene to
    # a patient on hydrochlorothiazide) still gets its card; only a drug wholly already taken is left to patient-view.
    return bool(drafted) and drafted <= on_record


def order_recommendations(
    assessment: Assessment, facts: Facts, settings: ClinicalSettings
) -> tuple[Recommendation, ...]:
    """Section 8 rules for every concerned draft, in draft order; none outside the adult scope (section 0)."""
    if assessment.scope != Scope.ADULT:
        return ()
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

    if draft.classes & DEPLETING_CLASSES and not already_taken(draft, a.current_medications):
        offered: tuple[SuggestionSpec, ...] = ()
        if serum == MagnesiumCategory.UNKNOWN and not has_open_order(facts, LabConcept.SERUM_MAGNESIUM):
            offered = (order_serum_magnesium(settings),)
        ppi = DrugClass.PROTON_PUMP_INHIBITOR in draft.classes
        out.append(
            Recommendation(
                RecommendationCode.ORDER_DEPLETES_MG,
                Indicator.WARNING if serum in LOW_CATEGORIES else Indicator.INFO,
                figures,
                concerned_draft=draft,
                suggestions=offered,
                evidence=(draft.evidence, *mg_evidence(a)),
                qualifiers=(Qualifier.LONG_TERM_PPI,) if ppi else (),
            )
        )

    below_30 = a.egfr.below_30
    # Safest reading: an eGFR whose comparator leaves < 30 open (e.g. "<60") counts as possibly below 30.
    renal = a.egfr.value is not None and below_30 is not False
    renal_qualifiers = (Qualifier.EGFR_BELOW_30_NOT_EXCLUDED,) if renal and below_30 is None else ()
    high = serum in HIGH_CATEGORIES
    contraindicated = is_oral_magnesium(draft) and (renal or high)
    if contraindicated:
        out.append(
            Recommendation(
                RecommendationCode.ORDER_SUPPLEMENT_CONTRAINDICATED,
                Indicator.WARNING,
                figures,
                concerned_draft=draft,
                suggestions=(delete_draft(draft),),
                evidence=(draft.evidence, *a.egfr.evidence, *mg_evidence(a)),
                qualifiers=renal_qualifiers,
            )
        )
    if is_parenteral_magnesium(draft) and (renal or high):
        out.append(
            Recommendation(
                RecommendationCode.ORDER_PARENTERAL_MG_MONITOR,
                Indicator.INFO,
                figures,
                concerned_draft=draft,
                evidence=(draft.evidence, *a.egfr.evidence, *mg_evidence(a)),
                qualifiers=renal_qualifiers,
            )
        )

    # A contraindicated salt is not switched: the switch would create another magnesium order (the lead's safest
    # reading, tests/data/patients/drafts/expected-orders.json).
    if is_inorganic_supplement(draft) and not contraindicated:
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
    spacing: tuple[SpacingAdvice, ...] = ()
    # Spacing is about chelation in the gut: it concerns oral magnesium (supplement, laxative or antacid) only.
    if is_oral_magnesium(draft):
        spacing = spacing_for(others)
    else:
        oral = [m for m in others if is_oral_magnesium(m)]
        if oral:
            spacing = spacing_for((draft,))
            figures = (*figures, ("supplement", draft_name(oral[0])))
    if spacing:
        partners = tuple(s.drug.evidence for s in spacing if s.drug is not draft)
        out.append(
            Recommendation(
                RecommendationCode.ORDER_SPACING,
                Indicator.INFO,
                figures,
                concerned_draft=draft,
                spacing=spacing,
                evidence=(draft.evidence, *partners),
            )
        )
    return out

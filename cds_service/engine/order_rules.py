"""Order entry: order-select and order-sign (clinical-rules.md section 8).

Drafts in ``context.draftOrders`` count as current medications; the concerned drafts (the selections at
order-select, every draft at order-sign) are the ones cards speak about, and each card names its draft. The
order hooks emit only section-8 codes: patient-view's testing cards are not repeated for drugs already taken.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cds_service.engine import recommendation as r
from cds_service.engine.facts import (
    DIURETIC_CLASSES,
    INTERACTING_CLASSES,
    MG_SALT_INORGANIC,
    MG_WASTING_OTHER,
    PROTON_PUMP_INHIBITOR,
    SERUM_MAGNESIUM,
    Facts,
    MedicationFact,
)
from cds_service.engine.magnesium import HIGH, LOW, SEVERE_LOW, UNKNOWN
from cds_service.engine.medications import is_supplement
from cds_service.engine.settings import ClinicalSettings

if TYPE_CHECKING:
    from cds_service.engine.assessment import Assessment

DEPLETING_CLASSES = DIURETIC_CLASSES | {PROTON_PUMP_INHIBITOR, MG_WASTING_OTHER}


def concerned_drafts(facts: Facts) -> tuple[MedicationFact, ...]:
    """The draft medication orders the cards concern."""
    return tuple(m for m in facts.medications if m.is_draft and m.is_concerned)


def draft_name(draft: MedicationFact) -> str:
    """How a draft is named in summaries: its display, else its ingredients."""
    return draft.display or ", ".join(draft.ingredients) or f"{draft.resource_type}/{draft.resource_id}"


def order_recommendations(
    assessment: Assessment, facts: Facts, settings: ClinicalSettings
) -> tuple[r.Recommendation, ...]:
    """Section 8 rules for every concerned draft, in draft order."""
    out: list[r.Recommendation] = []
    for draft in concerned_drafts(facts):
        out.extend(_for_draft(draft, assessment, facts, settings))
    return tuple(out)


def _for_draft(
    draft: MedicationFact, assessment: Assessment, facts: Facts, settings: ClinicalSettings
) -> list[r.Recommendation]:
    a = assessment
    figures = (*r.common_figures(a), ("drug", draft_name(draft)))
    serum = a.serum_mg.category
    out: list[r.Recommendation] = []

    if draft.classes & DEPLETING_CLASSES:
        suggestions: tuple[r.SuggestionSpec, ...] = ()
        if serum == UNKNOWN and not r.has_open_order(facts, SERUM_MAGNESIUM):
            suggestions = (
                r.SuggestionSpec(
                    "order-serum-mg", (r.CreateServiceRequest(settings.serum_mg_test_loinc, SERUM_MAGNESIUM),)
                ),
            )
        out.append(
            r.Recommendation(
                r.ORDER_DEPLETES_MG,
                r.WARNING if serum in (LOW, SEVERE_LOW) else r.INFO,
                figures,
                concerned_draft=draft,
                suggestions=suggestions,
                evidence=(draft.evidence, *r.mg_evidence(a)),
            )
        )

    contraindicated = False
    if is_supplement(draft):
        below_30 = a.egfr.below_30
        # Safest reading: an eGFR whose comparator leaves < 30 open (e.g. "<60") counts as possibly below 30.
        renal = a.egfr.value is not None and below_30 is not False
        if renal or serum == HIGH:
            contraindicated = True
            qualifiers = ("egfr-below-30-not-excluded",) if renal and below_30 is None else ()
            delete = r.DeleteDraft(draft.resource_type, draft.resource_id)
            out.append(
                r.Recommendation(
                    r.ORDER_SUPPLEMENT_CONTRAINDICATED,
                    r.WARNING,
                    figures,
                    concerned_draft=draft,
                    suggestions=(r.SuggestionSpec("delete-draft", (delete,)),),
                    evidence=(draft.evidence, *a.egfr.evidence, *r.mg_evidence(a)),
                    qualifiers=qualifiers,
                )
            )

    # A contraindicated salt is not switched: the switch would create another magnesium order. Nor is a parenteral
    # one: the bioavailability argument for citrate is about oral absorption (safest reading, see recommend.py).
    if MG_SALT_INORGANIC in draft.classes and not contraindicated and not draft.parenteral:
        switch = r.SuggestionSpec(
            "switch-to-magnesium-citrate",
            (
                r.DeleteDraft(draft.resource_type, draft.resource_id),
                r.CreateMedicationRequest(r.SWITCH_TARGET_SALT, settings.supplement_elemental_mg_per_day),
            ),
        )
        out.append(
            r.Recommendation(
                r.SWITCH_TO_ORGANIC,
                r.INFO,
                figures,
                concerned_draft=draft,
                suggestions=(switch,),
                evidence=(draft.evidence,),
            )
        )

    others = tuple(m for m in a.current_medications if m is not draft)
    spacing: list[r.SpacingAdvice] = []
    # Spacing is about chelation in the gut: it concerns oral magnesium only.
    if is_supplement(draft):
        if not draft.parenteral:
            spacing = [r.SpacingAdvice(c, m) for m in others for c in INTERACTING_CLASSES if c in m.classes]
    else:
        supplements = [m for m in others if is_supplement(m) and not m.parenteral]
        if supplements:
            spacing = [r.SpacingAdvice(c, draft) for c in INTERACTING_CLASSES if c in draft.classes]
            figures = (*figures, ("supplement", draft_name(supplements[0])))
    if spacing:
        partners = tuple(s.drug.evidence for s in spacing if s.drug is not draft)
        out.append(
            r.Recommendation(
                r.ORDER_SPACING,
                r.INFO,
                figures,
                concerned_draft=draft,
                spacing=tuple(spacing),
                evidence=(draft.evidence, *partners),
            )
        )
    return out

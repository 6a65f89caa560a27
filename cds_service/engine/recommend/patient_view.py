"""Patient-view recommendations (clinical-rules.md sections 0 and 7.2-7.3), in the order of section 7.2's table.

No recommendation, no card: a patient with nothing actionable gets none (alert fatigue is a safety problem). A
deceased patient gets none; a child only the urgent cards, without doses (section 0). "Oral magnesium" in the rules
is a current oral supplement; a laxative or antacid is not a supplement (it blocks no start and is not switched) but
is oral magnesium for stop-supplement and spacing; current parenteral magnesium means the deficiency is being treated.
Safest readings where the rules leave a gap are written next to the rule they refine ("Safest reading: ...").
"""

from __future__ import annotations

from dataclasses import replace

from cds_service.engine.assessment import Assessment
from cds_service.engine.egfr import is_below
from cds_service.engine.facts import Facts, MedicationFact
from cds_service.engine.magnesium import MagnesiumResult
from cds_service.engine.medications import (
    NOT_ONLY_INORGANIC,
    ingredients_with,
    is_magnesium_product,
    is_oral_supplement,
    is_parenteral_magnesium,
    product_kind,
    salt_class,
)
from cds_service.engine.pending_tests import has_open_order
from cds_service.engine.recommend.figures import common_figures, mg_evidence
from cds_service.engine.recommend.suggestions import (
    order_creatinine,
    order_ionized_magnesium,
    order_serum_magnesium,
    start_citrate,
    start_organic_salts,
)
from cds_service.engine.recommend.types import CauseNote, Recommendation, SpacingAdvice, SuggestionSpec
from cds_service.engine.settings import ClinicalSettings
from cds_service.engine.vocabulary import (
    HIGH_CATEGORIES,
    INTERACTING_CLASSES,
    PEDIATRIC_CODES,
    Deficiency,
    DrugClass,
    EgfrGap,
    Indicator,
    LabConcept,
    MagnesiumCategory,
    MagnesiumProductKind,
    Qualifier,
    RecommendationCode,
    Scope,
)

TEST_SERUM_MDS_MIN = 2  # clinical-rules.md section 7.2: test serum magnesium when mds.min >= 2
TEST_IONIZED_MDS_MIN = 3  # clinical-rules.md section 7.2: serum normal with mds.min >= 3
# [LU00] therapeutic serum range of magnesium sulfate in pre-eclampsia 2.0-3.5 mmol/L: below 3.5 on parenteral
# magnesium, evaluate-hypermagnesemia is information, not an alarm (section 7.2).
PARENTERAL_THERAPEUTIC_BELOW = 3.5

# The causes a likely deficiency's cards name (section 7.2): PPIs [FDA11], loop and thiazide(-like) diuretics.
CAUSE_CLASSES = (DrugClass.PROTON_PUMP_INHIBITOR, DrugClass.LOOP_DIURETIC, DrugClass.THIAZIDE_DIURETIC)
# Without a creatinine order to suggest, check-renal-function says why the creatinine on file gave no eGFR: these
# gaps are the patient record's (sex, birth date), not the laboratory's, so a second creatinine would not help.
GAPS_A_CREATININE_DOES_NOT_FIX = frozenset({EgfrGap.SEX_UNKNOWN, EgfrGap.BIRTH_DATE_UNKNOWN})


def spacing_for(current: tuple[MedicationFact, ...]) -> tuple[SpacingAdvice, ...]:
    """Spacing advice for every current interacting drug, per interacting ingredient (section 7.3)."""
    advice: list[SpacingAdvice] = []
    for drug in current:
        for interaction in INTERACTING_CLASSES:
            if interaction in drug.classes:
                for ingredient in ingredients_with(drug, {interaction}) or ("",):
                    advice.append(SpacingAdvice(interaction, drug, ingredient))
    return tuple(advice)


def cause_notes(assessment: Assessment) -> tuple[CauseNote, ...]:
    """The PPI and loop/thiazide diuretic cause notes for a likely deficiency (section 7.2), else none."""
    if assessment.deficiency != Deficiency.LIKELY:
        return ()
    notes: list[CauseNote] = []
    for drug in assessment.current_medications:
        for drug_class in CAUSE_CLASSES:
            for ingredient in ingredients_with(drug, {drug_class}):
                notes.append(CauseNote(drug_class, drug, ingredient))
    return tuple(notes)


def certainly_below(result: MagnesiumResult, threshold: float) -> bool:
    """Whether a magnesium value is below ``threshold`` whatever its comparator leaves open."""
    return result.value_mmol_l is not None and is_below(result.value_mmol_l, result.comparator, threshold) is True


def patient_view_recommendations(
    assessment: Assessment, facts: Facts, settings: ClinicalSettings
) -> tuple[Recommendation, ...]:
    """Section 7.2's table in its order, within the scope of section 0."""
    if assessment.scope == Scope.DECEASED:
        return ()
    found = _all_rules(assessment, facts, settings)
    if assessment.scope == Scope.PEDIATRIC:
        # Section 0: the urgent cards only, without doses, saying that the adult rules do not apply.
        return tuple(
            replace(rec, suggestions=(), qualifiers=(*rec.qualifiers, Qualifier.PEDIATRIC))
            for rec in found
            if rec.code in PEDIATRIC_CODES
        )
    return found


def _all_rules(a: Assessment, facts: Facts, settings: ClinicalSettings) -> tuple[Recommendation, ...]:
    serum, ionized = a.serum_mg.category, a.ionized_mg.category
    figures = common_figures(a)
    out: list[Recommendation] = []
    orders_flag = () if facts.orders_known else (Qualifier.ORDERS_UNKNOWN,)
    meds_flag = () if facts.medications_known else (Qualifier.MEDICATIONS_UNKNOWN,)

    current = a.current_medications
    oral_supplements = tuple(m for m in current if is_oral_supplement(m))
    laxatives = tuple(m for m in current if product_kind(m) == MagnesiumProductKind.LAXATIVE_ANTACID)
    parenteral = tuple(m for m in current if is_parenteral_magnesium(m))
    magnesium_products = tuple(m for m in current if is_magnesium_product(m))
    likely = a.deficiency == Deficiency.LIKELY
    possible = a.deficiency == Deficiency.POSSIBLE
    causes = cause_notes(a)
    spacing = spacing_for(current)
    egfr_known = a.egfr.value is not None
    below_30 = a.egfr.below_30
    # Safest reading: a comparator that leaves < 30 open (e.g. "<60") counts as possibly below 30.
    renal_risk = egfr_known and below_30 is not False
    renal_ok = egfr_known and below_30 is False
    ionized_pending = has_open_order(facts, LabConcept.IONIZED_MAGNESIUM)

    if serum == MagnesiumCategory.SEVERE_LOW:
        out.append(
            Recommendation(
                RecommendationCode.URGENT_EVALUATION,
                Indicator.CRITICAL,
                figures,
                evidence=mg_evidence(a),
                causes=causes,
            )
        )

    if serum in HIGH_CATEGORIES and not oral_supplements and not laxatives:
        indicator = Indicator.CRITICAL if serum == MagnesiumCategory.SEVERE_HIGH else Indicator.WARNING
        # Safest reading: "serum < 3.5" holds only when the value is certainly below it (">3.0" might not be).
        if parenteral and certainly_below(a.serum_mg, PARENTERAL_THERAPEUTIC_BELOW):
            indicator = Indicator.INFO
        out.append(
            Recommendation(
                RecommendationCode.EVALUATE_HYPERMAGNESEMIA,
                indicator,
                figures,
                evidence=mg_evidence(a) + a.egfr.evidence + tuple(m.evidence for m in parenteral),
                qualifiers=(Qualifier.PARENTERAL_MAGNESIUM_CURRENT,) if parenteral else (),
                products=parenteral,
            )
        )

    if serum in HIGH_CATEGORIES and (oral_supplements or laxatives):
        oral = oral_supplements + laxatives
        # Safest reading: the detail names every current magnesium product, parenteral ones too, so that none is
        # overlooked while serum magnesium is high.
        out.append(
            Recommendation(
                RecommendationCode.STOP_SUPPLEMENT,
                Indicator.CRITICAL if serum == MagnesiumCategory.SEVERE_HIGH else Indicator.WARNING,
                (*figures, ("drug", oral[0].display or ", ".join(oral[0].ingredients))),
                evidence=mg_evidence(a) + tuple(m.evidence for m in magnesium_products),
                products=magnesium_products,
            )
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
        and not ionized_pending
    ):
        offered: tuple[SuggestionSpec, ...] = (order_ionized_magnesium(settings),)
        qualifiers: tuple[Qualifier, ...] = orders_flag
        card_spacing: tuple[SpacingAdvice, ...] = ()
        if possible:
            # Section 7.2: a possible deficiency gets this one card; with eGFR >= 30 and no oral or parenteral
            # magnesium it offers the organic salts as alternatives, else it says why it offers none.
            if renal_ok and not oral_supplements and not parenteral:
                offered = (*offered, *start_organic_salts(settings))
                qualifiers = (*qualifiers, *meds_flag)
                card_spacing = spacing
            elif not egfr_known:
                qualifiers = (*qualifiers, Qualifier.EGFR_UNKNOWN)
            elif below_30 is True:
                qualifiers = (*qualifiers, Qualifier.EGFR_BELOW_30)
            elif below_30 is None:
                qualifiers = (*qualifiers, Qualifier.EGFR_BELOW_30_NOT_EXCLUDED)
        out.append(
            Recommendation(
                RecommendationCode.TEST_IONIZED_MG,
                Indicator.INFO,
                figures,
                suggestions=offered,
                spacing=card_spacing,
                evidence=mg_evidence(a) + (a.egfr.evidence if possible else ()),
                qualifiers=qualifiers,
            )
        )

    if likely and serum != MagnesiumCategory.SEVERE_LOW and not egfr_known:
        creatinine_ordered = has_open_order(facts, LabConcept.SERUM_CREATININE)
        # Section 7.2: a creatinine order only when no creatinine result is in the window. Safest readings: an
        # unreadable creatinine, or one drawn before the 18th birthday, counts as none (a new one gives an eGFR);
        # a creatinine already ordered is not ordered twice (and the card says it is pending).
        suggest = a.egfr.gap not in GAPS_A_CREATININE_DOES_NOT_FIX and not creatinine_ordered
        out.append(
            Recommendation(
                RecommendationCode.CHECK_RENAL_FUNCTION,
                Indicator.INFO,
                figures,
                suggestions=(order_creatinine(),) if suggest else (),
                evidence=mg_evidence(a),
                qualifiers=(Qualifier.CREATININE_ORDERED,) if creatinine_ordered else (),
            )
        )

    if likely and renal_risk and not parenteral:
        out.append(
            Recommendation(
                RecommendationCode.SUPPLEMENT_RENAL_CAUTION,
                Indicator.WARNING,
                figures,
                evidence=a.egfr.evidence + mg_evidence(a),
                qualifiers=() if below_30 else (Qualifier.EGFR_BELOW_30_NOT_EXCLUDED,),
                causes=causes,
            )
        )

    # supplement-organic, switch-to-organic and persistent-deficiency exclude each other (section 7.2): any organic
    # or unspecified oral salt -> persistent-deficiency; only inorganic ones -> switch; none -> supplement-organic.
    absorbable = tuple(m for m in oral_supplements if salt_class(m) in NOT_ONLY_INORGANIC)
    inorganic = tuple(m for m in oral_supplements if salt_class(m) == DrugClass.MG_SALT_INORGANIC)
    if absorbable:
        if likely and serum != MagnesiumCategory.SEVERE_LOW and not parenteral:
            out.append(
                Recommendation(
                    RecommendationCode.PERSISTENT_DEFICIENCY,
                    Indicator.WARNING,
                    (*figures, ("drug", absorbable[0].display or ", ".join(absorbable[0].ingredients))),
                    spacing=spacing,
                    evidence=mg_evidence(a) + tuple(m.evidence for m in oral_supplements),
                    causes=causes,
                    products=oral_supplements,
                )
            )
    elif inorganic:
        # Safest reading: no new magnesium order when eGFR may be below 30 (supplement-renal-caution, or the
        # test-ionized-mg card's renal note, says why); and none for a possible deficiency while its ionized test is
        # pending, which section 7.2 leaves without any card.
        if (likely or (possible and not ionized_pending)) and not renal_risk:
            # Safest reading: with renal function unknown the switch is advised but not drafted: citrate is better
            # absorbed than oxide, and the rules ask for creatinine "before any supplement" (section 7.2), so the
            # draft waits for an eGFR (check-renal-function offers the creatinine order).
            out.append(
                Recommendation(
                    RecommendationCode.SWITCH_TO_ORGANIC,
                    Indicator.INFO,
                    (*figures, ("drug", inorganic[0].display or ", ".join(inorganic[0].ingredients))),
                    suggestions=(start_citrate(settings),) if egfr_known else (),
                    qualifiers=() if egfr_known else (Qualifier.EGFR_UNKNOWN,),
                    spacing=spacing,
                    evidence=tuple(m.evidence for m in inorganic) + mg_evidence(a),
                    causes=causes,
                    products=inorganic,
                )
            )
    elif likely and serum != MagnesiumCategory.SEVERE_LOW and renal_ok and not parenteral:
        out.append(
            Recommendation(
                RecommendationCode.SUPPLEMENT_ORGANIC,
                Indicator.WARNING,
                figures,
                suggestions=start_organic_salts(settings),
                spacing=spacing,
                evidence=mg_evidence(a) + a.egfr.evidence,
                qualifiers=meds_flag,
                causes=causes,
            )
        )
    return tuple(out)

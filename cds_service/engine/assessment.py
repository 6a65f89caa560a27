"""The assessment: every conclusion of clinical-rules.md sections 0-7.1 with its evidence.

``assess`` is pure: facts, ``now`` and settings in; a frozen ``Assessment`` out. It never raises on missing or
unusable data: those become ``unknown`` conclusions with notes that say why. It holds conclusions drawn from the
facts only: what to recommend is decided afterwards, from it, by ``cds_service.engine.recommend``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cds_service.engine.alcohol import AlcoholResult, assess_alcohol
from cds_service.engine.deficiency import assess_deficiency
from cds_service.engine.egfr import EgfrResult, assess_egfr
from cds_service.engine.facts import Evidence, Facts, MedicationFact
from cds_service.engine.femg import FemgResult, assess_femg
from cds_service.engine.magnesium import MagnesiumResult, assess_ionized, assess_serum
from cds_service.engine.mds import MdsResult, compute_mds
from cds_service.engine.medications import current_medications, product_kind, salt_class, with_class
from cds_service.engine.scope import assess_scope
from cds_service.engine.settings import ClinicalSettings
from cds_service.engine.vocabulary import RULES_VERSION, Deficiency, DrugClass, Scope


@dataclass(frozen=True)
class Assessment:
    """Everything the engine concluded for one patient at ``now``."""

    now: datetime
    scope: Scope
    age_years: int | None  # whole years at `now` (the youngest the birth date allows); None without a birth date
    mds: MdsResult
    egfr: EgfrResult
    serum_mg: MagnesiumResult
    ionized_mg: MagnesiumResult
    femg: FemgResult
    alcohol: AlcoholResult
    deficiency: Deficiency
    current_medications: tuple[MedicationFact, ...]
    other_risk_drugs: tuple[str, ...]
    other_risk_evidence: tuple[Evidence, ...]
    notes: tuple[str, ...]
    rules_version: str = RULES_VERSION


def other_risk_drug_names(
    current: tuple[MedicationFact, ...],
) -> tuple[tuple[str, ...], tuple[Evidence, ...]]:
    """Ingredient names (sorted, unique) of current other magnesium-wasting drugs, and their evidence."""
    drugs = with_class(current, {DrugClass.MG_WASTING_OTHER})
    names: set[str] = set()
    for drug in drugs:
        # [PAP26]'s list lives in terminology (class mg-wasting-other); name only the ingredients of that class.
        classes = dict(drug.ingredient_classes)
        listed = [i for i in drug.ingredients if DrugClass.MG_WASTING_OTHER in classes.get(i, frozenset())]
        names.update(i.lower() for i in (listed or list(drug.ingredients)))
    return tuple(sorted(names)), tuple(d.evidence for d in drugs)


def assess(facts: Facts, now: datetime, settings: ClinicalSettings) -> Assessment:
    """Assess one patient at ``now`` (clinical-rules.md sections 0-7.1)."""
    scope = assess_scope(facts.patient, now)
    current = current_medications(facts.medications, now)
    egfr = assess_egfr(facts, now, settings)
    alcohol = assess_alcohol(facts, now, settings)
    serum = assess_serum(facts, now, settings)
    ionized = assess_ionized(facts, now, settings)
    femg = assess_femg(facts, now, settings, serum.category, egfr)
    mds = compute_mds(current, facts.medications_known, egfr, alcohol)
    other_names, other_evidence = other_risk_drug_names(current)
    notes = (
        *facts.data_notes,
        *_availability_notes(facts),
        *egfr.notes,
        *serum.notes,
        *ionized.notes,
        *alcohol.notes,
    )
    return Assessment(
        now=now,
        scope=scope.scope,
        age_years=scope.age_years,
        mds=mds,
        egfr=egfr,
        serum_mg=serum,
        ionized_mg=ionized,
        femg=femg,
        alcohol=alcohol,
        deficiency=assess_deficiency(serum.category, ionized.category),
        current_medications=current,
        other_risk_drugs=other_names,
        other_risk_evidence=other_evidence,
        notes=tuple(dict.fromkeys(notes)),
    )


def _availability_notes(facts: Facts) -> tuple[str, ...]:
    """What could not be retrieved at all, and what that does to the conclusions."""
    notes = []
    if not facts.medications_known:
        notes.append("medication lists could not be retrieved: each drug component of the MDS is 0-1")
    if not facts.labs_known:
        notes.append("laboratory results could not be retrieved: magnesium, eGFR and alcohol are unknown")
    if not facts.conditions_known:
        notes.append("conditions could not be retrieved: an alcohol use disorder diagnosis may be missed")
    if not facts.orders_known:
        notes.append("existing orders could not be retrieved: a suggested test may already be ordered")
    return tuple(notes)


def evidence_to_dict(evidence: Evidence) -> dict[str, Any]:
    """JSON-safe evidence."""
    return {
        "resource": f"{evidence.resource_type}/{evidence.resource_id}",
        "code": evidence.code,
        "display": evidence.display,
        "value": evidence.value,
        "unit": evidence.unit,
        "date": evidence.date.isoformat() if evidence.date is not None else None,
        "note": evidence.note,
    }


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _magnesium_to_dict(result: MagnesiumResult) -> dict[str, Any]:
    return {
        "value_mmol_l": result.value_mmol_l,
        "comparator": result.comparator,
        "category": result.category,
        "preliminary": result.preliminary,
        "unusable_reason": result.unusable_reason,
        "evidence": [evidence_to_dict(result.evidence)] if result.evidence is not None else [],
        "stale": [evidence_to_dict(result.stale)] if result.stale is not None else [],
        "reference_low": result.reference_low,
        "reference_high": result.reference_high,
        "reference_source": result.reference_source,
        "reported_value": result.reported_value,
        "reported_unit": result.reported_unit,
    }


def _medication_to_dict(medication: MedicationFact) -> dict[str, Any]:
    return {
        "resource": f"{medication.resource_type}/{medication.resource_id}",
        "display": medication.display,
        "ingredients": list(medication.ingredients),
        "classes": sorted(medication.classes),
        "draft": medication.is_draft,
        "product_kind": product_kind(medication),
        "salt_class": salt_class(medication),
        "product_rule": medication.product_rule or None,
    }


def assessment_to_dict(assessment: Assessment, recommendation_codes: Sequence[str]) -> dict[str, Any]:
    """The assessment as the JSON of issue 3 (``mgcds evaluate --json``), with the codes of the cards returned."""
    a = assessment
    return {
        "rules_version": a.rules_version,
        "scope": a.scope,
        "age_years": a.age_years,
        "now": a.now.isoformat(),
        "mds": {
            "min": a.mds.min,
            "max": a.mds.max,
            "group": a.mds.group,
            "components": [
                {
                    "name": c.name,
                    "points": [c.points[0], c.points[1]],
                    "basis": c.basis,
                    "evidence": [evidence_to_dict(e) for e in c.evidence],
                }
                for c in a.mds.components
            ],
        },
        "egfr": {
            "value": a.egfr.value,
            "comparator": a.egfr.comparator,
            "source": a.egfr.source,
            "age_years": a.egfr.age_years,
            "preliminary": a.egfr.preliminary,
            "evidence": [evidence_to_dict(e) for e in a.egfr.evidence],
            "stale": [evidence_to_dict(e) for e in a.egfr.stale],
            "reported_same_day": a.egfr.reported_same_day,
            "reported_same_day_comparator": a.egfr.reported_same_day_comparator,
            "not_computed": a.egfr.gap,
        },
        "serum_mg": _magnesium_to_dict(a.serum_mg),
        "ionized_mg": _magnesium_to_dict(a.ionized_mg),
        "femg": {
            "percent": a.femg.percent,
            "interpretation": a.femg.interpretation,
            "evidence": [evidence_to_dict(e) for e in a.femg.evidence],
        },
        "alcohol": {
            "heavy": a.alcohol.heavy,
            "method": a.alcohol.method,
            "drinks_per_day_low": _finite(a.alcohol.drinks_per_day_low),
            "drinks_per_day_high": _finite(a.alcohol.drinks_per_day_high),
            "evidence": [evidence_to_dict(e) for e in a.alcohol.evidence],
        },
        "other_risk_drugs": list(a.other_risk_drugs),
        "magnesium_products": [_medication_to_dict(m) for m in a.current_medications if product_kind(m) is not None],
        "deficiency": a.deficiency,
        "recommendations": list(recommendation_codes),
        "notes": list(a.notes),
    }

"""Builders for engine facts in tests: small, explicit, one default patient."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from cds_service.engine.assessment import Assessment, assess
from cds_service.engine.facts import (
    ConditionFact,
    Evidence,
    Facts,
    LabResult,
    MedicationFact,
    OrderFact,
    PatientFacts,
)
from cds_service.engine.recommend import recommend
from cds_service.engine.recommend.types import Recommendation
from cds_service.engine.settings import ClinicalSettings
from cds_service.engine.vocabulary import MG_SALT_CLASSES, DrugClass, MagnesiumProductKind

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
_ids = itertools.count(1)

# mg/dL -> mmol/L factor of clinical-rules.md section 2 (the extractor applies it; tests apply it by hand).
MG_DL_TO_MMOL_L = 0.4114


def lab(
    concept: str,
    value: float | None,
    *,
    days_ago: float = 1,
    status: str = "final",
    comparator: str | None = None,
    band: str | None = None,
    ref_low: float | None = None,
    ref_high: float | None = None,
    unusable: str | None = None,
    effective: datetime | None = None,
) -> LabResult:
    """One LabResult, ``days_ago`` before NOW."""
    rid = f"obs-{next(_ids)}"
    when = effective if effective is not None else NOW - timedelta(days=days_ago)
    return LabResult(
        concept=concept,
        status=status,
        effective=when,
        value=value,
        evidence=Evidence("Observation", rid, None, concept, str(value), None, when),
        comparator=comparator,
        answer_band=band,
        reference_low=ref_low,
        reference_high=ref_high,
        unusable_reason=unusable,
    )


def med(
    name: str,
    *classes: str,
    resource_type: str = "MedicationStatement",
    status: str = "active",
    draft: bool = False,
    concerned: bool = False,
    period_end: datetime | None = None,
    rid: str | None = None,
    kind: str | None = None,
    display: str | None = None,
) -> MedicationFact:
    """One medication by ingredient name and classes; a magnesium salt is an oral supplement unless ``kind`` says."""
    rid = rid or f"med-{next(_ids)}"
    if draft:
        resource_type, status = "MedicationRequest", "draft"
    salt = next((DrugClass(c) for c in classes if c in MG_SALT_CLASSES), None)
    if kind is None and salt is not None:
        kind = MagnesiumProductKind.ORAL_SUPPLEMENT
    return MedicationFact(
        ingredients=(name,),
        classes=frozenset(classes),
        resource_type=resource_type,
        resource_id=rid,
        status=status,
        evidence=Evidence(resource_type, rid, None, name),
        display=display or name.capitalize(),
        period_end=period_end,
        is_draft=draft,
        is_concerned=concerned,
        matched_by="test",
        ingredient_classes=((name, frozenset(classes)),),
        product_kind=MagnesiumProductKind(kind) if kind is not None else None,
        salt_class=salt,
    )


def condition(concept: str, clinical: str = "active", verification: str = "confirmed") -> ConditionFact:
    """One Condition fact."""
    rid = f"cond-{next(_ids)}"
    return ConditionFact(concept, clinical, verification, Evidence("Condition", rid))


def order(concept: str, status: str = "active", draft: bool = False) -> OrderFact:
    """One ServiceRequest fact."""
    rid = f"sr-{next(_ids)}"
    return OrderFact(concept, status, Evidence("ServiceRequest", rid), is_draft=draft)


def facts(
    *,
    labs: tuple[LabResult, ...] = (),
    meds: tuple[MedicationFact, ...] = (),
    conditions: tuple[ConditionFact, ...] = (),
    orders: tuple[OrderFact, ...] = (),
    gender: str | None = "female",
    birth: date | None = date(1966, 1, 1),
    hook: str = "patient-view",
    medications_known: bool = True,
    orders_known: bool = True,
    data_notes: tuple[str, ...] = (),
    deceased: bool = False,
    birth_latest: date | None = None,
) -> Facts:
    """Facts for patient p1 (female, born 1966: 60 at NOW) unless told otherwise."""
    return Facts(
        patient=PatientFacts(birth, gender, deceased, birth_latest),
        labs=labs,
        medications=meds,
        conditions=conditions,
        orders=orders,
        medications_known=medications_known,
        orders_known=orders_known,
        data_notes=data_notes,
        hook=hook,
        patient_id="p1",
        encounter_id="e1",
    )


@dataclass(frozen=True)
class Evaluated:
    """An assessment and the recommendations computed from it, as the hook pipeline computes them."""

    assessment: Assessment
    recommendations: tuple[Recommendation, ...]

    @property
    def recommendation_codes(self) -> tuple[str, ...]:
        """The codes of the recommendations, in card order."""
        return tuple(r.code for r in self.recommendations)


def assess_and_recommend(f: Facts, settings: ClinicalSettings | None = None) -> Evaluated:
    """assess() then recommend() at NOW, the two steps of the pipeline."""
    settings = settings or ClinicalSettings()
    assessment = assess(f, NOW, settings)
    return Evaluated(assessment, recommend(assessment, f, settings))

"""Magnesium Depletion Score [FAN21] as an interval (clinical-rules.md section 4).

[FAN21] Fan L et al. J Nutr 2021;151(8):2226-35. doi:10.1093/jn/nxab138
Components: current diuretic 1, current PPI 1, eGFR 60 to < 90 1 / < 60 2, heavy drinking 1 (range 0-5).
Unknown inputs widen a component to an interval; the score is reported as [min, max], never a guess.
"""

from __future__ import annotations

from dataclasses import dataclass

from cds_service.engine.alcohol import AlcoholResult
from cds_service.engine.egfr import EgfrResult
from cds_service.engine.facts import Evidence, MedicationFact
from cds_service.engine.medications import with_class
from cds_service.engine.rounding import number_text
from cds_service.engine.vocabulary import DIURETIC_CLASSES, DrugClass, MdsComponentName, MdsGroup

DIURETIC_POINTS = 1  # [FAN21]
PPI_POINTS = 1  # [FAN21]
HEAVY_DRINKING_POINTS = 1  # [FAN21]
MDS_MAX = 5  # [FAN21]

# Group boundaries (clinical-rules.md section 4).
GROUP_LOW_MAX = 1
GROUP_MODERATE = 2
GROUP_HIGH_MIN = 3


@dataclass(frozen=True)
class MdsComponent:
    """One MDS component: its points as an interval, why, and the evidence."""

    name: MdsComponentName
    points: tuple[int, int]
    basis: str  # "present" | "absent" | "unknown" | an eGFR band, machine-readable
    evidence: tuple[Evidence, ...] = ()


@dataclass(frozen=True)
class MdsResult:
    """The score interval, its group and components."""

    min: int
    max: int
    group: MdsGroup
    components: tuple[MdsComponent, ...]


def mds_group(low: int, high: int) -> MdsGroup:
    """low if max <= 1; moderate if min = max = 2; high if min >= 3; otherwise indeterminate."""
    if high <= GROUP_LOW_MAX:
        return MdsGroup.LOW
    if low == high == GROUP_MODERATE:
        return MdsGroup.MODERATE
    if low >= GROUP_HIGH_MIN:
        return MdsGroup.HIGH
    return MdsGroup.INDETERMINATE


def drug_component(
    name: MdsComponentName,
    classes: frozenset[str],
    points: int,
    current: tuple[MedicationFact, ...],
    medications_known: bool,
) -> MdsComponent:
    """A drug component: present if a current drug has the class; unknown if the lists were not retrieved."""
    found = with_class(current, classes)
    if found:
        return MdsComponent(name, (points, points), "present", tuple(m.evidence for m in found))
    if not medications_known:
        return MdsComponent(name, (0, points), "unknown")
    return MdsComponent(name, (0, 0), "absent")


def egfr_component(egfr: EgfrResult) -> MdsComponent:
    """The eGFR component: [0, 2] when unknown, widened by a comparator."""
    low, high = egfr.points
    basis = "unknown" if egfr.value is None else f"egfr {egfr.comparator or ''}{number_text(egfr.value)}"
    return MdsComponent(MdsComponentName.EGFR, (low, high), basis, egfr.evidence)


def alcohol_component(alcohol: AlcoholResult) -> MdsComponent:
    """The heavy-drinking component."""
    if alcohol.heavy is True:
        return MdsComponent(MdsComponentName.HEAVY_DRINKING, (1, 1), "present", alcohol.evidence)
    if alcohol.heavy is False:
        return MdsComponent(MdsComponentName.HEAVY_DRINKING, (0, 0), "absent", alcohol.evidence)
    return MdsComponent(MdsComponentName.HEAVY_DRINKING, (0, HEAVY_DRINKING_POINTS), "unknown", alcohol.evidence)


def compute_mds(
    current: tuple[MedicationFact, ...], medications_known: bool, egfr: EgfrResult, alcohol: AlcoholResult
) -> MdsResult:
    """The MDS interval from its four components."""
    components = (
        drug_component(MdsComponentName.DIURETIC, DIURETIC_CLASSES, DIURETIC_POINTS, current, medications_known),
        drug_component(
            MdsComponentName.PROTON_PUMP_INHIBITOR,
            frozenset({DrugClass.PROTON_PUMP_INHIBITOR}),
            PPI_POINTS,
            current,
            medications_known,
        ),
        egfr_component(egfr),
        alcohol_component(alcohol),
    )
    low = sum(c.points[0] for c in components)
    high = sum(c.points[1] for c in components)
    return MdsResult(low, high, mds_group(low, high), components)

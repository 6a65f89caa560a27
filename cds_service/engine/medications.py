"""Which medications are current, and which are magnesium products of which kind (clinical-rules.md sections 4, 5, 8).

A MedicationStatement is current with status active or intended and an effectivePeriod not ended before
``now``; a MedicationRequest with status active, or a draft from the hook's draftOrders. Drafts count as
current: the MDS is the one the patient will have once the order is signed.

Magnesium products (section 5): terminology gives each its kind. The supplement rules (start, switch, persistent
deficiency) concern oral supplements only; "oral magnesium" for the safety rules (stop, contraindication, spacing)
is an oral supplement or a laxative/antacid; parenteral magnesium is treatment already under way.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from cds_service.engine.facts import MedicationFact
from cds_service.engine.vocabulary import MG_SALT_CLASSES, DrugClass, MagnesiumProductKind

CURRENT_STATEMENT_STATUSES = frozenset({"active", "intended"})
CURRENT_REQUEST_STATUSES = frozenset({"active"})
ORAL_KINDS = frozenset({MagnesiumProductKind.ORAL_SUPPLEMENT, MagnesiumProductKind.LAXATIVE_ANTACID})
# switch-to-organic / persistent-deficiency: organic or unstated salts may already be absorbed well [FIO21].
NOT_ONLY_INORGANIC = frozenset({DrugClass.MG_SALT_ORGANIC, DrugClass.MG_SALT_UNSPECIFIED})


def is_current(medication: MedicationFact, now: datetime) -> bool:
    """Whether the medication counts as current use at ``now``."""
    if medication.is_draft:
        return True
    if medication.period_end is not None and medication.period_end < now:
        return False
    if medication.resource_type == "MedicationStatement":
        return medication.status in CURRENT_STATEMENT_STATUSES
    return medication.status in CURRENT_REQUEST_STATUSES


def current_medications(medications: Iterable[MedicationFact], now: datetime) -> tuple[MedicationFact, ...]:
    """The current medications, drafts included, in input order."""
    return tuple(m for m in medications if is_current(m, now))


def with_class(medications: Iterable[MedicationFact], classes: Iterable[str]) -> tuple[MedicationFact, ...]:
    """The medications carrying any of ``classes``."""
    wanted = frozenset(classes)
    return tuple(m for m in medications if m.classes & wanted)


def product_kind(medication: MedicationFact) -> MagnesiumProductKind | None:
    """The magnesium product kind (section 5), or None for a medication without magnesium."""
    if medication.product_kind is not None:
        return medication.product_kind
    # A magnesium salt whose kind was not read is taken as section 5's default: a supplement sold for magnesium.
    return MagnesiumProductKind.ORAL_SUPPLEMENT if medication.classes & MG_SALT_CLASSES else None


def salt_class(medication: MedicationFact) -> DrugClass | None:
    """The magnesium salt class (organic, unspecified, inorganic), or None for a medication without magnesium."""
    if medication.salt_class is not None:
        return medication.salt_class
    for candidate in (DrugClass.MG_SALT_ORGANIC, DrugClass.MG_SALT_UNSPECIFIED, DrugClass.MG_SALT_INORGANIC):
        if candidate in medication.classes:
            return candidate
    return None


def is_magnesium_product(medication: MedicationFact) -> bool:
    """Whether the medication is a magnesium product of any kind."""
    return product_kind(medication) is not None


def is_oral_supplement(medication: MedicationFact) -> bool:
    """An oral magnesium supplement: the supplement rules of section 7.2 concern these only."""
    return product_kind(medication) == MagnesiumProductKind.ORAL_SUPPLEMENT


def is_oral_magnesium(medication: MedicationFact) -> bool:
    """Oral magnesium for the safety rules: a supplement, a laxative or an antacid (stop, contraindication, spacing)."""
    return product_kind(medication) in ORAL_KINDS


def is_parenteral_magnesium(medication: MedicationFact) -> bool:
    """Intravenous or intramuscular magnesium: the deficiency is being treated; never deleted by an order card."""
    return product_kind(medication) == MagnesiumProductKind.PARENTERAL


def is_inorganic_supplement(medication: MedicationFact) -> bool:
    """An oral supplement of an inorganic salt (oxide, hydroxide, carbonate, sulfate, chloride)."""
    return is_oral_supplement(medication) and salt_class(medication) == DrugClass.MG_SALT_INORGANIC


def ingredients_with(medication: MedicationFact, classes: Iterable[str]) -> tuple[str, ...]:
    """The medication's ingredients carrying any of ``classes`` (a combination product: only those)."""
    wanted = frozenset(classes)
    own = dict(medication.ingredient_classes)
    if own:
        return tuple(i for i in medication.ingredients if own.get(i, frozenset()) & wanted)
    return medication.ingredients if medication.classes & wanted else ()

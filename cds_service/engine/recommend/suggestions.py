"""The suggestions the rules offer (clinical-rules.md sections 7 and 8), built in one place for both rule sets."""

from __future__ import annotations

from cds_service.engine.facts import MedicationFact
from cds_service.engine.recommend.types import (
    CreateMedicationRequest,
    CreateServiceRequest,
    DeleteDraft,
    SuggestionSpec,
)
from cds_service.engine.settings import ClinicalSettings
from cds_service.engine.vocabulary import LabConcept

# Organic salts offered by `supplement-organic`, in the order clinical-rules.md lists them.
ORGANIC_SALTS = ("magnesium citrate", "magnesium glycinate", "magnesium lactate")
SWITCH_TARGET_SALT = "magnesium citrate"  # clinical-rules.md sections 7 and 8
CREATININE_LOINC = "2160-0"  # clinical-rules.md section 7


def order_serum_magnesium(settings: ClinicalSettings) -> SuggestionSpec:
    """Order serum magnesium (the configured LOINC code)."""
    test = CreateServiceRequest(settings.serum_mg_test_loinc, LabConcept.SERUM_MAGNESIUM)
    return SuggestionSpec("order-serum-mg", (test,))


def order_ionized_magnesium(settings: ClinicalSettings) -> SuggestionSpec:
    """Order ionized magnesium (the configured LOINC code)."""
    test = CreateServiceRequest(settings.ionized_mg_test_loinc, LabConcept.IONIZED_MAGNESIUM)
    return SuggestionSpec("order-ionized-mg", (test,))


def order_creatinine() -> SuggestionSpec:
    """Order serum creatinine, for an eGFR."""
    return SuggestionSpec("order-creatinine", (CreateServiceRequest(CREATININE_LOINC, LabConcept.SERUM_CREATININE),))


def start_organic_salts(settings: ClinicalSettings) -> tuple[SuggestionSpec, ...]:
    """One start suggestion per organic salt, at the configured elemental dose."""
    return tuple(
        SuggestionSpec(
            "start-" + salt.replace(" ", "-"),
            (CreateMedicationRequest(salt, settings.supplement_elemental_mg_per_day),),
        )
        for salt in ORGANIC_SALTS
    )


def start_citrate(settings: ClinicalSettings) -> SuggestionSpec:
    """Start magnesium citrate in place of a current inorganic salt (patient-view)."""
    create = CreateMedicationRequest(SWITCH_TARGET_SALT, settings.supplement_elemental_mg_per_day)
    return SuggestionSpec("switch-to-magnesium-citrate", (create,))


def replace_draft_with_citrate(draft: MedicationFact, settings: ClinicalSettings) -> SuggestionSpec:
    """Delete a draft inorganic salt and create magnesium citrate, as one suggestion (order hooks)."""
    return SuggestionSpec(
        "switch-to-magnesium-citrate",
        (
            DeleteDraft(draft.resource_type, draft.resource_id),
            CreateMedicationRequest(SWITCH_TARGET_SALT, settings.supplement_elemental_mg_per_day),
        ),
    )


def delete_draft(draft: MedicationFact) -> SuggestionSpec:
    """Remove a draft order."""
    return SuggestionSpec("delete-draft", (DeleteDraft(draft.resource_type, draft.resource_id),))

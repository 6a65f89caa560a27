"""The engine's configurable clinical thresholds (clinical-rules.md marks them *configurable*).

Defaults are the values in clinical-rules.md; ``cds_service.config`` fills them from ``MGCDS_CLINICAL_*``.
"""

from __future__ import annotations

from dataclasses import dataclass

# clinical-rules.md 7.5: urgent-evaluation and any critical card are never suppressed for longer than this.
CRITICAL_SUPPRESSION_MAX_HOURS = 24


@dataclass(frozen=True)
class ClinicalSettings:
    """Configurable thresholds and order codes; the defaults are clinical-rules.md's."""

    magnesium_window_days: int = 90  # clinical-rules.md section 1
    renal_window_days: int = 365  # clinical-rules.md section 1
    alcohol_window_days: int = 365  # clinical-rules.md section 1
    ionized_low_mmol_l: float = 0.44  # [GRE96] whole-blood ionized magnesium reference interval
    ionized_high_mmol_l: float = 0.59  # [GRE96]
    serum_mg_test_loinc: str = "19123-9"  # clinical-rules.md section 7; alternative 2601-3
    ionized_mg_test_loinc: str = "73573-8"  # clinical-rules.md section 7
    supplement_elemental_mg_per_day: int = 300  # [PIC20] trial doses 250-400 mg/day; 350 mg/day upper level
    # clinical-rules.md 7.5: how long feedback on a card suppresses the same recommendation for the same patient and
    # EHR (days). recent-result-elsewhere: None means the magnesium window (the result stays current that long).
    suppression_accepted_days: int = 7
    suppression_already_addressed_days: int = 30
    suppression_recent_result_elsewhere_days: int | None = None
    suppression_patient_declined_days: int = 180
    suppression_not_clinically_relevant_days: int = 365
    suppression_other_reason_days: int = 30  # overridden with another reason, or none

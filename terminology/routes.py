"""Is a medication given parenterally? From its route (SNOMED CT or HL7 v2 table 0162) or its dose form.

Why it matters: clinical-rules.md's magnesium-salt advice is about oral supplements. Switching to an organic salt is
a bioavailability argument (gut absorption), and spacing from tetracyclines, fluoroquinolones and the rest is a
chelation-in-the-gut argument; neither applies to intravenous or intramuscular magnesium sulfate or chloride, which
treat severe deficiency, eclampsia and torsades. The engine therefore needs to know a magnesium order is parenteral.

Sources: SNOMED CT route concepts 47625008 |Intravenous route|, 78421000 |Intramuscular route|, 34206005
|Subcutaneous route| as used in HL7 FHIR R4 examples (MedicationRequest/Immunization ``route``); HL7 v2 table 0162
codes IV, IM, SC (FHIR CodeSystem ``v2-0162``); dose-form words from RxNorm's dose form names (Injection, Injectable
Solution, Prefilled Syringe, Cartridge, Auto-Injector, Pen Injector) as printed in the product names of the value sets.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from terminology.model import CodeRef

SNOMED = "http://snomed.info/sct"
V2_ROUTE = "http://terminology.hl7.org/CodeSystem/v2-0162"

PARENTERAL_ROUTE_CODES: frozenset[tuple[str, str]] = frozenset(
    {
        (SNOMED, "47625008"),  # Intravenous route
        (SNOMED, "78421000"),  # Intramuscular route
        (SNOMED, "34206005"),  # Subcutaneous route
        (V2_ROUTE, "IV"),
        (V2_ROUTE, "IM"),
        (V2_ROUTE, "SC"),
    }
)

# Whole words only: "iv" must not match inside "active", "im" inside "time".
_PARENTERAL_ROUTE_TEXT = re.compile(
    r"\b(intravenous(ly)?|iv|ivpb|intramuscular(ly)?|im|subcutaneous(ly)?|sc|sq|infusion)\b", re.IGNORECASE
)
_PARENTERAL_FORM_TEXT = re.compile(
    r"\b(injection|injectable|prefilled syringe|cartridge|auto-injector|pen injector|for infusion)\b", re.IGNORECASE
)


def is_parenteral_route(codings: Iterable[CodeRef], text: str | None) -> bool:
    """True when a dosage route coding or its text names an intravenous, intramuscular or subcutaneous route."""
    for coding in codings:
        if (coding.system or "", coding.code or "") in PARENTERAL_ROUTE_CODES:
            return True
        if coding.display and _PARENTERAL_ROUTE_TEXT.search(coding.display):
            return True
    return bool(text and _PARENTERAL_ROUTE_TEXT.search(text))


def is_parenteral_form(names: Iterable[str | None]) -> bool:
    """True when a product name (an RxNorm SCD/SBD name, a display or free text) names an injectable dose form."""
    return any(name and _PARENTERAL_FORM_TEXT.search(name) for name in names)

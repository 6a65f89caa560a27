"""Fixtures for the terminology tests: one Terminology per session (indexes are immutable)."""

from __future__ import annotations

import pytest

from terminology import Terminology, load_terminology

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
ATC = "http://www.whocc.no/atc"


@pytest.fixture(scope="session")
def term() -> Terminology:
    """The packaged value sets, no remote lookup."""
    return load_terminology()

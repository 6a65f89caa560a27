"""Properties of the engine over generated facts (hypothesis)."""

from __future__ import annotations

import itertools
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from cds_service.engine.assessment import assess, assessment_to_dict
from cds_service.engine.facts import (
    Evidence,
    Facts,
    MedicationFact,
)
from cds_service.engine.medications import product_kind
from cds_service.engine.recommend.types import CreateMedicationRequest, DeleteDraft
from cds_service.engine.settings import ClinicalSettings
from tests.unit.engine.builders import NOW, assess_and_recommend, facts, lab
from tests.unit.engine.strategies import DEPLETING, any_facts

SETTINGS = ClinicalSettings()
_ids = itertools.count(1)


@settings(max_examples=300, deadline=None)
@given(any_facts())
def test_engine_never_raises_and_min_le_max(f: Facts) -> None:
    a = assess(f, NOW, SETTINGS)
    assert 0 <= a.mds.min <= a.mds.max <= 5
    json.dumps(assessment_to_dict(a, ()), allow_nan=False)  # JSON-safe: no NaN or infinity leaks out


# Rank of "how strongly deficiency is indicated"; excess is the opposite of deficiency, ranked lowest.
DEFICIENCY_RANK = {"excess": 0, "unlikely": 1, "unknown": 1, "possible": 2, "likely": 3}


@settings(max_examples=200, deadline=None)
@given(
    serum=st.floats(min_value=0.05, max_value=2.5),
    drop=st.floats(min_value=0.001, max_value=2.0),
    ionized=st.one_of(st.none(), st.floats(min_value=0.2, max_value=0.9)),
)
def test_lowering_serum_never_makes_deficiency_less_severe(serum: float, drop: float, ionized: float | None) -> None:
    def deficiency(value: float) -> str:
        labs = [lab("serum-magnesium", value)]
        if ionized is not None:
            labs.append(lab("ionized-magnesium", ionized))
        return assess(facts(labs=tuple(labs)), NOW, SETTINGS).deficiency

    lower = max(serum - drop, 0.0)
    assert DEFICIENCY_RANK[deficiency(lower)] >= DEFICIENCY_RANK[deficiency(serum)]


@settings(max_examples=200, deadline=None)
@given(any_facts(), st.sampled_from(DEPLETING), st.booleans())
def test_adding_depleting_drug_never_lowers_mds_min(f: Facts, drug_class: str, draft: bool) -> None:
    before = assess(f, NOW, SETTINGS).mds.min
    rid = f"d{next(_ids)}"
    extra = MedicationFact(
        ingredients=("x",),
        classes=frozenset({drug_class}),
        resource_type="MedicationRequest",
        resource_id=rid,
        status="draft" if draft else "active",
        evidence=Evidence("MedicationRequest", rid),
        is_draft=draft,
    )
    after = assess(Facts(**{**f.__dict__, "medications": (*f.medications, extra)}), NOW, SETTINGS).mds.min
    assert after >= before


# Section 7.2's exclusions and section 0's scope, for any facts (the hand-worked rows are in test_recommend.py).
EXCLUSIVE_SUPPLEMENT_CARDS = {"supplement-organic", "switch-to-organic", "persistent-deficiency"}
LIKELY_ONLY = {"check-renal-function", "supplement-renal-caution", "supplement-organic", "persistent-deficiency"}
ORDER_CODES = {"order-depletes-mg", "order-supplement-contraindicated", "order-parenteral-mg-monitor", "order-spacing"}


@settings(max_examples=400, deadline=None)
@given(any_facts())
def test_card_exclusions_and_scope_hold_for_any_facts(f: Facts) -> None:
    evaluated = assess_and_recommend(f, SETTINGS)
    a, recs = evaluated.assessment, evaluated.recommendations
    codes = [r.code for r in recs]
    assert len(codes) == len(set(codes)) or f.hook != "patient-view"
    if a.scope == "deceased":
        assert recs == ()
    if a.scope == "pediatric":
        assert set(codes) <= {"urgent-evaluation", "evaluate-hypermagnesemia", "stop-supplement"}
        assert all(r.suggestions == () and "pediatric" in r.qualifiers for r in recs)
    if f.hook != "patient-view":
        assert set(codes) <= ORDER_CODES | {"switch-to-organic"}
        # A parenteral magnesium order is never offered for deletion (section 8).
        for rec in recs:
            for suggestion in rec.suggestions:
                for action in suggestion.actions:
                    if isinstance(action, DeleteDraft):
                        draft = rec.concerned_draft
                        assert draft is not None
                        assert product_kind(draft) != "parenteral"
        return
    assert len(set(codes) & EXCLUSIVE_SUPPLEMENT_CARDS) <= 1
    assert not {"supplement-organic", "supplement-renal-caution"} <= set(codes)
    if a.deficiency != "likely":
        assert not set(codes) & LIKELY_ONLY
    if a.deficiency == "possible":
        assert set(codes) <= {"test-ionized-mg", "switch-to-organic"}
    if "supplement-organic" in codes or any(
        isinstance(x, CreateMedicationRequest) for r in recs for s in r.suggestions for x in s.actions
    ):
        # No oral start below eGFR 30 or with renal function unknown (switch-to-organic may replace a salt taken).
        drafting = [r.code for r in recs if any(isinstance(x, CreateMedicationRequest) for s in r.suggestions
                                                 for x in s.actions)]  # fmt: skip
        assert a.egfr.below_30 is not True
        if set(drafting) - {"switch-to-organic"}:
            assert a.egfr.below_30 is False

"""Hypothesis strategies for engine facts: every combination of present, missing and malformed data."""

from __future__ import annotations

import itertools
from datetime import date, timedelta

from hypothesis import strategies as st

from cds_service.engine.facts import (
    ConditionFact,
    Evidence,
    Facts,
    LabResult,
    MedicationFact,
    OrderFact,
    PatientFacts,
)
from cds_service.engine.vocabulary import DrugClass, MagnesiumProductKind
from tests.unit.engine.builders import NOW

_ids = itertools.count(1)

CONCEPTS = ["serum-magnesium", "ionized-magnesium", "urine-magnesium", "urine-creatinine", "serum-creatinine",
            "egfr", "alcohol-drinks-per-day", "auditc-frequency", "auditc-typical-drinks"]  # fmt: skip
STATUSES = ["final", "amended", "corrected", "preliminary", "entered-in-error", "cancelled", "registered"]
BANDS = ["never", "monthly-or-less", "2-4-per-month", "2-3-per-week", "4-plus-per-week",
         "1-2", "3-4", "5-6", "7-9", "10-plus", "nonsense"]  # fmt: skip
CLASSES = ["loop-diuretic", "thiazide-diuretic", "potassium-sparing-diuretic", "carbonic-anhydrase-inhibitor",
           "proton-pump-inhibitor", "mg-wasting-other", "mg-salt-organic", "mg-salt-inorganic",
           "interacts-tetracycline", "interacts-fluoroquinolone", "interacts-bisphosphonate",
           "interacts-levothyroxine", "interacts-integrase-inhibitor", "interacts-gabapentin",
           "interacts-eltrombopag", "mg-salt-unspecified"]  # fmt: skip
DEPLETING = ["loop-diuretic", "thiazide-diuretic", "potassium-sparing-diuretic",
             "carbonic-anhydrase-inhibitor", "proton-pump-inhibitor"]  # fmt: skip

SALTS = [DrugClass.MG_SALT_ORGANIC, DrugClass.MG_SALT_INORGANIC, DrugClass.MG_SALT_UNSPECIFIED]

optional_time = st.one_of(
    st.none(),
    st.integers(min_value=-5, max_value=800).map(lambda d: NOW - timedelta(days=d)),
)
values = st.one_of(
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=0, max_value=200),
)


@st.composite
def lab_results(draw: st.DrawFn) -> LabResult:
    rid = f"o{next(_ids)}"
    return LabResult(
        concept=draw(st.sampled_from(CONCEPTS)),
        status=draw(st.sampled_from(STATUSES)),
        effective=draw(optional_time),
        value=draw(values),
        evidence=Evidence("Observation", rid),
        comparator=draw(st.sampled_from([None, None, "<", "<=", ">", ">="])),
        answer_band=draw(st.one_of(st.none(), st.sampled_from(BANDS))),
        reference_low=draw(st.one_of(st.none(), st.floats(min_value=0, max_value=2))),
        reference_high=draw(st.one_of(st.none(), st.floats(min_value=0, max_value=2), st.just(float("inf")))),
        unusable_reason=draw(st.sampled_from([None, None, "unit 'g' not recognised"])),
    )


@st.composite
def medication_facts(draw: st.DrawFn) -> MedicationFact:
    rid = f"m{next(_ids)}"
    draft = draw(st.booleans())
    rtype = "MedicationRequest" if draft else draw(st.sampled_from(["MedicationStatement", "MedicationRequest"]))
    return MedicationFact(
        ingredients=tuple(draw(st.lists(st.text(max_size=12), max_size=2))),
        classes=frozenset(draw(st.lists(st.sampled_from(CLASSES), max_size=3))),
        resource_type=rtype,
        resource_id=rid,
        status=draw(st.sampled_from(["active", "intended", "stopped", "draft", "completed"])),
        evidence=Evidence(rtype, rid),
        display=draw(st.text(max_size=60)),
        period_end=draw(optional_time),
        is_draft=draft,
        is_concerned=draw(st.booleans()),
        product_kind=draw(st.sampled_from([None, None, *MagnesiumProductKind])),
        salt_class=draw(st.sampled_from([None, *SALTS])),
    )


@st.composite
def any_facts(draw: st.DrawFn) -> Facts:
    return Facts(
        patient=PatientFacts(
            birth_date=draw(st.one_of(st.none(), st.dates(min_value=date(1900, 1, 1), max_value=date(2030, 1, 1)))),
            gender=draw(st.sampled_from([None, "male", "female", "other", "unknown"])),
            deceased=draw(st.sampled_from([False, False, False, True])),
        ),
        labs=tuple(draw(st.lists(lab_results(), max_size=8))),
        medications=tuple(draw(st.lists(medication_facts(), max_size=5))),
        conditions=tuple(
            ConditionFact("alcohol-use-disorder", c, v, Evidence("Condition", f"c{next(_ids)}"))
            for c, v in draw(
                st.lists(
                    st.tuples(
                        st.sampled_from([None, "active", "resolved"]),
                        st.sampled_from([None, "confirmed", "refuted"]),
                    ),
                    max_size=2,
                )  # fmt: skip
            )
        ),
        orders=tuple(
            OrderFact(concept, status, Evidence("ServiceRequest", f"s{next(_ids)}"))
            for concept, status in draw(
                st.lists(
                    st.tuples(
                        st.sampled_from(["serum-magnesium", "ionized-magnesium"]),
                        st.sampled_from(["active", "draft", "completed"]),
                    ),
                    max_size=2,
                )  # fmt: skip
            )
        ),
        medications_known=draw(st.booleans()),
        labs_known=draw(st.booleans()),
        orders_known=draw(st.booleans()),
        data_notes=tuple(draw(st.lists(st.text(max_size=30), max_size=2))),
        hook=draw(st.sampled_from(["patient-view", "order-select", "order-sign"])),
        patient_id=draw(st.sampled_from([None, "p1"])),
        encounter_id=draw(st.sampled_from([None, "e1"])),
    )

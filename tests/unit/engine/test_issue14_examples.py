"""Issue 14's unsafe examples, each with the answer clinical-rules.md version 2 gives, derived by hand.

Version 1 gave the unsafe answers issue 14 lists; the version 2 answers are read off the rules by hand:

| # | example (issue 14) | version 2 answer (by hand) | source |
|---|---|---|---|
| 1 | IV magnesium sulfate order, eGFR 20, serum 0.60 | order-parenteral-mg-monitor (info), no delete | section 8 |
| 2 | laboratory eGFR 29.6, serum 0.60 | supplement-renal-caution (29.6 < 30, not rounded) | sections 3, 7.2 |
| 3 | 5-year-old, serum 0.60, laboratory eGFR 110 | no card (no dose-based card for a child) | section 0 |
| 4 | serum 1.60 at eGFR 20, no supplement | evaluate-hypermagnesemia (warning: high) | section 7.2 |
| 5 | serum 0.60 on magnesium glycinate, eGFR 45 | persistent-deficiency (warning) | section 7.2 |
| 6 | serum 0.60 on milk of magnesia, eGFR 45 | supplement-organic (a laxative is no supplement) | sections 5, 7.2 |
| 7 | serum 0.75 (low-normal), no risk factor, eGFR 95 | test-ionized-mg only, the salts as alternatives | section 7.2 |
| 8 | serum 0.60, creatinine 1.0 mg/dL on file, sex missing | check-renal-function, no creatinine order | section 7.2 |
| 9 | IV magnesium in pre-eclampsia, serum 2.8 | evaluate-hypermagnesemia, info (< 3.5 [LU00]) | section 7.2 |
| 10 | laboratory eGFR 89.5, PPI + loop, serum 0.90 | test-ionized-mg (1 + 1 + 1 = MDS 3) | sections 3, 4 |
"""

from __future__ import annotations

from datetime import date

import pytest

from cds_service.engine.facts import Facts
from cds_service.engine.vocabulary import RecommendationCode as Code
from tests.unit.engine.builders import assess_and_recommend, facts, lab, med

IV_SULFATE_DRAFT = med(
    "magnesium sulfate", "mg-salt-inorganic", kind="parenteral", draft=True, concerned=True, rid="iv-1"
)
IV_SULFATE = med("magnesium sulfate", "mg-salt-inorganic", kind="parenteral")
GLYCINATE = med("magnesium glycinate", "mg-salt-organic")
MILK_OF_MAGNESIA = med("magnesium hydroxide", "mg-salt-inorganic", kind="laxative-antacid")
LOW = lab("serum-magnesium", 0.60)

EXAMPLES: list[tuple[str, Facts, tuple[str, ...], str | None]] = [
    ("1 IV sulfate at eGFR 20", facts(hook="order-sign", labs=(LOW, lab("egfr", 20)), meds=(IV_SULFATE_DRAFT,)),
     (Code.ORDER_PARENTERAL_MG_MONITOR,), "info"),
    ("2 eGFR 29.6", facts(labs=(LOW, lab("egfr", 29.6))), (Code.SUPPLEMENT_RENAL_CAUTION,), "warning"),
    ("3 five-year-old", facts(birth=date(2020, 6, 1), labs=(LOW, lab("egfr", 110))), (), None),
    ("4 serum 1.60 at eGFR 20", facts(labs=(lab("serum-magnesium", 1.60), lab("egfr", 20))),
     (Code.EVALUATE_HYPERMAGNESEMIA,), "warning"),
    ("5 low on glycinate", facts(labs=(LOW, lab("egfr", 45)), meds=(GLYCINATE,)),
     (Code.PERSISTENT_DEFICIENCY,), "warning"),
    ("6 milk of magnesia", facts(labs=(LOW, lab("egfr", 45)), meds=(MILK_OF_MAGNESIA,)),
     (Code.SUPPLEMENT_ORGANIC,), "warning"),
    ("7 low-normal, one card",
     facts(labs=(lab("serum-magnesium", 0.75), lab("egfr", 95), lab("alcohol-drinks-per-day", 0))),
     (Code.TEST_IONIZED_MG,), "info"),
    ("8 creatinine on file, sex missing", facts(gender=None, labs=(LOW, lab("serum-creatinine", 1.0))),
     (Code.CHECK_RENAL_FUNCTION,), "info"),
    ("9 IV magnesium in pre-eclampsia", facts(labs=(lab("serum-magnesium", 2.8), lab("egfr", 95)), meds=(IV_SULFATE,)),
     (Code.EVALUATE_HYPERMAGNESEMIA,), "info"),
    ("10 eGFR 89.5", facts(labs=(lab("serum-magnesium", 0.90), lab("egfr", 89.5), lab("alcohol-drinks-per-day", 0)),
                          meds=(med("omeprazole", "proton-pump-inhibitor"), med("furosemide", "loop-diuretic"))),
     (Code.TEST_IONIZED_MG,), "info"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "f", "codes", "indicator"), EXAMPLES, ids=[e[0] for e in EXAMPLES])
def test_issue_14_example_gets_the_version_2_answer(
    name: str, f: Facts, codes: tuple[str, ...], indicator: str | None
) -> None:
    evaluated = assess_and_recommend(f)
    assert evaluated.recommendation_codes == codes, name
    if indicator is not None:
        assert evaluated.recommendations[0].indicator == indicator, name


def test_no_example_drafts_a_dose_where_version_2_forbids_it() -> None:
    # Examples 1 (parenteral, never deleted), 2 (eGFR < 30), 3 (a child), 8 (no creatinine twice): no suggestion.
    for name, f, _, _ in (EXAMPLES[0], EXAMPLES[1], EXAMPLES[2], EXAMPLES[7]):
        assert all(r.suggestions == () for r in assess_and_recommend(f).recommendations), name

"""What every recommendation may show and cite: the key figures of its summary and the magnesium evidence."""

from __future__ import annotations

from decimal import ROUND_FLOOR, Decimal

from cds_service.engine.assessment import Assessment
from cds_service.engine.facts import Evidence
from cds_service.engine.rounding import number_text


def mds_figure(assessment: Assessment) -> str:
    """The MDS as shown in a summary: "3/5" or "2-4/5"."""
    mds = assessment.mds
    return f"{mds.min}/5" if mds.min == mds.max else f"{mds.min}-{mds.max}/5"


def egfr_figure(value: float | None, comparator: str | None) -> str:
    """An eGFR as shown: unrounded as reported (29.6 stays 29.6, section 3), comparator kept (">60")."""
    return "unknown" if value is None else f"{comparator or ''}{number_text(value)}"


def egfr_shown(value: float | None, comparator: str | None) -> str:
    """An eGFR as a card shows it: as reported, but a long decimal (Synthea's 81.17286141086646) cut to one decimal.

    Cut towards minus infinity, never rounded: the eGFR thresholds (30, 60, 90) are whole numbers, so the value shown
    is below a threshold exactly when the value is (29.96 shows as 29.9, never 30.0); the rules compare the unrounded
    value. A value with a comparator bounds the true value and is shown as reported (cutting "<29.96" would claim
    a bound the laboratory did not give).
    """
    if value is None:
        return "unknown"
    if comparator or float(value).is_integer():
        return egfr_figure(value, comparator)
    exact = Decimal(repr(float(value)))
    if exact.as_tuple().exponent >= -1:  # type: ignore[operator]  # one decimal or none: as reported
        return egfr_figure(value, None)
    cut = exact.quantize(Decimal("0.1"), rounding=ROUND_FLOOR)
    return format(cut, "f")


def common_figures(assessment: Assessment) -> tuple[tuple[str, str], ...]:
    """Key figures every card may show."""
    figures = [("mds", mds_figure(assessment)), ("deficiency", str(assessment.deficiency))]
    serum = assessment.serum_mg
    if serum.value_mmol_l is not None:
        figures.append(("serum_mg", f"{serum.comparator or ''}{serum.value_mmol_l:.2f}"))
    figures.append(("serum_category", str(serum.category)))
    if assessment.egfr.value is not None:
        figures.append(("egfr", egfr_figure(assessment.egfr.value, assessment.egfr.comparator)))
    return tuple(figures)


def mg_evidence(assessment: Assessment) -> tuple[Evidence, ...]:
    """The magnesium results behind a conclusion."""
    return tuple(e for e in (assessment.serum_mg.evidence, assessment.ionized_mg.evidence) if e is not None)

"""The review page's SVG charts: geometry, ticks and escaping, checked against values worked out by hand."""

from __future__ import annotations

import xml.etree.ElementTree as ET  # noqa: S405 - parsing our own output in a test

import pytest

from cds_service.api.review_insights import neutralise_cell
from cds_service.api.svgchart import HEIGHT, Series, grouped_bars, lines, nice_ticks, swatch

NS = {"s": "http://www.w3.org/2000/svg"}
# Plot area: 260 high minus a 28 top and a 58 bottom margin = 174 px tall, its baseline at y = 202.
PLOT_HEIGHT, BASELINE = 174.0, 202.0


@pytest.mark.parametrize(
    ("maximum", "ticks"),
    [
        (0, [0, 1]),  # nothing to show still gives an axis
        (1, [0, 1]),
        (3, [0, 1, 2, 3]),  # 3/4 = 0.75 -> step 1
        (7, [0, 2, 4, 6, 8]),  # 7/4 = 1.75 -> step 2
        (23, [0, 10, 20, 30]),  # 23/4 = 5.75 -> step 10 (5 < 5.75)
        (40, [0, 10, 20, 30, 40]),  # 40/4 = 10 -> step 10
        (1000, [0, 500, 1000]),  # 1000/4 = 250 -> step 500
    ],
)
def test_ticks_are_whole_numbers_in_1_2_5_steps(maximum: int, ticks: list[int]) -> None:
    assert nice_ticks(maximum) == ticks


def _parse(markup: str) -> ET.Element:
    return ET.fromstring(markup)  # noqa: S314 - our own output


def test_bars_stand_on_the_baseline_with_heights_in_proportion() -> None:
    svg = _parse(
        grouped_bars(
            "t",
            "c",
            ["2026-W09", "2026-W10"],
            [Series("shown", [4, 2], "#111111"), Series("accepted", [1, 0], "#222222")],
            y_label="cards",
        )
    )
    bars = svg.findall(".//s:rect[@class='bar']", NS)
    assert [(b.get("data-series"), b.get("data-category"), b.get("data-value")) for b in bars] == [
        ("shown", "2026-W09", "4"),
        ("accepted", "2026-W09", "1"),
        ("shown", "2026-W10", "2"),  # accepted 0 in W10 draws nothing
    ]
    # Ticks for 4 are 0..4 (4/4 = 1 -> step 1), so value v is 174 * v / 4 px tall.
    for bar, height in zip(bars, (174.0, 43.5, 87.0), strict=True):
        assert float(bar.get("height", "")) == pytest.approx(height)
        assert float(bar.get("y", "")) + height == pytest.approx(BASELINE)
    assert bars[0].get("fill") == "#111111"
    assert bars[0].findtext("s:title", namespaces=NS) == "2026-W09 · shown: 4"


def test_lines_have_a_point_per_category_zeros_included() -> None:
    svg = _parse(lines("t", "r", ["a", "b", "c"], [Series("x", [0, 2, 1], "#333333")], y_label="n"))
    points = svg.findall(".//s:circle[@class='point']", NS)
    assert [p.get("data-value") for p in points] == ["0", "2", "1"]
    # Ticks 0..2 (2/4 = 0.5 -> step 1): 0 on the baseline, 2 at the top (202 - 174 = 28), 1 half way (115).
    assert [float(p.get("cy", "")) for p in points] == pytest.approx([202.0, 28.0, 115.0])
    polyline = svg.find(".//s:polyline", NS)
    assert polyline is not None
    assert polyline.get("stroke") == "#333333"
    assert len(polyline.get("points", "").split()) == 3


def test_no_style_anywhere_so_the_csp_needs_nothing_inline() -> None:
    markup = str(grouped_bars("t", "c", ["a"], [Series("s", [1], "#000000")], y_label="n"))
    markup += str(lines("t", "l", ["a", "b"], [Series("s", [1, 0], "#000000")], y_label="n")) + str(swatch("#fff"))
    assert "style" not in markup
    assert "<script" not in markup
    assert f'viewBox="0 0 880 {HEIGHT}"' in markup


def test_text_from_the_ehr_is_escaped() -> None:
    evil = '<script>alert(1)</script>" onload="x'
    markup = str(lines(evil, "r", [evil], [Series(evil, [1], "#000000")], y_label="n"))
    assert "<script>" not in markup
    # In attributes the quote is escaped too, so no attribute can be closed early.
    assert 'data-series="&lt;script&gt;alert(1)&lt;/script&gt;&quot; onload=&quot;x"' in markup
    svg = _parse(markup)
    assert svg.findtext("s:title", namespaces=NS) == evil  # the text survives, as text


def test_series_must_fit_the_categories() -> None:
    with pytest.raises(ValueError, match="2 values for 3 categories"):
        grouped_bars("t", "c", ["a", "b", "c"], [Series("s", [1, 2], "#000000")], y_label="n")
    with pytest.raises(ValueError, match="negative"):
        lines("t", "c", ["a"], [Series("s", [-1], "#000000")], y_label="n")


@pytest.mark.parametrize(
    ("cell", "written"),
    [
        ("=1+2", "'=1+2"),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("a=b", "a=b"),  # only the first character matters
        ("2026-W09", "2026-W09"),
        (3, "3"),
        (None, ""),
    ],
)
def test_csv_cells_that_a_spreadsheet_would_run_are_neutralised(cell: object, written: str) -> None:
    assert neutralise_cell(cell) == written

"""Small static SVG charts for the review page, drawn with presentation attributes only.

Why not matplotlib, which the dry-run report uses: its SVG carries a ``<style>`` element and a ``style="..."``
attribute on nearly every element (13 on a two-bar chart, measured with matplotlib 3.11), and the review page's
Content-Security-Policy (``style-src 'self'``, no ``'unsafe-inline'``) blocks both, so the chart would lose its
colours and report a violation per element. Here every colour, size and position is a presentation attribute
(``fill``, ``stroke``, ``font-size``), which the policy does not govern, and the elements are built with
ElementTree, which escapes every text and attribute (reason displays come from the EHR).

Each mark carries ``data-series``, ``data-category`` and ``data-value`` and a ``<title>`` (the browser's tooltip,
and what a screen reader reads), so tests and people can check a figure without reading pixels. The page shows
the same figures in a table beside each chart.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET  # noqa: S405 - building, never parsing: nothing untrusted is read as XML
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup

# Okabe-Ito: distinguishable with the common colour-vision deficiencies (as the dry-run report).
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
WIDTH = 880
HEIGHT = 260
_MARGIN_LEFT, _MARGIN_RIGHT, _MARGIN_TOP, _MARGIN_BOTTOM = 48, 12, 28, 58
_FONT = "system-ui, -apple-system, Segoe UI, sans-serif"
_AXIS = "#57606a"
_GRID = "#d0d7de"
_MAX_TICKS = 5
_MAX_CATEGORY_LABELS = 14
_MAX_BAR = 26.0  # a few weeks should not draw slabs


@dataclass(frozen=True)
class Series:
    """One named series: a value per category, drawn in ``colour``."""

    name: str
    values: Sequence[int]
    colour: str


def nice_ticks(maximum: int) -> list[int]:
    """Whole-number axis ticks from 0 to at least ``maximum``, in steps of 1, 2 or 5 times a power of ten."""
    if maximum <= 0:
        return [0, 1]
    raw = maximum / (_MAX_TICKS - 1)
    power = 10 ** math.floor(math.log10(raw)) if raw >= 1 else 1
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    top = math.ceil(maximum / step) * step
    return list(range(0, top + 1, step))


def _text(parent: ET.Element, x: float, y: float, content: str, **attrs: str) -> ET.Element:
    element = ET.SubElement(
        parent, "text", {"x": _n(x), "y": _n(y), "font-family": _FONT, "font-size": "11", "fill": _AXIS, **attrs}
    )
    element.text = content
    return element


def _n(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


class _Frame:
    """The plotting area, its y scale and the category slots along x."""

    def __init__(self, root: ET.Element, categories: Sequence[str], series: Sequence[Series], y_label: str) -> None:
        self.left, self.top = _MARGIN_LEFT, _MARGIN_TOP
        self.width = WIDTH - _MARGIN_LEFT - _MARGIN_RIGHT
        self.height = HEIGHT - _MARGIN_TOP - _MARGIN_BOTTOM
        self.bottom = self.top + self.height
        self.slot = self.width / max(len(categories), 1)
        self.ticks = nice_ticks(max((v for s in series for v in s.values), default=0))
        axes = ET.SubElement(root, "g", {"class": "axes"})
        for tick in self.ticks:
            y = self.y(tick)
            ET.SubElement(
                axes,
                "line",
                {"x1": _n(self.left), "x2": _n(self.left + self.width), "y1": _n(y), "y2": _n(y), "stroke": _GRID},
            )
            _text(axes, self.left - 6, y + 4, str(tick), **{"text-anchor": "end"})
        _text(
            axes,
            12,
            self.top + self.height / 2,
            y_label,
            **{"text-anchor": "middle", "transform": f"rotate(-90 12 {_n(self.top + self.height / 2)})"},
        )
        every = max(1, math.ceil(len(categories) / _MAX_CATEGORY_LABELS))
        for i, category in enumerate(categories):
            if i % every == 0 or i == len(categories) - 1:
                x = self.centre(i)
                _text(
                    axes,
                    x,
                    self.bottom + 14,
                    category,
                    **{"text-anchor": "end", "transform": f"rotate(-35 {_n(x)} {_n(self.bottom + 14)})"},
                )
        ET.SubElement(
            axes,
            "line",
            {
                "x1": _n(self.left),
                "x2": _n(self.left + self.width),
                "y1": _n(self.bottom),
                "y2": _n(self.bottom),
                "stroke": _AXIS,
            },
        )

    def y(self, value: float) -> float:
        return self.bottom - self.height * value / self.ticks[-1]

    def centre(self, index: int) -> float:
        return self.left + self.slot * (index + 0.5)


def _svg(title: str, chart_id: str, kind: str) -> ET.Element:
    root = ET.Element(
        "svg",
        {
            "xmlns": "http://www.w3.org/2000/svg",
            "viewBox": f"0 0 {WIDTH} {HEIGHT}",
            "width": str(WIDTH),
            "height": str(HEIGHT),
            "role": "img",
            "aria-labelledby": f"{chart_id}-title",
            "class": f"chart {kind}",
            "data-chart": chart_id,
        },
    )
    ET.SubElement(root, "title", {"id": f"{chart_id}-title"}).text = title
    _text(root, _MARGIN_LEFT, 16, title, **{"font-size": "13", "font-weight": "600", "fill": "#1b1f23"})
    return root


def _legend(root: ET.Element, series: Sequence[Series]) -> None:
    legend = ET.SubElement(root, "g", {"class": "legend"})
    x = float(WIDTH - _MARGIN_RIGHT)
    for item in reversed(series):
        width = 18 + 6.2 * len(item.name)
        x -= width + 10
        ET.SubElement(legend, "rect", {"x": _n(x), "y": "7", "width": "10", "height": "10", "fill": item.colour})
        _text(legend, x + 14, 16, item.name)


def _check(categories: Sequence[str], series: Sequence[Series]) -> None:
    for item in series:
        if len(item.values) != len(categories):
            raise ValueError(f"series {item.name!r} has {len(item.values)} values for {len(categories)} categories")
        if any(v < 0 for v in item.values):
            raise ValueError(f"series {item.name!r} has a negative count")


def _markup(root: ET.Element) -> Markup:
    # ElementTree escaped every text and attribute value, so the string is safe to insert as markup.
    return Markup(ET.tostring(root, encoding="unicode"))  # noqa: S704


def swatch(colour: str) -> Markup:
    """A small square of ``colour``, for a legend in HTML next to a chart (no style attribute needed)."""
    root = ET.Element("svg", {"xmlns": "http://www.w3.org/2000/svg", "width": "10", "height": "10", "class": "swatch"})
    ET.SubElement(root, "rect", {"width": "10", "height": "10", "fill": colour})
    return _markup(root)


def _chart(
    title: str,
    chart_id: str,
    kind: str,
    categories: Sequence[str],
    series: Sequence[Series],
    *,
    y_label: str,
    legend: bool,
) -> tuple[ET.Element, _Frame, ET.Element]:
    """What every chart starts with: the checked input, the svg root, its axes, the legend, the group of marks."""
    _check(categories, series)
    root = _svg(title, chart_id, kind)
    frame = _Frame(root, categories, series, y_label)
    if legend:
        _legend(root, series)
    return root, frame, ET.SubElement(root, "g", {"class": "marks"})


def grouped_bars(
    title: str,
    chart_id: str,
    categories: Sequence[str],
    series: Sequence[Series],
    *,
    y_label: str,
    legend: bool = True,
) -> Markup:
    """Bars side by side per category, one per series; a zero draws no bar (its category shows no mark)."""
    root, frame, marks = _chart(title, chart_id, "bars", categories, series, y_label=y_label, legend=legend)
    bar = min(frame.slot * 0.8 / max(len(series), 1), _MAX_BAR)
    for i, category in enumerate(categories):
        start = frame.centre(i) - bar * len(series) / 2
        for j, item in enumerate(series):
            value = item.values[i]
            if value == 0:
                continue
            y = frame.y(value)
            rect = ET.SubElement(
                marks,
                "rect",
                {
                    "class": "bar",
                    "x": _n(start + j * bar),
                    "y": _n(y),
                    "width": _n(max(bar - 1, 0.5)),
                    "height": _n(frame.bottom - y),
                    "fill": item.colour,
                    "data-series": item.name,
                    "data-category": category,
                    "data-value": str(value),
                },
            )
            ET.SubElement(rect, "title").text = f"{category} · {item.name}: {value}"
    return _markup(root)


def lines(
    title: str,
    chart_id: str,
    categories: Sequence[str],
    series: Sequence[Series],
    *,
    y_label: str,
    legend: bool = True,
) -> Markup:
    """One line per series with a point at every category, zeros included (a line has no gaps)."""
    root, frame, marks = _chart(title, chart_id, "lines", categories, series, y_label=y_label, legend=legend)
    for item in series:
        points = [(frame.centre(i), frame.y(v)) for i, v in enumerate(item.values)]
        if len(points) > 1:
            ET.SubElement(
                marks,
                "polyline",
                {
                    "class": "line",
                    "points": " ".join(f"{_n(x)},{_n(y)}" for x, y in points),
                    "fill": "none",
                    "stroke": item.colour,
                    "stroke-width": "2",
                    "data-series": item.name,
                },
            )
        for (x, y), category, value in zip(points, categories, item.values, strict=True):
            circle = ET.SubElement(
                marks,
                "circle",
                {
                    "class": "point",
                    "cx": _n(x),
                    "cy": _n(y),
                    "r": "3.5",
                    "fill": item.colour,
                    "data-series": item.name,
                    "data-category": category,
                    "data-value": str(value),
                },
            )
            ET.SubElement(circle, "title").text = f"{category} · {item.name}: {value}"
    return _markup(root)

"""The dry run's files: one CSV row per patient (streamed as results arrive) and a self-contained HTML page.

The HTML page draws the summary's figures with matplotlib as inline SVG (fonts as paths), with the exact numbers in
tables beside each chart: no script, no stylesheet or font from the network, readable offline and printable.
matplotlib is imported only when a page is written.
"""

from __future__ import annotations

import csv
import html
import io
from collections.abc import Mapping, Sequence
from typing import IO, Any

from cds_service.dryrun.results import PatientResult

CSV_COLUMNS = (
    "patient_id",
    "source",
    "status",
    "skip_reason",
    "age_band",
    "sex",
    "deceased",
    "mds_min",
    "mds_max",
    "mds_group",
    "serum_category",
    "ionized_category",
    "egfr_source",
    "magnesium_in_window",
    "deficiency",
    "recommendations",
    "indicators",
    "rules_version",
)
# Card indicator colours as EHRs usually show them; the rest of the palette is colour-blind safe (Okabe-Ito).
INDICATOR_COLOURS = {"info": "#0072B2", "warning": "#E69F00", "critical": "#D55E00"}
BAR = "#0072B2"
BAR_ALT = "#009E73"


class CsvReport:
    """One row per patient, written as each result arrives."""

    def __init__(self, stream: IO[str]) -> None:
        self._writer = csv.writer(stream)
        self._writer.writerow(CSV_COLUMNS)
        self.rows = 0

    def add(self, r: PatientResult) -> None:
        """Write one patient's row (codes and indicators space-separated, in card order)."""
        self._writer.writerow(
            (
                r.patient_id,
                r.source,
                r.status,
                r.reason or "",
                r.age_band,
                r.sex,
                "yes" if r.deceased else "no",
                "" if r.mds_min is None else r.mds_min,
                "" if r.mds_max is None else r.mds_max,
                r.mds_group,
                r.serum_category,
                r.ionized_category,
                r.egfr_source,
                "yes" if r.magnesium_in_window else "no",
                r.deficiency,
                " ".join(r.recommendations),
                " ".join(r.indicators),
                r.rules_version,
            )
        )
        self.rows += 1


# -- HTML ------------------------------------------------------------------------------------------------------


def _svg(figure: Any) -> str:
    buffer = io.StringIO()
    # No date and a fixed hash salt: the same figures give the same file.
    figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def _bars(
    title: str,
    labels: Sequence[str],
    values: Sequence[float],
    *,
    xlabel: str,
    colours: Any = BAR,
    width: float = 7.2,
) -> str:
    """A horizontal bar chart with each value written at its bar's end (whole-number ticks for counts)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    height = 0.9 + 0.42 * max(len(labels), 1)
    figure = Figure(figsize=(width, height))
    axes = figure.add_subplot()
    positions = list(range(len(labels)))
    bars = axes.barh(positions, values, color=colours)
    axes.set_yticks(positions, labels=labels)
    axes.invert_yaxis()
    axes.set_xlabel(xlabel)
    axes.set_title(title, loc="left", fontsize=11, fontweight="bold")
    axes.bar_label(bars, labels=[_number(v) for v in values], padding=3, fontsize=9)
    axes.set_xlim(0, max([*values, 1]) * 1.18)
    if all(float(v).is_integer() for v in values):
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.spines[["top", "right"]].set_visible(False)
    return _svg(figure)


def _paired(title: str, labels: Sequence[str], series: Mapping[str, Sequence[int]], *, xlabel: str) -> str:
    """Vertical bars of two series side by side (e.g. MDS minimum and maximum per point)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(7.2, 3.4))
    axes = figure.add_subplot()
    width = 0.8 / max(len(series), 1)
    for index, ((name, values), colour) in enumerate(zip(series.items(), (BAR, BAR_ALT), strict=False)):
        offsets = [i + (index - (len(series) - 1) / 2) * width for i in range(len(labels))]
        bars = axes.bar(offsets, values, width=width, label=name, color=colour)
        axes.bar_label(bars, labels=[_number(v) for v in values], padding=2, fontsize=8)
    axes.set_xticks(list(range(len(labels))), labels=labels)
    axes.set_xlabel(xlabel)
    axes.set_ylabel("patients")
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_title(title, loc="left", fontsize=11, fontweight="bold")
    axes.legend(frameon=False)
    axes.spines[["top", "right"]].set_visible(False)
    return _svg(figure)


def _number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = (
        "".join("<tr>" + "".join(f"<td>{html.escape(_cell(c))}</td>" for c in row) + "</tr>" for row in rows)
        or f'<tr><td colspan="{len(headers)}">none</td></tr>'
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _tile(value: Any, text: str) -> str:
    return f"<div class='tile'><b>{html.escape(_cell(value))}</b><span>{html.escape(text)}</span></div>"


def _cell(value: Any) -> str:
    return _number(value) if isinstance(value, int | float) and not isinstance(value, bool) else str(value)


_STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1a1a1a; margin: 0;
       background: #f6f7f9; }
main { max-width: 980px; margin: 0 auto; padding: 24px 28px 48px; background: #fff; }
h1 { font-size: 1.6em; margin: 0 0 4px; } h2 { font-size: 1.2em; margin: 32px 0 8px; border-bottom: 1px solid #ddd; }
.meta { color: #555; margin: 0 0 16px; }
.tiles { display: flex; flex-wrap: wrap; gap: 12px; margin: 16px 0; }
.tile { flex: 1 1 150px; border: 1px solid #d8dde3; border-radius: 6px; padding: 10px 14px; }
.tile b { display: block; font-size: 1.6em; } .tile span { color: #555; font-size: .9em; }
.pair { display: flex; flex-wrap: wrap; gap: 24px; align-items: flex-start; }
.chart svg { max-width: 100%; height: auto; }
table { border-collapse: collapse; margin: 8px 0 4px; font-size: .92em; }
th, td { border: 1px solid #d8dde3; padding: 3px 10px; text-align: left; } td:not(:first-child) { text-align: right; }
th { background: #eef1f4; } .note { color: #555; font-size: .9em; }
"""


def html_report(summary: Mapping[str, Any]) -> str:
    """The whole page for a dry-run summary."""
    patients = summary["patients"]
    cards = summary["cards"]
    mds = summary["mds"]
    magnesium = summary["magnesium"]
    n = patients["evaluated"]
    by_rec = cards["by_recommendation"]
    rec_labels = list(by_rec)
    rec_rates = [by_rec[c]["per_100_patients"] for c in rec_labels]
    ind_labels = list(cards["by_indicator"])
    ind_rates = [cards["by_indicator"][i]["per_100_patients"] for i in ind_labels]
    serum = magnesium["serum_categories"]
    ionized = magnesium["ionized_categories"]
    no_mg = magnesium["no_result_in_window"]
    run = summary.get("run", {})
    tiles = [
        (n, "patients evaluated"),
        (patients["skipped"], "skipped"),
        (cards["per_100_patients"], "cards per 100 patients"),
        (patients["with_cards_per_100_patients"], "patients with a card, per 100"),
        (f"{100 * no_mg['share']:.1f} %", "no magnesium result in the window"),
    ]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>MgCDS dry run: alert burden</title>",
        f"<style>{_STYLE}</style></head><body><main>",
        "<h1>MgCDS dry run: alert burden before go-live</h1>",
        '<p class="meta">'
        + html.escape(
            f"Evaluated at {summary.get('now', '?')} through the patient-view hook; rules version "
            f"{summary['rules_version']}; input: {summary.get('input', {}).get('kind', '?')}; "
            f"{run.get('workers', '?')} worker process(es), {run.get('patients_per_second', '?')} patients/s."
        )
        + "</p>",
        '<div class="tiles">' + "".join(_tile(value, text) for value, text in tiles) + "</div>",
        "<h2>Cards per 100 patients, by recommendation</h2>",
        '<div class="chart">'
        + _bars("Cards per 100 evaluated patients", rec_labels, rec_rates, xlabel="cards per 100 patients")
        + "</div>",
        _table(
            ("recommendation", "cards", "per 100 patients", "patients"),
            [(c, by_rec[c]["cards"], by_rec[c]["per_100_patients"], by_rec[c]["patients"]) for c in rec_labels],
        ),
        "<h2>Cards per 100 patients, by indicator</h2>",
        '<div class="chart">'
        + _bars(
            "Cards per 100 evaluated patients",
            ind_labels,
            ind_rates,
            xlabel="cards per 100 patients",
            colours=[INDICATOR_COLOURS.get(i, BAR) for i in ind_labels],
        )
        + "</div>",
        _table(
            ("indicator", "cards", "per 100 patients"),
            [(i, cards["by_indicator"][i]["cards"], cards["by_indicator"][i]["per_100_patients"]) for i in ind_labels],
        ),
        "<h2>Magnesium Depletion Score</h2>",
        '<p class="note">Where data are missing the score is an interval: its minimum and maximum are shown '
        "side by side. Groups follow the rules (indeterminate: the interval spans groups).</p>",
        '<div class="chart">'
        + _paired(
            "MDS distribution (patients)",
            list(mds["min"]),
            {"minimum": list(mds["min"].values()), "maximum": list(mds["max"].values())},
            xlabel="MDS points",
        )
        + "</div>",
        _table(
            ("MDS points", "patients (minimum)", "patients (maximum)"),
            [(p, mds["min"][p], mds["max"].get(p, 0)) for p in mds["min"]],
        ),
        '<div class="chart">'
        + _bars("MDS groups", list(mds["groups"]), list(mds["groups"].values()), xlabel="patients", colours=BAR_ALT)
        + "</div>",
        _table(("MDS group", "patients"), list(mds["groups"].items())),
        "<h2>Magnesium categories</h2>",
        '<div class="pair"><div class="chart">'
        + _bars("Serum magnesium", list(serum), list(serum.values()), xlabel="patients", width=4.4)
        + "</div><div class='chart'>"
        + _bars(
            "Ionized magnesium", list(ionized), list(ionized.values()), xlabel="patients", colours=BAR_ALT, width=4.4
        )
        + "</div></div>",
        _table(("serum category", "patients"), list(serum.items())),
        _table(("ionized category", "patients"), list(ionized.items())),
        f"<p>{no_mg['patients']:,} of {n:,} evaluated patients ({100 * no_mg['share']:.1f} %) have no magnesium "
        "result (serum or ionized) in the window.</p>",
        "<h2>eGFR sources, age bands, sexes</h2>",
        _table(("eGFR source", "patients"), list(summary["egfr_sources"].items())),
        _table(("age band", "patients"), list(summary["age_bands"].items())),
        _table(("sex", "patients"), list(summary["sexes"].items())),
        "<h2>Skipped</h2>",
        _table(("reason", "patients or files"), list(summary["skipped"]["by_reason"].items())),
        '<p class="note">Made by <code>mgcds dry-run</code>. No card was shown to anyone and no audit record was '
        "written unless the run was asked to (--audit).</p>",
        "</main></body></html>",
    ]
    return "\n".join(parts) + "\n"

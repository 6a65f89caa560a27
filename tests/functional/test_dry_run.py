"""`mgcds dry-run` end to end: the done-when checks of issue 18 item 1.

Each check computes both sides: the per-patient recommendations of the dry run, and those `mgcds evaluate` gives
for the same patient at the same ``--now`` (never expected cards of today's rules, which are changing). The JSON,
CSV and HTML outputs of one run are read back and must agree with each other.
"""

from __future__ import annotations

import csv
import json
import shutil
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from bench.population import bundle_of, population, write_ndjson
from cds_service.cli import main
from cds_service.config import Settings
from tests.conftest import DATA_DIR, SHARED_DIR

PATIENTS_DIR = DATA_DIR / "patients"
HAND_WRITTEN = sorted(PATIENTS_DIR.glob("p0*.json"))
NOW = "2026-11-21T12:00:00Z"
SYNTHEA_NOW = "2020-12-02T12:00:00Z"  # inside the renal windows of several of the six Synthea patients


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(dev=True, instance_path=tmp_path / "instance")


def run_cli(argv: list[str], settings: Settings, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run `mgcds ...` in this process; (exit status, stdout, stderr)."""
    status = main(argv, settings=settings)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def evaluate_codes(
    bundle: Path, now: str, settings: Settings, capsys: pytest.CaptureFixture[str], patient: str | None = None
) -> list[str]:
    """The recommendation codes of the cards `mgcds evaluate --bundle FILE --json` prints, in card order."""
    argv = ["evaluate", "--bundle", str(bundle), "--now", now, "--json"]
    if patient is not None:
        argv += ["--patient", patient]
    status, out, err = run_cli(argv, settings, capsys)
    assert status == 0, err
    return [card["extension"]["org.mgcds.recommendation"] for card in json.loads(out)["cards"]]


def csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as stream:
        return list(csv.DictReader(stream))


def codes_by_patient(rows: list[dict[str, str]]) -> dict[str, list[str]]:
    return {row["patient_id"]: row["recommendations"].split() for row in rows if row["status"] == "evaluated"}


class _Tables(HTMLParser):
    """The page's tables as lists of rows of cell texts, and every URL it would load."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.urls: list[str] = []
        self.svgs = 0
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "svg":
            self.svgs += 1
        for name, value in attrs:
            if name in ("src", "href") and value and not value.startswith("#"):
                self.urls.append(value)
            if name == "style" and value and "url(" in value:
                self.urls.append(value)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def html_tables(path: Path) -> _Tables:
    parser = _Tables()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def table_with(parser: _Tables, header: str) -> dict[str, list[str]]:
    """The table whose first header cell is ``header``: {first cell: the other cells} per body row."""
    for table in parser.tables:
        if table and table[0] and table[0][0] == header:
            return {row[0]: row[1:] for row in table[1:] if row}
    raise AssertionError(f"no table headed {header!r}")


def number(text: str) -> float:
    return float(text.replace(",", ""))


# -- the project's hand-written patients -----------------------------------------------------------------------


@pytest.fixture
def hand_written_run(
    tmp_path: Path, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> tuple[dict[str, Any], Path, Path]:
    """One dry run over tests/data/patients with two worker processes: (JSON summary, CSV path, HTML path)."""
    csv_path, html_path = tmp_path / "run.csv", tmp_path / "run.html"
    argv = ["dry-run", "--bundle", *map(str, HAND_WRITTEN), "--now", NOW, "--json", "--workers", "2"]
    status, out, err = run_cli([*argv, "--csv", str(csv_path), "--html", str(html_path)], settings, capsys)
    assert status == 0, err
    assert "patients/s" in err
    return json.loads(out), csv_path, html_path


def test_dry_run_gives_each_hand_written_patient_what_evaluate_gives(
    hand_written_run: tuple[dict[str, Any], Path, Path], settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    _summary, csv_path, _html = hand_written_run
    rows = csv_rows(csv_path)
    assert [row["source"] for row in rows] == [p.name for p in HAND_WRITTEN]
    dry = {row["source"]: row["recommendations"].split() for row in rows}
    evaluated = {path.name: evaluate_codes(path, NOW, settings, capsys) for path in HAND_WRITTEN}
    assert dry == evaluated
    # Not vacuous: the set holds patients with cards and without.
    assert any(dry.values())
    assert not all(dry.values())


def test_json_csv_and_html_agree(hand_written_run: tuple[dict[str, Any], Path, Path]) -> None:
    summary, csv_path, html_path = hand_written_run
    rows = [row for row in csv_rows(csv_path) if row["status"] == "evaluated"]
    n = len(rows)
    assert summary["patients"]["evaluated"] == n == len(HAND_WRITTEN)
    codes = Counter(code for row in rows for code in row["recommendations"].split())
    indicators = Counter(name for row in rows for name in row["indicators"].split())
    assert {c: v["cards"] for c, v in summary["cards"]["by_recommendation"].items()} == dict(codes)
    assert {k: v["cards"] for k, v in summary["cards"]["by_indicator"].items() if v["cards"]} == dict(indicators)
    assert summary["cards"]["total"] == sum(codes.values())
    for code, item in summary["cards"]["by_recommendation"].items():
        assert item["per_100_patients"] == pytest.approx(100 * codes[code] / n, abs=0.005)
    assert {k: v for k, v in summary["mds"]["groups"].items() if v} == dict(Counter(r["mds_group"] for r in rows))
    assert {k: v for k, v in summary["mds"]["min"].items() if v} == dict(Counter(r["mds_min"] for r in rows))
    serum = summary["magnesium"]["serum_categories"]
    assert {k: v for k, v in serum.items() if v} == dict(Counter(r["serum_category"] for r in rows))
    ionized = summary["magnesium"]["ionized_categories"]
    assert {k: v for k, v in ionized.items() if v} == dict(Counter(r["ionized_category"] for r in rows))
    assert {k: v for k, v in summary["egfr_sources"].items() if v} == dict(Counter(r["egfr_source"] for r in rows))
    no_mg = sum(row["magnesium_in_window"] == "no" for row in rows)
    assert summary["magnesium"]["no_result_in_window"] == {"patients": no_mg, "share": round(no_mg / n, 4)}
    assert summary["rules_version"] == "unknown" or summary["rules_version"] == rows[0]["rules_version"]

    page = html_tables(html_path)
    assert page.urls == []  # self-contained: nothing to fetch
    assert page.svgs >= 5  # the charts, inline
    recommendation_table = table_with(page, "recommendation")
    assert {code: int(number(cells[0])) for code, cells in recommendation_table.items()} == dict(codes)
    assert {code: number(cells[1]) for code, cells in recommendation_table.items()} == {
        code: item["per_100_patients"] for code, item in summary["cards"]["by_recommendation"].items()
    }
    assert {k: int(number(v[0])) for k, v in table_with(page, "MDS group").items()} == summary["mds"]["groups"]
    assert {k: int(number(v[0])) for k, v in table_with(page, "serum category").items()} == serum
    assert {k: int(number(v[0])) for k, v in table_with(page, "ionized category").items()} == ionized
    indicator_table = table_with(page, "indicator")
    assert {k: int(number(v[0])) for k, v in indicator_table.items()} == {
        k: v["cards"] for k, v in summary["cards"]["by_indicator"].items()
    }


# -- the six Synthea patients (../shared) ---------------------------------------------------------------------


def test_dry_run_gives_each_synthea_patient_what_evaluate_gives(
    tmp_path: Path, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = SHARED_DIR / "fixtures" / "synthea-r4"
    if not folder.exists():
        pytest.skip(f"{folder} not found: ../shared (the project's shared folder) is not beside this checkout")
    bundles = sorted(folder.glob("*.json"))
    assert len(bundles) == 6
    csv_path = tmp_path / "synthea.csv"
    argv = ["dry-run", "--bundle", str(folder), "--now", SYNTHEA_NOW, "--csv", str(csv_path), "--workers", "2"]
    status, _out, err = run_cli(argv, settings, capsys)
    assert status == 0, err
    rows = csv_rows(csv_path)
    assert len(rows) == 6
    assert all(row["status"] == "evaluated" for row in rows)
    dry = {row["source"]: row["recommendations"].split() for row in rows}
    assert dry == {path.name: evaluate_codes(path, SYNTHEA_NOW, settings, capsys) for path in bundles}


# -- NDJSON ---------------------------------------------------------------------------------------------------


def _hand_written_as_export(folder: Path) -> dict[str, str]:
    """The hand-written patients as a Bulk FHIR export: {Patient id: bundle file name}.

    References by fullUrl become ``Patient/<id>`` (an export references by id); each resource type goes to its own
    files, Observations split over two parts, every file written newest patient first, so one patient's resources
    are spread over several files and never next to each other.
    """
    files: dict[str, list[str]] = {}
    owners: dict[str, str] = {}
    for index, path in enumerate(HAND_WRITTEN):
        bundle = json.loads(path.read_text(encoding="utf-8"))
        patient_entry = next(e for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
        patient_id = patient_entry["fullUrl"].removeprefix("urn:uuid:")
        text = json.dumps(bundle).replace(json.dumps(patient_entry["fullUrl"]), json.dumps(f"Patient/{patient_id}"))
        for number_, entry in enumerate(json.loads(text)["entry"]):
            resource = entry["resource"]
            kind = resource["resourceType"]
            if kind == "Patient":
                resource["id"] = patient_id
            else:
                resource.setdefault("id", f"{patient_id}-{number_}")
            name = f"{kind}.{(index + number_) % 2 + 1}.ndjson" if kind == "Observation" else f"{kind}.ndjson"
            files.setdefault(name, []).append(json.dumps(resource))
        owners[patient_id] = path.name
    folder.mkdir()
    for name, lines in files.items():
        (folder / name).write_text("\n".join(reversed(lines)) + "\n", encoding="utf-8")
    return owners


def test_ndjson_with_each_patient_spread_over_files_gives_what_evaluate_gives(
    tmp_path: Path, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    export = tmp_path / "export"
    owners = _hand_written_as_export(export)
    owners_by_file = [
        {json.loads(line)["subject"]["reference"] for line in path.read_text().splitlines()}
        for path in sorted(export.glob("Observation.*.ndjson"))
    ]
    assert len(owners_by_file) == 2
    assert owners_by_file[0] & owners_by_file[1]  # some patients' Observations are in both files
    csv_path = tmp_path / "ndjson.csv"
    argv = ["dry-run", "--ndjson", str(export), "--now", NOW, "--json", "--csv", str(csv_path), "--workers", "2"]
    status, out, err = run_cli(argv, settings, capsys)
    assert status == 0, err
    summary = json.loads(out)
    assert summary["patients"]["evaluated"] == len(owners)
    assert summary["input"]["kind"] == "ndjson"
    dry = codes_by_patient(csv_rows(csv_path))
    assert dry == {
        patient_id: evaluate_codes(PATIENTS_DIR / name, NOW, settings, capsys) for patient_id, name in owners.items()
    }


def test_generated_population_as_ndjson_gives_what_evaluate_gives_for_each_bundle(
    tmp_path: Path, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    from datetime import datetime

    now = datetime.fromisoformat("2026-11-21T12:00:00+00:00")
    count = 60
    lines = write_ndjson(population(count, seed=7, now=now), tmp_path / "export", seed=7)
    assert lines["Patient.ndjson"] == count
    bundles = tmp_path / "bundles"
    bundles.mkdir()
    for resources in population(count, seed=7, now=now):
        (bundles / f"{resources[0]['id']}.json").write_text(json.dumps(bundle_of(resources, "transaction")))
    csv_path = tmp_path / "gen.csv"
    argv = ["dry-run", "--ndjson", str(tmp_path / "export"), "--now", NOW, "--csv", str(csv_path), "--workers", "1"]
    status, _out, err = run_cli(argv, settings, capsys)
    assert status == 0, err
    dry = codes_by_patient(csv_rows(csv_path))
    assert len(dry) == count
    expected = {path.stem: evaluate_codes(path, NOW, settings, capsys) for path in sorted(bundles.glob("*.json"))}
    assert dry == expected
    assert len({tuple(codes) for codes in dry.values()}) >= 4  # a varied population, not one answer for all


def test_an_unreadable_line_or_patient_is_skipped_with_its_reason_not_fatal(
    tmp_path: Path, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    export = tmp_path / "export"
    _hand_written_as_export(export)
    with (export / "Observation.1.ndjson").open("a", encoding="utf-8") as stream:
        stream.write("{not json\n")
        # Results of a patient the export has no Patient for.
        stream.write(json.dumps({"resourceType": "Observation", "subject": {"reference": "Patient/ghost"}}) + "\n")
    status, out, err = run_cli(
        ["dry-run", "--ndjson", str(export), "--now", NOW, "--json", "--workers", "1"], settings, capsys
    )
    assert status == 0, err
    summary = json.loads(out)
    assert summary["patients"]["evaluated"] == len(HAND_WRITTEN)
    assert summary["input"]["unreadable_lines"] == 1
    assert summary["skipped"]["listed"] == [
        {"id": "ghost", "source": "ndjson", "reason": "no Patient resource in the export"}
    ]
    assert "Traceback" not in err


def test_a_bundle_folder_reports_files_without_a_patient_apart_from_patients(
    tmp_path: Path, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "bundles"
    folder.mkdir()
    shutil.copy(HAND_WRITTEN[0], folder / "a.json")
    (folder / "broken.json").write_text("{", encoding="utf-8")
    (folder / "draft.json").write_text(json.dumps({"resourceType": "MedicationRequest"}), encoding="utf-8")
    status, out, err = run_cli(["dry-run", "--bundle", str(folder), "--now", NOW, "--json"], settings, capsys)
    assert status == 0, err
    summary = json.loads(out)
    assert summary["patients"] == {
        "seen": 1,
        "evaluated": 1,
        "skipped": 0,
        "deceased": 0,
        "with_cards": 1,
        "with_cards_per_100_patients": 100.0,
    }
    assert summary["skipped"]["files"] == 2
    assert summary["skipped"]["by_reason"] == {"the file is not valid JSON": 1, "the file is not a FHIR Bundle": 1}


def test_a_bundle_of_several_patients_gives_each_what_evaluate_gives(
    tmp_path: Path, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    entries = []
    for path in HAND_WRITTEN[:4]:
        entries.extend(json.loads(path.read_text(encoding="utf-8"))["entry"])
    combined = tmp_path / "four.json"
    combined.write_text(json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries}))
    csv_path = tmp_path / "four.csv"
    status, _out, err = run_cli(
        ["dry-run", "--bundle", str(combined), "--now", NOW, "--csv", str(csv_path)], settings, capsys
    )
    assert status == 0, err
    dry = codes_by_patient(csv_rows(csv_path))
    assert len(dry) == 4
    assert dry == {pid: evaluate_codes(combined, NOW, settings, capsys, patient=pid) for pid in dry}


# -- bad input, audit, progress --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--bundle", "/nonexistent/x.json"], "/nonexistent/x.json does not exist"),
        (["--ndjson", "{empty}"], "no .ndjson files in"),
        (["--bundle", "{patients}", "--now", "yesterday"], "--now must be an ISO 8601 date-time"),
        (["--bundle", "{patients}", "--csv", "/nonexistent/dir/x.csv"], "does not exist"),
        (["--bundle", "{patients}", "--token", "t"], "need --fhir-server"),
        (["--fhir-server", "http://127.0.0.1:9/fhir"], "needs --patient ID... or --patient-search"),
        (["--bundle", "{patients}", "--workers", "0"], "--workers must be at least 1"),
    ],
)
def test_bad_input_is_one_line_and_a_non_zero_exit(
    argv: list[str], message: str, tmp_path: Path, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty").mkdir()
    argv = [a.replace("{empty}", str(tmp_path / "empty")).replace("{patients}", str(HAND_WRITTEN[0])) for a in argv]
    status, out, err = run_cli(["dry-run", *argv], settings, capsys)
    assert status == 1
    assert out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("mgcds dry-run: ")
    assert message in err


def test_audit_records_are_written_only_when_asked(
    tmp_path: Path, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    from cds_service.factory import build_audit_reader

    files = [str(p) for p in HAND_WRITTEN[:3]]
    status, _out, err = run_cli(["dry-run", "--bundle", *files, "--now", NOW], settings, capsys)
    assert status == 0, err
    assert not (settings.instance_path / "audit.sqlite3").exists()  # no record, not even a store
    argv = ["dry-run", "--bundle", *files, "--now", NOW, "--audit", "--workers", "2"]
    status, _out, err = run_cli(argv, settings, capsys)
    assert status == 0, err
    reader = build_audit_reader(settings)
    try:
        assert reader.count() == 3
        assert reader.verify().ok
        records = list(reader.iter_records())
    finally:
        reader.close()
    assert {r.payload["user_id"] for r in records} == {"Practitioner/mgcds-dry-run"}


def test_progress_only_when_asked_or_on_a_terminal(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["dry-run", "--bundle", str(HAND_WRITTEN[0]), "--now", NOW]
    _status, _out, err = run_cli(argv, settings, capsys)
    assert "patient/s]" not in err  # captured stderr is no terminal: no bar (tqdm writes "N patient/s]")
    _status, _out, err = run_cli([*argv, "--progress"], settings, capsys)
    assert "patient/s]" in err

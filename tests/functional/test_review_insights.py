"""Trends, the patient timeline and held-back cards on the /audit page, through the Flask test client.

The records below are made by hand, and every expected figure is counted from them by hand (the comments show
the counting). 2026-03-01 (BASE_TIME, 09:30 UTC) is a Sunday: 2026 starts on a Thursday, so ISO week 1 starts on
Monday 2025-12-29 and week 9 on Monday 2026-02-23 (56 days later); 2026-03-02 starts week 10, 2026-03-16 week 12.

    call c1  pat-P  Sun 2026-03-01 (W09)  test-serum-mg, supplement-organic
             feedback: supplement-organic accepted 5 min later; test-serum-mg overridden (patient-declined)
             three days later, Wed 2026-03-04 (W10), which still counts in W09, the week the card was shown
    call c2  pat-P  Mon 2026-03-02 (W10)  test-serum-mg; holds back supplement-organic (c1's acceptance)
             feedback: test-serum-mg overridden (already-ordered: Already ordered)
    call c3  pat-Q  Mon 2026-03-16 (W12)  test-serum-mg
             feedback: overridden with reason code "-evil", display '=HYPERLINK("http://evil.example")',
             recorded *before* c3 reached the store (linked at read time, not sealed); and one item naming c3's
             card from another tenant (unlinked: it counts nowhere but in the unlinked figure)

Weeks W09..W12 (W11 has nothing and is a zero):
    test-serum-mg       shown 1 1 0 1  accepted 0 0 0 0  overridden 1 1 0 1
    supplement-organic  shown 1 0 0 0  accepted 1 0 0 0  overridden 0 0 0 0
    reasons: -evil 0 0 0 1, already-ordered 0 1 0 0, patient-declined 1 0 0 0 (ties in total: by label,
             and "-" sorts before letters)
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from cds_service.api.review import create_review_blueprint
from cds_service.audit.memory import InMemoryAuditLog
from cds_service.audit.records import SuppressedRecord
from cds_service.audit.trends import TrendFilter
from tests.unit.audit.helpers import BASE_TIME, make_call, make_card, make_feedback, open_pair, postgres_schema

TOKEN = "reviewer-token-0123456789abcdef"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
DAY = 24 * 60
SYSTEM = "https://mgcds.example/CodeSystem/override-reason"
ALREADY_ORDERED = {"system": SYSTEM, "code": "already-ordered", "display": "Already ordered"}
EVIL = {"system": SYSTEM, "code": "-evil", "display": '=HYPERLINK("http://evil.example")'}


@dataclass
class Store:
    """What the page reads, and the writer that filled it."""

    writer: Any
    reader: Any


@pytest.fixture(params=["sqlite", "memory", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """The same records in each kind of store the reader seam has."""
    if request.param == "memory":
        log = InMemoryAuditLog()
        yield Store(log, log)
        log.close()
    elif request.param == "sqlite":
        pair = open_pair(f"sqlite:///{tmp_path / 'audit.sqlite3'}", tmp_path / "spool.jsonl", init=True)
        yield Store(pair.writer, pair.reader)
        pair.close()
    else:
        with postgres_schema() as url:
            pair = open_pair(url, tmp_path / "spool.jsonl", init=True)
            yield Store(pair.writer, pair.reader)
            pair.close()  # before the schema is dropped


@pytest.fixture
def ids(store: Store) -> dict[str, str]:
    """The records of the module docstring; record ids (and card uuids) by name."""
    w = store.writer
    c1 = make_call(
        patient_id="pat-P", cards=(make_card("test-serum-mg"), make_card("supplement-organic", indicator="warning"))
    )
    c2 = make_call(patient_id="pat-P", minutes=DAY, cards=(make_card("test-serum-mg"),))
    c3 = make_call(patient_id="pat-Q", minutes=15 * DAY, cards=(make_card("test-serum-mg"),))
    got = {"c1": w.record_call(c1)}
    got["c1-accept"] = w.record_feedback(make_feedback(c1.cards[1].uuid, "accepted", minutes=5))
    got["c1-override"] = w.record_feedback(make_feedback(c1.cards[0].uuid, "overridden", minutes=3 * DAY))
    held = SuppressedRecord(
        code="supplement-organic",
        feedback_record_id=got["c1-accept"],
        outcome="accepted",
        reason=None,
        until=BASE_TIME + timedelta(days=30),
    )
    got["c2"] = w.record_call(replace(c2, suppressed=(held,)))
    got["c2-override"] = w.record_feedback(
        make_feedback(c2.cards[0].uuid, "overridden", minutes=DAY + 2, reason=ALREADY_ORDERED)
    )
    got["c3-override"] = w.record_feedback(
        make_feedback(c3.cards[0].uuid, "overridden", minutes=15 * DAY + 1, reason=EVIL)
    )
    got["c3-other-tenant"] = w.record_feedback(
        make_feedback(c3.cards[0].uuid, "accepted", minutes=15 * DAY + 2, tenant="hospital-b")
    )
    got["c3"] = w.record_call(c3)
    got["c1-serum-card"], got["c1-supplement-card"] = c1.cards[0].uuid, c1.cards[1].uuid
    got["c3-card"] = c3.cards[0].uuid
    return got


@pytest.fixture
def client(store: Store) -> FlaskClient:
    """The review blueprint alone."""
    app = Flask(__name__)
    app.register_blueprint(
        create_review_blueprint(store.reader, reviewer_token=TOKEN, reviewer_user="r", reviewer_password_hash="")
    )
    return app.test_client()


def test_reader_trends_are_the_hand_counted_figures(store: Store, ids: dict[str, str]) -> None:
    trends = store.reader.trends(TrendFilter())
    assert [w.label for w in trends.weeks] == ["2026-W09", "2026-W10", "2026-W11", "2026-W12"]
    assert [w.start.isoformat() for w in trends.weeks] == ["2026-02-23", "2026-03-02", "2026-03-09", "2026-03-16"]
    assert dict(trends.per_recommendation) == {
        "supplement-organic": {"shown": (1, 0, 0, 0), "accepted": (1, 0, 0, 0), "overridden": (0, 0, 0, 0)},
        "test-serum-mg": {"shown": (1, 1, 0, 1), "accepted": (0, 0, 0, 0), "overridden": (1, 1, 0, 1)},
    }
    assert [(r.label, v) for r, v in trends.override_reasons.items()] == [
        ('-evil: =HYPERLINK("http://evil.example")', (0, 0, 0, 1)),
        ("already-ordered: Already ordered", (0, 1, 0, 0)),
        ("patient-declined: Patient declined", (1, 0, 0, 0)),
    ]
    assert trends.unlinked_feedback == 1  # the other tenant's item on c3's card


def test_reader_trends_filters(store: Store, ids: dict[str, str]) -> None:
    from cds_service.audit.records import parse_moment

    # Since Monday 2026-03-02: c1 (and the feedback on its cards, even the override answered on 03-04) drops out.
    later = store.reader.trends(TrendFilter(since=parse_moment("2026-03-02")))
    assert [w.label for w in later.weeks] == ["2026-W10", "2026-W11", "2026-W12"]
    assert dict(later.per_recommendation) == {
        "test-serum-mg": {"shown": (1, 0, 1), "accepted": (0, 0, 0), "overridden": (1, 0, 1)}
    }
    # Until the end of 2026-03-01 and only supplement-organic: c1's second card and its acceptance.
    first = store.reader.trends(
        TrendFilter(until=parse_moment("2026-03-01", end_of_day=True), recommendation="supplement-organic")
    )
    assert [w.label for w in first.weeks] == ["2026-W09"]
    assert dict(first.per_recommendation) == {
        "supplement-organic": {"shown": (1,), "accepted": (1,), "overridden": (0,)}
    }
    assert dict(first.override_reasons) == {}
    assert first.unlinked_feedback == 0  # the unlinked item was answered on 2026-03-16
    nothing = store.reader.trends(TrendFilter(recommendation="no-such-code"))
    assert nothing.weeks == ()
    assert dict(nothing.per_recommendation) == {}


def test_trends_page_charts_the_figures(client: FlaskClient, ids: dict[str, str]) -> None:
    response = client.get("/audit/trends", headers=BEARER)
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    # Unchanged strict policy: nothing inline is needed.
    assert response.headers["Content-Security-Policy"].startswith("default-src 'none'; style-src 'self';")
    assert "style=" not in page
    assert "<style" not in page
    assert "<script" not in page
    bars = re.findall(r'<rect class="bar"[^>]*data-series="(\w+)" data-category="([\w-]+)" data-value="(\d+)"', page)
    # Non-zero figures only: test-serum-mg shown W09 W10 W12 and overridden W09 W10 W12; supplement shown and
    # accepted in W09. 8 bars.
    assert sorted(bars) == sorted(
        [
            ("shown", "2026-W09", "1"),
            ("shown", "2026-W10", "1"),
            ("shown", "2026-W12", "1"),
            ("overridden", "2026-W09", "1"),
            ("overridden", "2026-W10", "1"),
            ("overridden", "2026-W12", "1"),
            ("shown", "2026-W09", "1"),
            ("accepted", "2026-W09", "1"),
        ]
    )
    # One point per reason and week, zeros included: 3 reasons x 4 weeks.
    assert page.count('<circle class="point"') == 12
    assert "1 shown · 1 accepted · 0 overridden" in page  # supplement-organic
    assert "3 shown · 0 accepted · 3 overridden" in page  # test-serum-mg
    assert "1 feedback items answered in this period name no" in page
    # The EHR's reason display is text, never markup.
    assert "=HYPERLINK(&#34;http://evil.example&#34;)" in page or "=HYPERLINK(&quot;http://evil.example&quot;)" in page


def test_trends_totals_agree_with_the_list_summary(client: FlaskClient, store: Store, ids: dict[str, str]) -> None:
    from cds_service.audit.model import CallFilter

    summary = store.reader.summary(CallFilter())
    trends = store.reader.trends(TrendFilter())
    for code, counts in summary.per_recommendation.items():
        assert trends.totals(code) == {
            "shown": counts["shown"],
            "accepted": counts.get("accepted", 0),
            "overridden": counts.get("overridden", 0),
        }


def test_trends_csv_has_a_header_and_neutralised_cells(client: FlaskClient, ids: dict[str, str]) -> None:
    response = client.get("/audit/trends.csv?since=2026-03-01", headers=BEARER)
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"] == 'attachment; filename="mgcds-trends.csv"'
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0] == ["week", "week_start", "recommendation", "figure", "reason_code", "reason_display", "count"]
    # 2 codes x 4 weeks x 3 figures + 3 reasons x 4 weeks = 36 rows after the header.
    assert len(rows) == 37
    assert ["2026-W09", "2026-02-23", "test-serum-mg", "overridden", "", "", "1"] in rows
    assert ["2026-W11", "2026-03-09", "test-serum-mg", "shown", "", "", "0"] in rows
    assert ["2026-W09", "2026-02-23", "supplement-organic", "accepted", "", "", "1"] in rows
    assert [
        "2026-W12",
        "2026-03-16",
        "",
        "override-reason",
        "'-evil",
        '\'=HYPERLINK("http://evil.example")',
        "1",
    ] in rows
    for row in rows:
        for cell in row:
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r"))


@pytest.mark.parametrize(
    "query",
    [
        "since=last-tuesday",
        "until=2026-13-01",
        "since=2026-03-10&until=2026-03-01",
        "until=9999-12-31T23:30:00-01:00",
        "recommendation=a%00b",
        "recommendation=" + "x" * 300,
    ],
)
def test_bad_trend_filters_are_400(client: FlaskClient, ids: dict[str, str], query: str) -> None:
    page = client.get(f"/audit/trends?{query}", headers=BEARER)
    assert page.status_code == 400
    assert 'class="error"' in page.get_data(as_text=True)
    download = client.get(f"/audit/trends.csv?{query}", headers=BEARER)
    assert download.status_code == 400
    assert download.mimetype == "text/plain"


def test_insights_need_the_reviewer_credential(client: FlaskClient, ids: dict[str, str]) -> None:
    for path in ("/audit/trends", "/audit/trends.csv", "/audit/patients/pat-P"):
        response = client.get(path)
        assert response.status_code == 401
        assert b"pat-P" not in response.data
        assert b"test-serum-mg" not in response.data


def test_list_and_detail_link_the_patient_timeline(client: FlaskClient, ids: dict[str, str]) -> None:
    listing = client.get("/audit/", headers=BEARER).get_data(as_text=True)
    assert '<a href="/audit/patients/pat-P">pat-P</a>' in listing
    detail = client.get(f"/audit/calls/{ids['c3']}", headers=BEARER).get_data(as_text=True)
    assert '<a href="/audit/patients/pat-Q">pat-Q</a>' in detail


def test_timeline_lists_calls_cards_feedback_and_suppressions_in_order(
    client: FlaskClient, ids: dict[str, str]
) -> None:
    response = client.get("/audit/patients/pat-P", headers=BEARER)
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert ids["c3"] not in page  # another patient
    assert "2 calls" in page
    # Oldest first: c1, then c2.
    assert page.index(f"/audit/calls/{ids['c1']}") < page.index(f"/audit/calls/{ids['c2']}")
    assert page.count('data-testid="timeline-call"') == 2
    assert page.count('data-testid="timeline-card"') == 3  # c1 two cards, c2 one
    assert page.count('data-testid="timeline-feedback"') == 3  # c1 accepted + overridden, c2 overridden
    assert "overridden: Patient declined" in page
    assert "overridden: Already ordered" in page
    assert page.count("linked, sealed in the chain") == 3  # each call reached the store before its feedback
    # c2 held back supplement-organic because of c1's acceptance, answered 5 minutes after 09:30 on 03-01.
    held = page[page.index('data-testid="held-back"') :]
    assert "supplement-organic" in held
    assert ids["c1-accept"] in held
    assert "2026-03-01T09:35:00.000000Z" in held
    assert f"/audit/calls/{ids['c1']}" in held
    assert "2026-03-31T09:30:00.000000Z" in held  # until: BASE_TIME + 30 days


def test_timeline_shows_unlinked_feedback_and_read_time_links(client: FlaskClient, ids: dict[str, str]) -> None:
    page = client.get("/audit/patients/pat-Q", headers=BEARER).get_data(as_text=True)
    assert page.count('data-testid="timeline-feedback"') == 2
    # The override was stored before c3: linked when read, but the chain sealed no link.
    assert page.count("linked, sealed in the chain") == 0
    assert page.count('<span class="badge ok">linked</span>') == 1
    assert "unlinked: from another EHR, tenant or service" in page


def test_timeline_filters_and_bad_input(client: FlaskClient, ids: dict[str, str]) -> None:
    later = client.get("/audit/patients/pat-P?since=2026-03-02", headers=BEARER).get_data(as_text=True)
    assert later.count('data-testid="timeline-call"') == 1
    assert f'<header><a href="/audit/calls/{ids["c2"]}">' in later  # c1 is linked only from c2's held-back row
    assert client.get("/audit/patients/pat-P?since=yesterday", headers=BEARER).status_code == 400
    assert client.get("/audit/patients/pat%00P", headers=BEARER).status_code == 404
    for page in ("0", "-1", "two", "²", "99999999999999999999", "9" * 5000):
        assert client.get(f"/audit/patients/pat-P?page={page}", headers=BEARER).status_code == 400
    empty = client.get("/audit/patients/nobody", headers=BEARER)
    assert empty.status_code == 200
    assert "No calls for this patient" in empty.get_data(as_text=True)


def test_timeline_pages_newest_first(client: FlaskClient, store: Store) -> None:
    from cds_service.api.review_insights import TIMELINE_PAGE

    made = [store.writer.record_call(make_call(patient_id="pat-many", minutes=i, cards=())) for i in range(105)]
    first = client.get("/audit/patients/pat-many", headers=BEARER).get_data(as_text=True)
    second = client.get("/audit/patients/pat-many?page=2", headers=BEARER).get_data(as_text=True)
    assert TIMELINE_PAGE == 100
    # Page 1: the newest 100 (calls 5..104), oldest of them first; page 2: calls 0..4.
    assert made[4] not in first
    assert made[5] in first
    assert made[104] in first
    assert first.index(made[5]) < first.index(made[104])
    assert all(record_id in second for record_id in made[:5])
    assert made[5] not in second
    assert "earlier calls" in first
    assert "later calls" in second


def test_detail_shows_held_back_cards(client: FlaskClient, ids: dict[str, str]) -> None:
    page = client.get(f"/audit/calls/{ids['c2']}", headers=BEARER).get_data(as_text=True)
    held = page[page.index('data-testid="held-back"') :]
    assert "<code>supplement-organic</code>" in held
    assert "accepted" in held
    assert "2026-03-01T09:35:00.000000Z" in held  # answered
    assert "2026-03-31T09:30:00.000000Z" in held  # until
    assert f'href="/audit/calls/{ids["c1"]}"' in held  # the call whose card that feedback answered
    none = client.get(f"/audit/calls/{ids['c1']}", headers=BEARER).get_data(as_text=True)
    assert 'data-testid="held-back-none"' in none


def test_an_empty_period_says_so(client: FlaskClient, ids: dict[str, str]) -> None:
    response = client.get("/audit/trends?since=2027-01-01", headers=BEARER)
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert 'data-testid="no-trends"' in page
    assert "<svg" not in page
    download = client.get("/audit/trends.csv?since=2027-01-01", headers=BEARER)
    rows = list(csv.reader(io.StringIO(download.get_data(as_text=True))))
    assert rows == [["week", "week_start", "recommendation", "figure", "reason_code", "reason_display", "count"]]


def test_store_outage_is_503_on_the_insight_views(tmp_path: Path) -> None:
    pair = open_pair(f"sqlite:///{tmp_path / 'audit.sqlite3'}", tmp_path / "spool.jsonl", init=True)
    app = Flask(__name__)
    app.register_blueprint(
        create_review_blueprint(pair.reader, reviewer_token=TOKEN, reviewer_user="r", reviewer_password_hash="")
    )
    pair.close()
    (tmp_path / "audit.sqlite3").unlink()
    client = app.test_client()
    for path in ("/audit/trends", "/audit/trends.csv", "/audit/patients/pat-P"):
        response = client.get(path, headers=BEARER)
        assert response.status_code == 503
        assert "Audit store unavailable" in response.get_data(as_text=True)

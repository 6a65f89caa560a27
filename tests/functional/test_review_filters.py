"""Issue 16 B10: every filter of the review page is validated, on the SQLite and the PostgreSQL reader alike.

Out-of-range or malformed values answer 400 with a readable error on the page and list nothing; no query string
answers 5xx (a property test throws arbitrary names, values and bytes at the list). Also the hookInstance filter
(issue 18 item 3) and the detail page's id.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote, urlencode

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cds_service.api.review import create_review_blueprint
from cds_service.api.review_auth import AuthThrottle
from cds_service.audit.records import CallRecord
from tests.unit.audit.helpers import AuditPair, make_call, open_pair, postgres_schema, sqlite_pair

TOKEN = "reviewer-token-0123456789abcdef"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
CALLS = 30  # more than one page, so that the pager builds its links


@dataclass
class Stored:
    """A store and the calls written into it."""

    pair: AuditPair
    calls: list[CallRecord]


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def stored(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stored]:
    """A store of each kind holding CALLS calls a minute apart (patients p00..p29), read through its reader."""
    folder = tmp_path_factory.mktemp(request.param)
    calls = [make_call(patient_id=f"p{i:02d}", minutes=i) for i in range(CALLS)]
    with contextlib.ExitStack() as stack:
        if request.param == "sqlite":
            pair = sqlite_pair(folder)
        else:
            pair = open_pair(stack.enter_context(postgres_schema()), folder / "spool.jsonl", init=True)
        stack.callback(pair.close)
        for call in calls:
            pair.writer.record_call(call)
        yield Stored(pair, calls)


@pytest.fixture(scope="module")
def client(stored: Stored) -> FlaskClient:
    """The review blueprint over that store (the credential budget out of the way: it has tests of its own)."""
    app = Flask(__name__)
    app.register_blueprint(
        create_review_blueprint(
            stored.pair.reader,
            reviewer_token=TOKEN,
            reviewer_user="reviewer",
            reviewer_password_hash="",
            throttle=AuthThrottle("100000/second", "100000/second"),
        )
    )
    return app.test_client()


# query string -> what the page must say (each is a 400 listing nothing)
BAD = [
    ("page=0", "page: a whole number from 1 to 100000"),
    ("page=-1", "page: a whole number from 1 to 100000"),
    ("page=100001", "page: a whole number from 1 to 100000"),
    ("page=" + "9" * 30, "page: a whole number from 1 to 100000"),  # 10**30: SQLite cannot even bind it
    ("page=two", "page: a whole number"),
    ("page=%D9%A2", "page: a whole number"),  # Arabic-Indic two: int() reads it, the page does not
    ("page=1_0", "page: a whole number"),
    ("page=%2B3", "page: a whole number"),
    ("since=0000-01-01", "since: not an ISO 8601 date"),  # year 0
    ("since=2026-13-01", "since: not an ISO 8601 date"),
    ("until=9999-12-31T23:59:59-14:00", "until: out of range"),  # past year 9999 once in UTC
    ("since=0001-01-01T00:00:00%2B14:00", "since: out of range"),  # before year 1 once in UTC
    ("since=2026-03-01T00:00%2B14:30", "since: UTC offset out of range"),
    ("until=2026-03-01T00:00-23:59", "until: UTC offset out of range"),
    ("since=" + "2" * 5000, "since: not an ISO 8601 date or date-time: longer than 40"),
    ("since=2026-03-01%00", "since: not an ISO 8601 date"),
    ("since=2026-03-02&until=2026-03-01", "since is after until"),
    ("patient=p01%00", "patient: must not contain control characters"),
    ("user=a%0Ab", "user: must not contain control characters"),
    ("patient=" + "p" * 201, "patient: at most 200 characters"),
    ("hook_instance=" + "h" * 201, "hook_instance: at most 200 characters"),
    ("hook_instance=%00", "hook_instance: must not contain control characters"),
    ("recommendation=" + "a" * 65, "recommendation: at most 64 characters"),
    ("recommendation=Test%20Serum", "recommendation: a code such as test-serum-mg"),
    ("outcome=maybe", "outcome must be one of accepted, overridden, none"),
]


@pytest.mark.parametrize(("query", "message"), BAD, ids=[q[:40] for q, _ in BAD])
def test_a_bad_filter_is_a_400_naming_it_and_lists_nothing(client: FlaskClient, query: str, message: str) -> None:
    response = client.get(f"/audit/?{query}", headers=BEARER)
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert message in page
    assert "No calls match." in page
    assert "p05" not in page


GOOD = [
    ("page=2", 5),  # the oldest five of thirty
    ("page=3", 0),  # beyond the last page: an empty page, not an error
    ("page=100000", 0),
    ("since=0001-01-01&until=9999-12-31", 25),  # the widest range there is
    ("until=9999-12-31T23:59:59.999999Z", 25),
    ("since=2026-03-01T23:40:00%2B14:00", 20),  # 09:40 UTC: the calls from minute 10 on
    ("until=2026-02-28T21:30:00-12:00", 1),  # 09:30 UTC on March 1st: the first call only
    ("since=2026-03-01&until=2026-03-01", 25),  # a bare until date includes its day
    ("patient=p07", 1),
    ("patient=p07&_scheme=javascript&_external=1&endpoint=x", 1),  # names url_for would have obeyed
]


@pytest.mark.parametrize(("query", "rows"), GOOD, ids=[q[:40] for q, _ in GOOD])
def test_extreme_but_valid_filters_are_answered(client: FlaskClient, query: str, rows: int) -> None:
    response = client.get(f"/audit/?{query}", headers=BEARER)
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    page = response.get_data(as_text=True)
    assert len(re.findall(r'<tr>\s*<td><a href="/audit/calls/', page)) == rows


def test_the_pager_keeps_only_the_filters(client: FlaskClient) -> None:
    page = client.get("/audit/?_scheme=javascript&_external=1&since=2026-03-01", headers=BEARER).get_data(as_text=True)
    older = re.search(r'<a href="([^"]*)">older', page)
    assert older is not None
    assert older.group(1) == "/audit/?page=2&amp;since=2026-03-01"
    assert "javascript" not in page


def test_the_hook_instance_is_shown_and_filters_the_list(client: FlaskClient, stored: Stored) -> None:
    target = stored.calls[7]
    assert target.hook_instance is not None
    listing = client.get("/audit/", headers=BEARER).get_data(as_text=True)
    assert target.hook_instance in listing
    response = client.get("/audit/?" + urlencode({"hook_instance": target.hook_instance}), headers=BEARER)
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "1 found" in page
    assert "p07" in page
    assert "p08" not in page
    call_id = re.search(r'href="/audit/calls/([0-9a-f]+)"', page)
    assert call_id is not None
    detail = client.get(f"/audit/calls/{call_id.group(1)}", headers=BEARER).get_data(as_text=True)
    link = f'<a href="/audit/?hook_instance={target.hook_instance}">{target.hook_instance}</a>'
    assert link in detail
    assert client.get("/audit/?hook_instance=not-a-call", headers=BEARER).get_data(as_text=True).count("1 found") == 0


@pytest.mark.parametrize("record_id", ["x" * 65, "a%00b", "..", "a b", "%C3%A9"])
def test_a_detail_id_we_never_issue_is_404(client: FlaskClient, record_id: str) -> None:
    assert client.get(f"/audit/calls/{record_id}", headers=BEARER).status_code == 404


NAMES = st.sampled_from(
    ["page", "since", "until", "patient", "user", "hook_instance", "recommendation", "outcome"]
    + ["_scheme", "_external", "_anchor", "_method", "endpoint", "values", ""]
)
VALUES = st.one_of(
    st.text(max_size=60),  # any characters, control ones and NUL included
    st.from_regex(r"-?[0-9]{1,40}", fullmatch=True),
    st.from_regex(
        r"[0-9]{4}-[0-9]{2}-[0-9]{2}(T[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,9})?)?)?"
        r"(Z|[+-][0-9]{2}:[0-9]{2})?",
        fullmatch=True,
    ),
    st.sampled_from(["accepted", "overridden", "none", "9999-12-31", "0001-01-01", "x" * 300]),
)
RAW_BYTES = st.binary(max_size=40)  # not even UTF-8


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pairs=st.lists(st.tuples(NAMES, st.one_of(VALUES, RAW_BYTES)), max_size=6))
def test_no_query_string_is_answered_with_a_5xx(client: FlaskClient, pairs: list[tuple[str, str | bytes]]) -> None:
    query = "&".join(f"{quote(name)}={quote(value)}" for name, value in pairs)
    response = client.get(f"/audit/?{query}", headers=BEARER)
    assert response.status_code in {200, 400}, (query, response.status_code)
    if response.status_code == 400:
        assert 'class="error"' in response.get_data(as_text=True)

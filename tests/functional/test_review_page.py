"""The /audit review page through the Flask test client: access control, filters, detail, escaping."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.security import generate_password_hash

from cds_service.api.review import create_review_blueprint
from cds_service.api.review_auth import AuthThrottle
from cds_service.audit.store import SqlAuditStore
from tests.unit.audit.helpers import AuditPair, make_call, make_card, make_feedback, sqlite_pair

TOKEN = "reviewer-token-0123456789abcdef"
# These tests are about what the page shows; the budgets of credential checks have tests of their own.
UNTHROTTLED = AuthThrottle("10000/second", "10000/second")
USER = "auditor"
PASSWORD = "correct horse battery staple"
# Shaped like an EHR's ES384 JWT (header {"alg":"ES384","typ":"JWT"}); it must not open the page.
EHR_JWT = "eyJhbGciOiJFUzM4NCIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJodHRwczovL2VociJ9.c2lnbmF0dXJl"


@pytest.fixture
def audit_log(tmp_path: Path) -> Iterator[AuditPair]:
    """A SQLite audit log: its writer, and the read-only reader the page is given."""
    pair = sqlite_pair(tmp_path)
    yield pair
    pair.close()


@pytest.fixture
def records(audit_log: AuditPair) -> dict[str, str]:
    """Record ids by name."""
    a = make_call(patient_id="pat-A", cards=(make_card("supplement-organic", indicator="warning"),))
    b = make_call(patient_id="pat-B", minutes=3)
    evil = make_call(
        patient_id="pat-C",
        minutes=6,
        cards=(make_card("test-serum-mg", summary="<script>alert(1)</script>"),),
    )
    writer = audit_log.writer
    ids = {"a": writer.record_call(a), "b": writer.record_call(b), "evil": writer.record_call(evil)}
    ids["fb"] = writer.record_feedback(make_feedback(a.cards[0].uuid, "overridden"))
    return ids


@pytest.fixture
def client(audit_log: AuditPair) -> FlaskClient:
    """A small app with just the review blueprint."""
    app = Flask(__name__)
    app.register_blueprint(
        create_review_blueprint(
            audit_log.reader,
            reviewer_token=TOKEN,
            reviewer_user=USER,
            reviewer_password_hash=generate_password_hash(PASSWORD),
            throttle=UNTHROTTLED,
        )
    )
    return app.test_client()


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": f"Bearer {EHR_JWT}"},
        {"Authorization": "Bearer wrong"},
        _basic(USER, "wrong"),
        _basic("someone", PASSWORD),
        {"Authorization": f"Basic {TOKEN}"},
    ],
    ids=["none", "ehr-jwt", "wrong-token", "wrong-password", "wrong-user", "garbage-basic"],
)
def test_without_the_reviewer_credential_it_is_401_with_a_basic_challenge(
    client: FlaskClient, records: dict[str, str], headers: dict[str, str]
) -> None:
    for path in ("/audit/", f"/audit/calls/{records['a']}", "/audit/chain", "/audit/static/audit.css"):
        response = client.get(path, headers=headers)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith('Basic realm="MgCDS audit review"')
        assert b"pat-A" not in response.data


def test_token_in_query_string_does_not_open_it(client: FlaskClient) -> None:
    assert client.get(f"/audit/?access_token={TOKEN}").status_code == 401


def test_no_credential_configured_means_closed(audit_log: AuditPair) -> None:
    app = Flask(__name__)
    app.register_blueprint(
        create_review_blueprint(
            audit_log.reader, reviewer_token="", reviewer_user="reviewer", reviewer_password_hash=""
        )
    )
    client = app.test_client()
    assert client.get("/audit/", headers={"Authorization": "Bearer "}).status_code == 401
    assert client.get("/audit/", headers=_basic("reviewer", "")).status_code == 401


@pytest.mark.parametrize("headers", [BEARER, _basic(USER, PASSWORD)], ids=["bearer", "basic"])
def test_reviewer_credential_opens_the_list(
    client: FlaskClient, records: dict[str, str], headers: dict[str, str]
) -> None:
    response = client.get("/audit/", headers=headers)
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "pat-A" in page
    assert "pat-B" in page
    assert "Chain intact · 4 records" in page
    assert response.headers["Cache-Control"] == "no-store"
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]


def test_filter_by_patient(client: FlaskClient, records: dict[str, str]) -> None:
    page = client.get("/audit/?patient=pat-B", headers=BEARER).get_data(as_text=True)
    assert records["b"] in page
    assert records["a"] not in page
    assert "1 found" in page


def test_filter_by_outcome_and_recommendation(client: FlaskClient, records: dict[str, str]) -> None:
    page = client.get("/audit/?outcome=overridden", headers=BEARER).get_data(as_text=True)
    assert records["a"] in page
    assert records["b"] not in page
    page = client.get("/audit/?recommendation=test-serum-mg&outcome=none", headers=BEARER).get_data(as_text=True)
    assert records["b"] in page
    assert records["evil"] in page
    assert records["a"] not in page


def test_summary_counts_are_shown(client: FlaskClient, records: dict[str, str]) -> None:
    page = client.get("/audit/", headers=BEARER).get_data(as_text=True)
    # 3 calls, 3 cards, 0 accepted, 1 overridden (pat-A's supplement card, reason patient-declined).
    assert "<b>3</b> calls" in page
    assert "<b>3</b> cards shown" in page
    assert "<b>0</b> accepted · <b>1</b> overridden" in page
    assert "patient-declined: Patient declined × 1" in page


def test_bad_filter_is_a_400_with_a_message(client: FlaskClient) -> None:
    response = client.get("/audit/?since=last-tuesday&outcome=maybe", headers=BEARER)
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert "not an ISO 8601 date" in page
    assert "outcome must be one of" in page


def test_detail_shows_evidence_cards_and_feedback(client: FlaskClient, records: dict[str, str]) -> None:
    response = client.get(f"/audit/calls/{records['a']}", headers=BEARER)
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "supplement-organic: MDS 3/5" in page  # the card summary as sent
    assert "MDS 3/5: diuretic (furosemide)" in page  # the card detail
    assert "Order serum magnesium" in page  # suggestion label
    assert "overridden" in page
    assert "Patient prefers to wait" in page  # the clinician's comment
    assert "computed" in page  # eGFR source in the assessment
    assert "Observation/obs-creat v1" in page  # data source with version
    assert "FHIR server unreachable" in page


def test_everything_is_escaped(client: FlaskClient, records: dict[str, str]) -> None:
    for path in ("/audit/", f"/audit/calls/{records['evil']}"):
        page = client.get(path, headers=BEARER).get_data(as_text=True)
        assert "<script>alert(1)</script>" not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_unknown_or_feedback_record_is_404(client: FlaskClient, records: dict[str, str]) -> None:
    assert client.get("/audit/calls/nope", headers=BEARER).status_code == 404
    assert client.get(f"/audit/calls/{records['fb']}", headers=BEARER).status_code == 404


def test_pagination(client: FlaskClient, audit_log: AuditPair) -> None:
    ids = [audit_log.writer.record_call(make_call(patient_id=f"p{i:02d}", minutes=i)) for i in range(30)]
    first = client.get("/audit/", headers=BEARER).get_data(as_text=True)
    second = client.get("/audit/?page=2", headers=BEARER).get_data(as_text=True)
    assert ids[-1] in first  # newest first
    assert ids[0] not in first
    assert ids[0] in second
    assert "page 2 of 2" in second


def test_chain_page_reports_a_broken_chain(client: FlaskClient, records: dict[str, str], audit_log: AuditPair) -> None:
    from sqlalchemy import text

    tamperer = SqlAuditStore(audit_log.url)
    with tamperer.engine.begin() as conn:
        conn.execute(text("DELETE FROM mgcds_audit_records WHERE seq = 2"))
    tamperer.close()
    page = client.get("/audit/chain", headers=BEARER).get_data(as_text=True)
    assert "chain BROKEN at record #3" in page


def test_store_outage_is_503(client: FlaskClient, audit_log: AuditPair) -> None:
    audit_log.reader.engine.dispose()
    audit_log.writer.store.dispose()
    (audit_log.spool_path.parent / "audit.sqlite3").unlink()
    response = client.get("/audit/", headers=BEARER)
    assert response.status_code == 503
    assert "Audit store unavailable" in response.get_data(as_text=True)

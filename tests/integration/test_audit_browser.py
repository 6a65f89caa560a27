"""The review page in a real browser: headless system Chromium driven by Playwright.

Log in with basic auth, filter by patient, open a call, see its cards and feedback; a screenshot is saved
under tests/artifacts/ (gitignored). Playwright never downloads a browser here: it runs /usr/bin/chromium.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask, Response
from werkzeug.security import generate_password_hash
from werkzeug.serving import make_server

from cds_service.api.review import create_review_blueprint
from cds_service.api.review_auth import DevReviewLink, new_dev_review_token
from cds_service.audit.records import SuppressedRecord
from tests.conftest import PROJECT_ROOT
from tests.unit.audit.helpers import BASE_TIME, AuditPair, make_call, make_card, make_feedback, sqlite_pair

pytestmark = [pytest.mark.integration, pytest.mark.browser]

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = PROJECT_ROOT / "tests" / "artifacts"
USER = "auditor"
PASSWORD = "a long reviewer passphrase"


@pytest.fixture
def audit_log(tmp_path: Path) -> Iterator[AuditPair]:
    """A SQLite audit log with calls for three patients, one card overridden and one accepted."""
    pair = sqlite_pair(tmp_path)
    log = pair.writer
    a = make_call(
        patient_id="pat-anna",
        cards=(
            make_card(
                "supplement-organic",
                indicator="warning",
                summary="Magnesium deficiency likely (MDS 4/5): start an organic magnesium salt",
            ),
        ),
    )
    log.record_call(a)
    log.record_feedback(make_feedback(a.cards[0].uuid, "overridden", minutes=2))
    b = make_call(patient_id="pat-bert", user_id="Practitioner/doc-2", minutes=10)
    log.record_call(b)
    log.record_feedback(make_feedback(b.cards[0].uuid, "accepted", minutes=12, accepted=b.cards[0].suggestion_uuids))
    log.record_call(make_call(patient_id="pat-carl", minutes=20, cards=()))
    yield pair
    pair.close()


@pytest.fixture
def server(audit_log: AuditPair) -> Iterator[str]:
    """The review blueprint served on 127.0.0.1 by werkzeug in a thread."""
    app = Flask(__name__)
    app.register_blueprint(
        create_review_blueprint(
            audit_log.reader,
            reviewer_token="",
            reviewer_user=USER,
            reviewer_password_hash=generate_password_hash(PASSWORD),
        )
    )
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    thread.join(timeout=5)
    httpd.server_close()


def test_reviewer_finds_and_reads_a_call(server: str) -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found: install the Debian package `chromium` to run the browser test")
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright's Python package is not installed")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            # Without credentials the browser gets the basic-auth challenge (a navigation would fail with
            # ERR_INVALID_AUTH_CREDENTIALS in headless mode, so ask through the context's request API).
            anonymous = browser.new_context()
            response = anonymous.request.get(f"{server}/audit/")
            assert response.status == 401
            assert response.headers["www-authenticate"].startswith("Basic")
            anonymous.close()

            context = browser.new_context(
                http_credentials={"username": USER, "password": PASSWORD},
                viewport={"width": 1400, "height": 1000},
            )
            page = context.new_page()
            page.goto(f"{server}/audit/")
            assert "Chain intact" in page.get_by_test_id("chain-status").inner_text()
            assert page.locator("table[data-testid=calls] tbody tr").count() == 3

            page.fill("input[name=patient]", "pat-anna")
            page.click("button[type=submit]")
            page.wait_for_url("**/audit/?*patient=pat-anna*")
            rows = page.locator("table[data-testid=calls] tbody tr")
            assert rows.count() == 1
            assert "pat-anna" in rows.first.inner_text()
            page.screenshot(path=str(ARTIFACTS / "audit-list.png"), full_page=True)

            rows.first.locator("a").first.click()
            page.wait_for_url("**/audit/calls/*")
            assert page.get_by_test_id("patient").inner_text() == "pat-anna"
            card = page.get_by_test_id("card").first
            assert "start an organic magnesium salt" in card.inner_text()
            assert "overridden: Patient declined" in card.inner_text()
            feedback = page.get_by_test_id("feedback").inner_text()
            assert "Patient prefers to wait" in feedback
            page.screenshot(path=str(ARTIFACTS / "audit-call.png"), full_page=True)
            context.close()
        finally:
            browser.close()
    assert (ARTIFACTS / "audit-call.png").stat().st_size > 10_000


@pytest.fixture
def dev_server(audit_log: AuditPair, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """The review blueprint as `mgcds serve --dev` builds it (no credential configured, the one-time link armed)."""
    instance = tmp_path / "instance"
    token = new_dev_review_token(instance)
    app = Flask(__name__)
    app.register_blueprint(
        create_review_blueprint(
            audit_log.reader,
            reviewer_token="",
            reviewer_user="reviewer",
            reviewer_password_hash="",
            dev_link=DevReviewLink(token, instance),
        )
    )
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}", token
    httpd.shutdown()
    thread.join(timeout=5)
    httpd.server_close()


def test_a_newcomer_opens_the_dev_link_once_and_filters_by_hook_instance(dev_server: tuple[str, str]) -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found: install the Debian package `chromium` to run the browser test")
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright's Python package is not installed")
    server, token = dev_server
    link = f"{server}/audit/dev-login?token={token}"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            page = context.new_page()
            violations: list[str] = []
            page.on("console", lambda message: violations.append(message.text))
            page.goto(link)
            page.wait_for_url(f"{server}/audit/")  # the token left the address bar
            assert page.locator("table[data-testid=calls] tbody tr").count() == 3
            (cookie,) = context.cookies()
            assert cookie["httpOnly"] is True
            assert cookie["sameSite"] == "Strict"
            assert cookie["path"] == "/audit"
            assert token not in cookie["value"]
            # The stylesheet loaded under the unchanged CSP (the cookie goes with it: Path=/audit).
            assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(246, 247, 249)"
            instances = page.get_by_test_id("hook-instance")
            assert instances.count() == 3
            wanted = instances.nth(1).inner_text()
            instances.nth(1).click()
            page.wait_for_url("**/audit/?hook_instance=*")
            rows = page.locator("table[data-testid=calls] tbody tr")
            assert rows.count() == 1
            assert wanted in rows.first.inner_text()
            rows.first.locator("a").first.click()
            page.wait_for_url("**/audit/calls/*")
            assert page.get_by_test_id("hook-instance").inner_text() == wanted
            page.screenshot(path=str(ARTIFACTS / "audit-dev-link.png"), full_page=True)
            assert not [text for text in violations if "Content Security Policy" in text]
            context.close()

            # Another browser (or the same link pasted again) finds it spent. Each visit of the link takes a unit of
            # the sign-in budget (overall 1/second by default): on a fast machine the first context is done within
            # that second and the second visit would be a 429, so let the window pass; the throttle has its own tests.
            time.sleep(1.1)
            other = browser.new_context()
            second = other.new_page()
            response = second.goto(link)
            assert response is not None
            assert response.status == 403
            assert "already used" in second.content()
            assert other.request.get(f"{server}/audit/").status == 401
            other.close()
        finally:
            browser.close()


# -- trends and the patient timeline (issue 18 item 3) ------------------------------------------------------


@pytest.fixture
def insights_server(tmp_path: Path) -> Iterator[str]:
    """The review blueprint over two weeks of one patient's calls, plus a control page that breaks the CSP.

    2026-03-01 (BASE_TIME) is a Sunday in ISO week 2026-W09; seven days later is in 2026-W10.
      W09: a test-serum-mg card, overridden (patient-declined)
      W10: a test-serum-mg card, accepted; the call held back supplement-organic (suppressed until 03-31)
    """
    pair = sqlite_pair(tmp_path)
    first = make_call(patient_id="pat-dora")
    pair.writer.record_call(first)
    override = pair.writer.record_feedback(make_feedback(first.cards[0].uuid, "overridden", minutes=3))
    held = SuppressedRecord("supplement-organic", override, "overridden", "patient-declined", BASE_TIME + timedelta(30))
    second = replace(make_call(patient_id="pat-dora", minutes=7 * 24 * 60), suppressed=(held,))
    pair.writer.record_call(second)
    pair.writer.record_feedback(make_feedback(second.cards[0].uuid, "accepted", minutes=7 * 24 * 60 + 1))
    app = Flask(__name__)
    app.register_blueprint(
        create_review_blueprint(
            pair.reader, reviewer_token="", reviewer_user=USER, reviewer_password_hash=generate_password_hash(PASSWORD)
        )
    )

    @app.get("/control")
    def control() -> Response:
        # The same policy on a page with an inline style: the console listener below must report it.
        page = Response('<!doctype html><p style="color: red">inline</p>', mimetype="text/html")
        page.headers["Content-Security-Policy"] = "default-src 'none'; style-src 'self'"
        return page

    @app.get("/favicon.ico")
    def favicon() -> Response:
        # The browser asks for one; its 404 would be the only console error and hide nothing we test.
        return Response(status=204)

    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    thread.join(timeout=5)
    httpd.server_close()
    pair.close()


def test_trends_chart_timeline_and_csv_in_chromium(insights_server: str, tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found: install the Debian package `chromium` to run the browser test")
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright's Python package is not installed")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            context = browser.new_context(
                http_credentials={"username": USER, "password": PASSWORD},
                viewport={"width": 1400, "height": 1000},
                accept_downloads=True,
            )
            page = context.new_page()
            console: list[str] = []
            page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))

            # The listener sees a CSP violation when there is one.
            page.goto(f"{insights_server}/control")
            page.wait_for_timeout(200)
            assert any("Content Security Policy" in line for line in console), console
            console.clear()

            page.goto(f"{insights_server}/audit/")
            page.click("text=Trends")
            page.wait_for_url("**/audit/trends")
            chart = page.locator("section[data-recommendation=test-serum-mg] svg.chart")
            assert chart.count() == 1
            assert chart.bounding_box()["height"] > 100  # laid out and drawn, not collapsed
            # W09: shown 1, overridden 1; W10: shown 1, accepted 1 -> four bars; the colours come from attributes.
            bars = chart.locator("rect.bar")
            assert bars.count() == 4
            assert sorted(
                f"{bars.nth(i).get_attribute('data-category')} {bars.nth(i).get_attribute('data-series')}"
                for i in range(4)
            ) == ["2026-W09 overridden", "2026-W09 shown", "2026-W10 accepted", "2026-W10 shown"]
            fill = bars.first.evaluate("bar => getComputedStyle(bar).fill")
            assert fill not in ("", "none", "rgb(0, 0, 0)")  # the presentation attribute applied
            # One reason over two weeks: two points, the second a zero.
            points = page.locator("section[data-testid=reasons] svg.chart circle.point")
            assert points.count() == 2
            assert [points.nth(i).get_attribute("data-value") for i in range(2)] == ["1", "0"]
            page.screenshot(path=str(ARTIFACTS / "audit-trends.png"), full_page=True)

            with page.expect_download() as download_info:
                page.click("[data-testid=csv]")
            download = download_info.value
            assert download.suggested_filename == "mgcds-trends.csv"
            saved = tmp_path / "trends.csv"
            download.save_as(saved)
            lines = saved.read_text(encoding="utf-8").splitlines()
            assert lines[0] == "week,week_start,recommendation,figure,reason_code,reason_display,count"
            # 1 code x 2 weeks x 3 figures + 1 reason x 2 weeks = 8 rows.
            assert len(lines) == 9
            assert "2026-W10,2026-03-02,test-serum-mg,accepted,,,1" in lines

            page.goto(f"{insights_server}/audit/")
            page.click("table[data-testid=calls] >> text=pat-dora >> nth=0")
            page.wait_for_url("**/audit/patients/pat-dora")
            calls = page.get_by_test_id("timeline-call")
            assert calls.count() == 2
            assert "overridden: Patient declined" in calls.nth(0).inner_text()  # oldest first
            assert "accepted" in calls.nth(1).inner_text()
            held_back = calls.nth(1).get_by_test_id("held-back").inner_text()
            assert "supplement-organic" in held_back
            assert "2026-03-31T09:30:00.000000Z" in held_back
            page.screenshot(path=str(ARTIFACTS / "audit-timeline.png"), full_page=True)
            context.close()
        finally:
            browser.close()
    violations = [line for line in console if "Content Security Policy" in line or line.startswith("error")]
    assert violations == []

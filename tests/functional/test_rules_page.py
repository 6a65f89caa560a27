"""The rules page every card links to (issue 15 item 2): served at each card's source.url without authentication, with
the rules version, a strict CSP, anchors that resolve, and the same text from an installed wheel."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from cds_service import create_app
from cds_service.config import Settings
from cds_service.engine.vocabulary import RULES_VERSION
from tests.conftest import PROJECT_ROOT, load_json
from tests.support.secured_app import es384_signing_key, secured_app

PV = "/cds-services/mg-patient-view"
RULES_DOC = PROJECT_ROOT / "docs" / "clinical-rules.md"


class _Anchors(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.hrefs: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if values.get("id"):
            self.ids.add(values["id"] or "")
        if tag == "a" and values.get("href"):
            self.hrefs.append(values["href"] or "")
        if tag == "script":
            self.scripts += 1


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Any]:
    app = create_app(Settings(dev=True, instance_path=tmp_path, public_base_url="https://cds.example.org/mgcds"))
    yield app.test_client()
    app.extensions["mgcds.runtime"].close()


def test_every_cards_source_url_answers_the_rules_page(client: Any) -> None:
    request = load_json(PROJECT_ROOT / "examples" / "patient-view-request.json")
    cards = client.post(PV, json=request).get_json()["cards"]
    assert cards
    for card in cards:
        url = urlsplit(card["source"]["url"])
        assert (url.scheme, url.netloc) == ("https", "cds.example.org")
        # The app is mounted at the base URL's root here: the path after the base is the page's.
        page = client.get(url.path.removeprefix("/mgcds"))
        assert page.status_code == 200
        assert page.mimetype == "text/html"
        text = page.get_data(as_text=True)
        assert f"rules version <code>{RULES_VERSION}</code>" in text
        assert "<h1" in text
        assert "MgCDS clinical rules" in text


def test_the_page_needs_no_credential_and_sends_a_strict_csp(tmp_path: Path) -> None:
    # A production-shaped service refuses a hook call without a JWT; the rules page holds no patient data: public.
    with secured_app(tmp_path, [es384_signing_key()]) as secured:
        assert secured.post(PV, {}).status_code == 401
        response = secured.client.get("/docs/clinical-rules")
        assert response.status_code == 200
        csp = response.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp
        assert "script-src" not in csp  # no script is allowed at all
        assert response.headers["X-Frame-Options"] == "DENY"
        css = secured.client.get("/docs/static/rules.css")
        assert css.status_code == 200
        css.close()


def test_anchors_resolve_and_links_go_where_they_say(client: Any) -> None:
    page = _Anchors()
    page.feed(client.get("/docs/clinical-rules").get_data(as_text=True))
    assert page.scripts == 0
    internal = [h[1:] for h in page.hrefs if h.startswith("#")]
    assert "configuration" in internal  # the doc's own "see Configuration" link
    for anchor in internal:
        assert anchor in page.ids, anchor
    for href in page.hrefs:
        if href.startswith("#"):
            continue
        if href.startswith("/docs/static/"):
            static = client.get(href)
            assert static.status_code == 200
            static.close()
            continue
        assert href.startswith("https://doi.org/10."), href  # the sources: DOIs only
    # Every heading of the markdown became an anchor (GitHub's slugs): "## Cards while ordering (...)".
    assert "cards-while-ordering-order-select-order-sign" in page.ids


def test_the_markdown_is_package_data_that_is_the_doc() -> None:
    from cds_service.api.rules_page import rules_markdown

    assert rules_markdown() == RULES_DOC.read_text(encoding="utf-8")
    assert re.search(rf"Rules version `{re.escape(RULES_VERSION)}`", rules_markdown())


@pytest.mark.slow
def test_the_wheel_carries_the_rules(tmp_path: Path) -> None:
    """Built as the Dockerfile builds it (``pip wheel .``): the link is replaced by the doc's text."""
    result = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), "."],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    (wheel,) = tmp_path.glob("mgcds-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        shipped = archive.read("cds_service/api/rules/clinical-rules.md").decode("utf-8")
        names = archive.namelist()
    assert shipped == RULES_DOC.read_text(encoding="utf-8")
    assert "cds_service/api/templates/rules.html" in names
    assert "cds_service/api/static/rules.css" in names

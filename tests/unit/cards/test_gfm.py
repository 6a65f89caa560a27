"""Cards rendered as a CDS client renders them: GitHub-flavoured markdown through cmark-gfm (GitHub's own renderer,
``cmarkgfm``), one card of every recommendation code, then the HTML checked like a reader would."""

from __future__ import annotations

import html
import itertools
import re
from dataclasses import replace
from html.parser import HTMLParser
from typing import Any

import cmarkgfm
import pytest

from cds_service.cards import build_cards
from cds_service.engine.vocabulary import RecommendationCode as Code
from tests.unit.cards.corpus import all_cards
from tests.unit.engine.builders import assess_and_recommend, facts, med
from tests.unit.test_cards import PRODUCTS, SCENARIOS, SETTINGS, SOURCE_URL


class _Page(HTMLParser):
    """The links and the visible text of rendered HTML."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == "a":
            self.links.append(dict(attrs).get("href") or "")

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def render(markdown: str) -> _Page:
    """GFM to HTML as GitHub renders it (safe mode: raw HTML is not passed through), parsed."""
    page = _Page()
    page.feed(cmarkgfm.github_flavored_markdown_to_html(markdown))
    return page


def _cards(f: Any) -> list[dict[str, Any]]:
    counter = itertools.count(1)
    e = assess_and_recommend(f, SETTINGS)
    return build_cards(
        e.recommendations,
        e.assessment,
        f,
        source_url=SOURCE_URL,
        id_factory=lambda: f"id-{next(counter)}",
        settings=SETTINGS,
        products=PRODUCTS,
    )


def _card_of(code: str) -> dict[str, Any]:
    (card,) = [c for c in _cards(SCENARIOS[code][0]) if c["extension"]["org.mgcds.recommendation"] == code]
    return card


@pytest.mark.parametrize("code", sorted(Code))
def test_every_card_renders_clean(code: str) -> None:
    card = _card_of(code)
    page = render(card["detail"])
    text = "".join(page.text)
    # Nothing of the markdown shows through, and nothing turns into a link: the sources are the card's links.
    assert "\\" not in text, text
    assert page.links == [], page.links
    assert "%5C" not in text
    for tag in re.findall(r"\[([A-Z]{2,5}\d{2})\]", card["detail"]):
        assert f"[{tag}]" in text  # the bracketed tags stay visible as text
    for link in card.get("links", []):
        assert re.fullmatch(r"https://doi\.org/10\.\d{4,9}/[^\s\\%]+", link["url"]), link
        assert link["url"] in {"https://doi.org/" + doi for doi in _RULES_DOIS}, link


# The DOIs of docs/clinical-rules.md's sources (read from that page by hand), plus the two verified for LU00 and
# IOM97 (cds_service/cards/wording.py names where).
_RULES_DOIS = {
    "10.1093/jn/nxab138",
    "10.3389/fnut.2025.1518268",
    "10.1056/NEJMoa2102953",
    "10.3945/an.116.012765",
    "10.3390/nu12123672",
    "10.1177/15593258221116741",
    "10.3390/nu13041136",
    "10.1007/s13668-026-00745-5",
    "10.2165/00003088-200038040-00002",
    "10.17226/5776",
}


def test_every_card_of_the_test_data_renders_without_links_or_backslashes() -> None:
    for label, card in all_cards():
        page = render(card["detail"])
        text = "".join(page.text)
        assert page.links == [], (label, page.links)
        assert "\\" not in text, (label, text)
        assert {"script", "img", "table", "h1", "code", "pre"}.isdisjoint(page.tags), (label, page.tags)


HOSTILE = [
    "[click me](javascript:alert(1))",
    "see https://evil.example/x_y and www.evil.example",
    "mail me: nurse@evil.example",
    "<script>alert(1)</script> <img src=x onerror=alert(1)>",
    "**URGENT** _now_ `code` ~~gone~~ | a | b |",
    "# Heading",
    "1. first",
    "Lasix (furosemide) 40 mg\\tablet",
]


@pytest.mark.parametrize("display", HOSTILE)
def test_ehr_text_cannot_inject_markup(display: str) -> None:
    draft = med("omeprazole", "proton-pump-inhibitor", draft=True, concerned=True)
    draft = replace(draft, display=display)
    (card,) = _cards(facts(hook="order-select", meds=(draft,)))
    page = render(card["detail"])
    text = html.unescape("".join(page.text))
    assert page.links == []
    assert {"script", "img", "strong", "em", "code", "del", "table", "h1", "ol"}.isdisjoint(page.tags), page.tags
    # The name reads as the EHR sent it, bar the "@" (U+FF20 in its place: an address would become a mailto link).
    assert display.replace("@", "\uff20") in text

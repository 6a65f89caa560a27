"""The clinical rules page at ``/docs/clinical-rules``: every card's ``source.url`` (clinical-rules.md section 7.4).

The page is docs/clinical-rules.md rendered as GitHub-flavoured markdown (cmark-gfm, the renderer the cards are
tested with), once when the app is built, never per request. It holds no patient data, so it needs no credential;
it is served with a strict Content-Security-Policy like the review page's (no script at all, only our stylesheet).

The markdown travels with the package as ``cds_service/api/rules/clinical-rules.md``, a symbolic link to
docs/clinical-rules.md (one source): building the wheel copies the file it points to, so an installed service (the
Dockerfile installs the wheel) serves the same page as a checkout.
"""

from __future__ import annotations

import html
import re
from importlib import resources

import cmarkgfm
from cmarkgfm.cmark import Options
from flask import Blueprint, Flask, Response, current_app, render_template

from cds_service.engine.vocabulary import RULES_VERSION

RULES_PATH = "/docs/clinical-rules"
_EXTENSION_KEY = "mgcds.rules_page"
_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'none'; frame-ancestors 'none'; "
        "base-uri 'none'"
    ),
}
_HEADING = re.compile(r"<h([1-6])>(.*?)</h\1>", re.DOTALL)
_TAGS = re.compile(r"<[^>]+>")

bp = Blueprint("rules", __name__, template_folder="templates", static_folder="static", static_url_path="/docs/static")


def rules_markdown() -> str:
    """docs/clinical-rules.md, as shipped in the package."""
    return resources.files("cds_service.api").joinpath("rules", "clinical-rules.md").read_text(encoding="utf-8")


def slug(text: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces as hyphens ("Cards while ordering
    (order-select, order-sign)" -> "cards-while-ordering-order-select-order-sign")."""
    plain = html.unescape(_TAGS.sub("", text)).strip().lower()
    return re.sub(r"[^\w\- ]", "", plain).replace(" ", "-")


def render_rules(markdown: str) -> str:
    """The rules as HTML: GFM (tables, autolinks), raw HTML left out (safe mode), headings given GitHub's anchors."""
    body = str(cmarkgfm.github_flavored_markdown_to_html(markdown, options=Options.CMARK_OPT_DEFAULT))
    seen: dict[str, int] = {}

    def anchor(match: re.Match[str]) -> str:
        level, inner = match.group(1), match.group(2)
        base = slug(inner)
        count = seen.get(base, 0)
        seen[base] = count + 1
        ident = base if count == 0 else f"{base}-{count}"  # GitHub's rule for repeated headings
        return f'<h{level} id="{ident}">{inner}</h{level}>'

    return _HEADING.sub(anchor, body)


def install(app: Flask) -> None:
    """Render the rules once and mount the page."""
    app.extensions[_EXTENSION_KEY] = render_rules(rules_markdown())
    app.register_blueprint(bp)


@bp.get(RULES_PATH)
def clinical_rules() -> Response:
    """The clinical rules the cards cite, with the rules version the engine implements."""
    page = render_template("rules.html", body=current_app.extensions[_EXTENSION_KEY], rules_version=RULES_VERSION)
    response = Response(page, mimetype="text/html")
    response.headers.update(_HEADERS)
    return response

"""The reviewer's web page at /audit: calls, their cards and feedback, evidence, chain status and a summary.

It lives outside the EHR-facing auth domain: it accepts only the reviewer credential (a bearer token or HTTP
basic against a werkzeug password hash), never an EHR's JWT. Pages are server-rendered with Jinja autoescape.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from datetime import datetime
from typing import Any

from flask import Blueprint, Response, abort, render_template, request, url_for
from werkzeug.security import check_password_hash

from cds_service.api.review_insights import register_insights
from cds_service.audit.chain import ChainReport
from cds_service.audit.model import CallFilter, StoredRecord
from cds_service.audit.records import AuditEventType, parse_moment
from cds_service.errors import AuditStoreError
from cds_service.interfaces import AuditReader

log = logging.getLogger("mgcds.audit.review")

PAGE_SIZE = 25
_CHAIN_CACHE_SECONDS = 30.0  # verifying walks the whole chain; the list page reuses a fresh result
_REALM = 'Basic realm="MgCDS audit review", charset="UTF-8"'
_SECURITY_HEADERS = {
    # Audit pages show patient identifiers: never cached, framed, or sent on as a referrer.
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
}
OUTCOMES = ("accepted", "overridden", "none")


class _ChainStatusCache:
    """The last chain report, reused for a short while so the list page stays fast on a long log."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._report: ChainReport | None = None
        self._at = 0.0

    def get(self, audit_log: AuditReader, *, fresh: bool) -> ChainReport:
        with self._lock:
            if fresh or self._report is None or time.monotonic() - self._at > _CHAIN_CACHE_SECONDS:
                self._report = audit_log.verify()
                self._at = time.monotonic()
            return self._report


def _credential_ok(reviewer_token: str, reviewer_user: str, reviewer_password_hash: str) -> bool:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and reviewer_token:
        # Constant-time compare; an EHR JWT is simply a different string and fails here.
        return hmac.compare_digest(value.strip().encode("utf-8"), reviewer_token.encode("utf-8"))
    if scheme.lower() == "basic" and reviewer_password_hash:
        auth = request.authorization
        if auth is None or auth.type != "basic" or auth.username is None or auth.password is None:
            return False
        user_ok = hmac.compare_digest(auth.username.encode("utf-8"), reviewer_user.encode("utf-8"))
        password_ok = check_password_hash(reviewer_password_hash, auth.password)
        return user_ok and password_ok
    return False


def _filters_from_args() -> tuple[CallFilter, list[str]]:
    errors: list[str] = []
    args = request.args

    def moment(name: str, *, end_of_day: bool) -> datetime | None:
        text = args.get(name, "").strip()
        if not text:
            return None
        try:
            return parse_moment(text, end_of_day=end_of_day)
        except ValueError as exc:
            errors.append(f"{name}: {exc}")
            return None

    outcome = args.get("outcome", "").strip() or None
    if outcome is not None and outcome not in OUTCOMES:
        errors.append(f"outcome must be one of {', '.join(OUTCOMES)}")
        outcome = None
    return (
        CallFilter(
            patient_id=args.get("patient", "").strip() or None,
            user_id=args.get("user", "").strip() or None,
            since=moment("since", end_of_day=False),
            until=moment("until", end_of_day=True),
            recommendation=args.get("recommendation", "").strip() or None,
            outcome=outcome,
        ),
        errors,
    )


def create_review_blueprint(
    audit_log: AuditReader, *, reviewer_token: str, reviewer_user: str, reviewer_password_hash: str
) -> Blueprint:
    """The /audit blueprint, guarded by the reviewer credential (otherwise 401 with a basic challenge)."""
    bp = Blueprint(
        "audit",
        __name__,
        url_prefix="/audit",
        template_folder="templates",
        static_folder="static",
        static_url_path="/static",
    )
    chain_cache = _ChainStatusCache()
    if not reviewer_token and not reviewer_password_hash:
        log.warning("no reviewer credential configured: /audit answers 401 to everyone")

    @bp.before_request
    def _require_reviewer() -> Response | None:
        if _credential_ok(reviewer_token, reviewer_user, reviewer_password_hash):
            return None
        response = Response("Reviewer credential required.\n", status=401, mimetype="text/plain")
        response.headers["WWW-Authenticate"] = _REALM
        return response

    @bp.after_request
    def _headers(response: Response) -> Response:
        response.headers.update(_SECURITY_HEADERS)
        return response

    @bp.errorhandler(AuditStoreError)
    def _store_down(exc: AuditStoreError) -> tuple[str, int]:
        # Fail closed for reading: without the store there is nothing trustworthy to show.
        log.error("audit review: store unavailable: %s", exc)
        return render_template("audit/unavailable.html", message=str(exc)), 503

    @bp.get("/")
    def index() -> tuple[str, int]:
        filters, errors = _filters_from_args()
        try:
            page = max(1, int(request.args.get("page", "1")))
        except ValueError:
            page = 1
        calls, total = audit_log.list_calls(filters, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
        feedback = audit_log.feedback_for([call.record_id for call in calls])
        summary = audit_log.summary(filters)
        chain = chain_cache.get(audit_log, fresh=False)
        pages = max(1, (total + PAGE_SIZE - 1) // PAGE_SIZE)
        kept: dict[str, Any] = {k: v for k, v in request.args.items() if k != "page" and v}

        def page_url(number: int) -> str:
            return url_for("audit.index", page=number, **kept)

        return (
            render_template(
                "audit/list.html",
                calls=calls,
                feedback=feedback,
                total=total,
                page=page,
                pages=pages,
                page_url=page_url,
                summary=summary,
                chain=chain,
                args=request.args,
                errors=errors,
                outcomes=OUTCOMES,
            ),
            400 if errors else 200,
        )

    @bp.get("/calls/<record_id>")
    def call_detail(record_id: str) -> str:
        record = audit_log.get(record_id)
        if record is None or record.event_type != AuditEventType.SERVICE_CALL:
            abort(404)
        feedback = audit_log.feedback_for([record.record_id])[record.record_id]
        by_card: dict[str, list[StoredRecord]] = {}
        for item in feedback:
            by_card.setdefault(item.payload["card_uuid"], []).append(item)
        return render_template("audit/detail.html", call=record, feedback=feedback, by_card=by_card)

    @bp.get("/chain")
    def chain_status() -> str:
        return render_template("audit/chain.html", chain=chain_cache.get(audit_log, fresh=True))

    register_insights(bp, audit_log)  # trends, patient timelines, held-back cards (api/review_insights.py)
    return bp

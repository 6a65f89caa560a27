"""The reviewer's web page at /audit: calls, their cards and feedback, evidence, chain status and a summary.

It lives outside the EHR-facing auth domain: it accepts only the reviewer credential (a bearer token or HTTP
basic against a werkzeug password hash), never an EHR's JWT. Pages are server-rendered with Jinja autoescape.
"""

from __future__ import annotations

import hmac
import logging
import re
import threading
import time
from datetime import datetime
from typing import Any

from flask import Blueprint, Response, abort, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from werkzeug.security import check_password_hash

from cds_service.api.review_auth import DEV_COOKIE, AuthThrottle, DevReviewLink, VerifiedCredentials, client_key
from cds_service.api.review_insights import register_insights
from cds_service.audit import limits
from cds_service.audit.chain import ChainReport
from cds_service.audit.model import CallFilter, StoredRecord, Summary
from cds_service.audit.records import AuditEventType, parse_moment
from cds_service.config import Settings
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


# Every query parameter the list reads; anything else is ignored (and never passed on to url_for, where names such
# as _scheme or _external would change the links the pager builds).
FILTER_NAMES = ("patient", "user", "hook_instance", "since", "until", "recommendation", "outcome")
MAX_PAGE = 100_000  # 2.5 million calls back: beyond any review, and an OFFSET every store handles
_PAGE = re.compile(r"[0-9]{1,6}")  # ASCII digits only: int() would also read '+3', ' 4', '1_0' and Arabic digits
_RECOMMENDATION = re.compile(r"[a-z0-9][a-z0-9.-]*")
_RECORD_ID = re.compile(rf"[A-Za-z0-9_-]{{1,{limits.RECORD_ID_COLUMN}}}")
_TEXT_MAX = {
    "patient": limits.CONTEXT_ID_MAX,
    "user": limits.CONTEXT_ID_MAX,
    "hook_instance": limits.HOOK_INSTANCE_MAX,
    "recommendation": limits.RECOMMENDATION_COLUMN,
}
_NO_CALLS = Summary(0, 0, 0, 0, 0, 0, {}, {})


def _presented_credential(reviewer_token: str, reviewer_password_hash: str) -> tuple[str, ...] | None:
    """The credential the request presents, if it is of a kind configured here (else nothing to check)."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and reviewer_token:
        return ("bearer", value.strip())
    if scheme.lower() == "basic" and reviewer_password_hash:
        auth = request.authorization
        if auth is None or auth.type != "basic" or auth.username is None or auth.password is None:
            return None
        return ("basic", auth.username, auth.password)
    return None


def _credential_ok(
    presented: tuple[str, ...], reviewer_token: str, reviewer_user: str, reviewer_password_hash: str
) -> bool:
    if presented[0] == "bearer":
        # Constant-time compare; an EHR JWT is simply a different string and fails here.
        return hmac.compare_digest(presented[1].encode("utf-8"), reviewer_token.encode("utf-8"))
    _, username, password = presented
    user_ok = hmac.compare_digest(username.encode("utf-8"), reviewer_user.encode("utf-8"))
    password_ok = check_password_hash(reviewer_password_hash, password)  # hashed whatever the user: same timing
    return user_ok and password_ok


def _text_filter(name: str, errors: list[str]) -> str | None:
    value = request.args.get(name, "").strip()
    if not value:
        return None
    longest = _TEXT_MAX[name]
    if len(value) > longest:
        errors.append(f"{name}: at most {longest} characters (got {len(value)})")
        return None
    if limits.has_control_character(value):
        errors.append(f"{name}: must not contain control characters")
        return None
    if name == "recommendation" and not _RECOMMENDATION.fullmatch(value):
        errors.append("recommendation: a code such as test-serum-mg (lowercase letters, digits, hyphens, dots)")
        return None
    return value


def _page_from_args(errors: list[str]) -> int:
    text = request.args.get("page", "").strip()
    if not text:
        return 1
    if not _PAGE.fullmatch(text) or not 1 <= int(text) <= MAX_PAGE:
        shown = text if len(text) <= 20 else text[:20] + "…"
        errors.append(f"page: a whole number from 1 to {MAX_PAGE} (got {shown!r})")
        return 1
    return int(text)


def _filters_from_args() -> tuple[CallFilter, int, list[str]]:
    """The list's filters and page from the query string, and what is wrong with them (issue 16 B10)."""
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
    since = moment("since", end_of_day=False)
    until = moment("until", end_of_day=True)
    if since is not None and until is not None and since > until:
        errors.append("since is after until: no call can match")
    filters = CallFilter(
        patient_id=_text_filter("patient", errors),
        user_id=_text_filter("user", errors),
        hook_instance=_text_filter("hook_instance", errors),
        since=since,
        until=until,
        recommendation=_text_filter("recommendation", errors),
        outcome=outcome,
    )
    return filters, _page_from_args(errors), errors


class _RefusalLog:
    """Logs the 429s at most every 10 s with a count: an attack answered 750 times a second must not flood the log."""

    INTERVAL_SECONDS = 10.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._since_logged = 0
        self._logged_at = -self.INTERVAL_SECONDS

    def note(self, retry_after: int) -> None:
        """Count one refusal; log when the interval has passed."""
        with self._lock:
            self._since_logged += 1
            now = time.monotonic()
            if now - self._logged_at < self.INTERVAL_SECONDS:
                return
            count, self._since_logged, self._logged_at = self._since_logged, 0, now
        log.warning(
            "audit review: reviewer credential checks over budget: %d answered 429 since the last note "
            "(retry after %d s)",
            count,
            retry_after,
        )


def create_review_blueprint(
    audit_log: AuditReader,
    *,
    reviewer_token: str,
    reviewer_user: str,
    reviewer_password_hash: str,
    throttle: AuthThrottle | None = None,
    dev_link: DevReviewLink | None = None,
) -> Blueprint:
    """The /audit blueprint, guarded by the reviewer credential (otherwise 401 with a basic challenge).

    ``throttle`` bounds the credential checks (the settings' defaults when None); ``dev_link`` is the one-time link
    of ``mgcds serve --dev``, and only create_app in development mode passes one.
    """
    bp = Blueprint(
        "audit",
        __name__,
        url_prefix="/audit",
        template_folder="templates",
        static_folder="static",
        static_url_path="/static",
    )
    chain_cache = _ChainStatusCache()
    if throttle is None:
        defaults = Settings()
        throttle = AuthThrottle(defaults.reviewer_auth_client_limit, defaults.reviewer_auth_global_limit)
    checks = throttle
    verified = VerifiedCredentials()
    if not reviewer_token and not reviewer_password_hash and dev_link is None:
        log.warning("no reviewer credential configured: /audit answers 401 to everyone")

    def challenge() -> Response:
        response = Response("Reviewer credential required.\n", status=401, mimetype="text/plain")
        response.headers["WWW-Authenticate"] = _REALM
        return response

    refusals = _RefusalLog()

    def too_many(retry_after: int) -> Response:
        refusals.note(retry_after)
        response = Response(
            f"Too many reviewer sign-in attempts: retry in {retry_after} s.\n", status=429, mimetype="text/plain"
        )
        response.headers["Retry-After"] = str(retry_after)
        return response

    @bp.before_request
    def _require_reviewer() -> Response | None:
        if request.endpoint == "audit.dev_login":
            return None  # the link checks its own token
        if dev_link is not None and dev_link.session_ok(request.cookies.get(DEV_COOKIE)):
            return None
        presented = _presented_credential(reviewer_token, reviewer_password_hash)
        if presented is None:
            return challenge()
        if verified.known(*presented):
            return None
        # The budget is taken before the check, so no guess beyond it reaches scrypt (issue 16 B11).
        retry_after = checks.acquire(client_key(request.remote_addr))
        if retry_after is not None:
            return too_many(retry_after)
        if _credential_ok(presented, reviewer_token, reviewer_user, reviewer_password_hash):
            verified.remember(*presented)
            return None
        return challenge()

    if dev_link is not None:  # development mode only: in production the route does not exist
        link = dev_link

        @bp.get("/dev-login")
        def dev_login() -> ResponseReturnValue:
            if link.session_ok(request.cookies.get(DEV_COOKIE)):
                return redirect(url_for("audit.index"), code=303)
            retry_after = checks.acquire(client_key(request.remote_addr))
            if retry_after is not None:
                return too_many(retry_after)
            if not link.matches(request.args.get("token", "")):
                return Response("This is not the link mgcds serve --dev printed.\n", status=401, mimetype="text/plain")
            if not link.redeem():
                return Response(
                    "This one-time link was already used. Restart `mgcds serve --dev` for a new one, "
                    "or set MGCDS_REVIEWER_TOKEN.\n",
                    status=403,
                    mimetype="text/plain",
                )
            response = redirect(url_for("audit.index"), code=303)
            # The link is spent; the browser that used it keeps a session cookie, sent to /audit only, never to a
            # script, never from another site.
            response.set_cookie(
                DEV_COOKIE,
                link.session_value,
                path="/audit",
                httponly=True,
                samesite="Strict",
                secure=request.is_secure,
            )
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
        filters, page, errors = _filters_from_args()
        calls: list[StoredRecord]
        if errors:
            # Nothing is listed under a filter that was not understood: a list without it would look like its answer.
            calls, total, summary = [], 0, _NO_CALLS
        else:
            calls, total = audit_log.list_calls(filters, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
            summary = audit_log.summary(filters)
        feedback = audit_log.feedback_for([call.record_id for call in calls])
        chain = chain_cache.get(audit_log, fresh=False)
        pages = max(1, (total + PAGE_SIZE - 1) // PAGE_SIZE)
        kept: dict[str, Any] = {name: request.args[name] for name in FILTER_NAMES if request.args.get(name)}

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
        if not _RECORD_ID.fullmatch(record_id):
            abort(404)  # not an id we issue; never sent to the store (a NUL would upset PostgreSQL)
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

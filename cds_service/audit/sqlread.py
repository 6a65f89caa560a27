"""Reading the audit store: the review list and its counts, one record, the chain walk, every record in order.

The real AuditReader. It opens its engine read-only (see :mod:`cds_service.audit.schema`), so the review page and
``mgcds audit verify | list | show | export`` cannot change the store, and it holds no spool, so they cannot drain
one either.

Feedback is linked to the call that issued its card at read time, by joining the feedback index with the card
index on the card uuid and the origin key (same issuer, tenant and service: issue 16 item 8). So the link does not
depend on which of the two records reached the store first (issue 19, R3), and it is the same link that
``verify`` recomputes from the hashed payloads. ``StoredRecord.linked_record_id`` is that link.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import date
from typing import Any

from sqlalchemy import Connection, Engine, and_, exists, func, literal_column, not_, select
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.selectable import ScalarSelect

from cds_service.audit.chain import BrokenLink, ChainReport, verify_rows
from cds_service.audit.deadline import StoreTimeout, time_limit
from cds_service.audit.index_keys import card_rows, feedback_row
from cds_service.audit.model import CallFilter, StoredRecord, Summary
from cds_service.audit.records import AuditEventType, format_timestamp
from cds_service.audit.schema import (
    HEAD_ID,
    READ_ONLY_OPTION,
    ROW_COLUMNS,
    cards_table,
    check_schema,
    create_store_engine,
    feedback_table,
    head_table,
    records_table,
)
from cds_service.audit.trends import DailyCards, DailyFeedback, TrendCounts, TrendFilter, Trends, weekly
from cds_service.errors import AuditStoreError

READ_TIME_LIMIT_SECONDS = 30.0  # a review page or one page of a chain walk; the hook path uses its own limit
_LINK = "effective_link"
_VERIFY_PAGE = 500
_IN_CHUNK = 500  # ids per IN list: well under SQLite's bound-variable limit

_cards = cards_table.c
_fb = feedback_table.c
# A feedback item is about a card of this call: same card uuid, same issuer, tenant and service.
ISSUED_BY = and_(_cards.card_uuid == _fb.card_uuid, _cards.origin_key == _fb.origin_key)


def _link_of(feedback_record_id: ColumnElement[Any]) -> ScalarSelect[Any]:
    """The call that issued the card a feedback record is about (the earliest, should two ever share a uuid)."""
    return (
        select(_cards.record_id)
        .select_from(feedback_table.join(cards_table, ISSUED_BY))
        .where(_fb.record_id == feedback_record_id)
        .order_by(_cards.occurred_at, _cards.record_id)
        .limit(1)
        .scalar_subquery()
    )


def _with_links() -> list[Any]:
    return [*ROW_COLUMNS, _link_of(records_table.c.record_id).label(_LINK)]


def row_to_record(row: Mapping[str, Any] | RowMapping) -> StoredRecord:
    """A records-table row as a StoredRecord (its payload parsed; the read-time link when the row carries it)."""
    link = row[_LINK] if _LINK in row else row["linked_record_id"]
    return StoredRecord(
        seq=int(row["seq"]),
        record_id=row["record_id"],
        event_type=row["event_type"],
        occurred_at=row["occurred_at"],
        linked_record_id=link,
        payload=json.loads(row["payload"]),
        payload_sha256=row["payload_sha256"],
        prev_hash=row["prev_hash"],
        entry_hash=row["entry_hash"],
        sealed_link=row["linked_record_id"],
    )


class SqlAuditReader:
    """Queries over the store (SQLite or PostgreSQL); database failures surface as AuditStoreError."""

    def __init__(self, engine: Engine, *, time_limit_seconds: float = READ_TIME_LIMIT_SECONDS) -> None:
        self.engine = engine
        self.time_limit_seconds = time_limit_seconds

    @classmethod
    def open_read_only(cls, url: str, *, time_limit_seconds: float = READ_TIME_LIMIT_SECONDS) -> SqlAuditReader:
        """A reader of the store at ``url`` on a read-only engine of its own."""
        engine = create_store_engine(url, read_only=True, statement_timeout_seconds=time_limit_seconds)
        return cls(engine, time_limit_seconds=time_limit_seconds)

    def check_ready(self, time_limit_seconds: float | None = None) -> None:
        """Raise AuditStoreError unless the store answers and its schema is the one this code reads."""
        check_schema(self.engine, time_limit_seconds or self.time_limit_seconds)

    def close(self) -> None:
        """Close pooled connections."""
        self.engine.dispose()

    def count(self) -> int:
        """How many records the store holds."""
        with self._reading("counting records") as conn:
            return int(conn.execute(select(func.count()).select_from(records_table)).scalar_one())

    def head(self) -> tuple[int, str] | None:
        """The head row ``(seq, entry_hash)``, or None when it is missing."""
        with self._reading("reading the chain head") as conn:
            row = conn.execute(
                select(head_table.c.seq, head_table.c.entry_hash).where(head_table.c.id == HEAD_ID)
            ).first()
        return (int(row.seq), str(row.entry_hash)) if row is not None else None

    def _pages(self, columns: Sequence[Any], batch: int) -> Iterator[list[dict[str, Any]]]:
        after = 0
        while True:
            with self._reading("reading a page of the chain") as conn:
                page = [
                    dict(row._mapping)
                    for row in conn.execute(
                        select(*columns).where(records_table.c.seq > after).order_by(records_table.c.seq).limit(batch)
                    )
                ]
            if not page:
                return
            yield page
            after = int(page[-1]["seq"])

    def iter_rows(self, *, batch: int = _VERIFY_PAGE) -> Iterator[dict[str, Any]]:
        """Every record row in chain order, fetched in keyset pages (no long-lived cursor)."""
        for page in self._pages(ROW_COLUMNS, batch):
            yield from page

    def iter_records(self) -> Iterator[StoredRecord]:
        """Every record in chain order, feedback with its read-time link."""
        for page in self._pages(_with_links(), _VERIFY_PAGE):
            for row in page:
                yield row_to_record(row)

    def verify(self) -> ChainReport:
        """Walk the whole chain and check both index tables against the payloads; names the first broken link."""
        head = self.head()
        checker = _IndexCheck(self)
        report = verify_rows(checker.watch(self.iter_rows()), head)
        if not report.ok:
            return report
        problem = checker.finish()
        if problem is None:
            return report
        return ChainReport(report.checked, report.head_seq, report.head_hash, problem)

    def get(self, record_id: str) -> StoredRecord | None:
        """One record by id."""
        with self._reading("reading one record") as conn:
            row = conn.execute(select(*_with_links()).where(records_table.c.record_id == record_id)).first()
        return row_to_record(row._mapping) if row is not None else None

    def feedback_for(self, record_ids: Sequence[str]) -> dict[str, list[StoredRecord]]:
        """Feedback records linked to each of these calls, in chain order."""
        result: dict[str, list[StoredRecord]] = {record_id: [] for record_id in record_ids}
        if not record_ids:
            return result
        with self._reading("reading feedback") as conn:
            rows = conn.execute(
                select(*ROW_COLUMNS, _cards.record_id.label(_LINK))
                .select_from(
                    records_table.join(feedback_table, _fb.record_id == records_table.c.record_id).join(
                        cards_table, ISSUED_BY
                    )
                )
                .where(_cards.record_id.in_(list(record_ids)))
                .order_by(records_table.c.seq)
            ).all()
        for row in rows:
            record = row_to_record(row._mapping)
            result[str(record.linked_record_id)].append(record)
        return result

    def _call_conditions(self, filters: CallFilter) -> list[ColumnElement[bool]]:
        r = records_table.c
        conditions: list[ColumnElement[bool]] = [r.event_type == AuditEventType.SERVICE_CALL.value]
        if filters.patient_id:
            conditions.append(r.patient_id == filters.patient_id)
        if filters.user_id:
            conditions.append(r.user_id == filters.user_id)
        if filters.hook_instance:
            conditions.append(r.hook_instance == filters.hook_instance)
        if filters.since is not None:
            conditions.append(r.occurred_at >= format_timestamp(filters.since))
        if filters.until is not None:
            conditions.append(r.occurred_at <= format_timestamp(filters.until))
        if filters.recommendation:
            conditions.append(
                exists().where(and_(_cards.record_id == r.record_id, _cards.recommendation == filters.recommendation))
            )
        if filters.outcome:
            answered = select(_fb.record_id).select_from(feedback_table.join(cards_table, ISSUED_BY))
            if filters.outcome == "none":
                conditions.append(not_(exists(answered.where(_cards.record_id == r.record_id))))
            else:
                conditions.append(
                    exists(answered.where(_cards.record_id == r.record_id, _fb.outcome == filters.outcome))
                )
        return conditions

    def list_calls(self, filters: CallFilter, *, limit: int = 50, offset: int = 0) -> tuple[list[StoredRecord], int]:
        """Calls matching the filters, newest first by time (not chain order), one page of them, and the count."""
        conditions = self._call_conditions(filters)
        with self._reading("listing calls") as conn:
            total = int(conn.execute(select(func.count()).select_from(records_table).where(*conditions)).scalar_one())
            # Time, not seq: instances commit their spools in their own rhythm, so chain order is commit order
            # and can differ from the order of the calls by seconds (docs/audit.md, "Order").
            rows = conn.execute(
                select(*ROW_COLUMNS)
                .where(*conditions)
                .order_by(records_table.c.occurred_at.desc(), records_table.c.seq.desc())
                .limit(limit)
                .offset(offset)
            ).all()
        return [row_to_record(row._mapping) for row in rows], total

    def summary(self, filters: CallFilter) -> Summary:
        """Counts over the calls matching the filters and the feedback linked to them."""
        conditions = self._call_conditions(filters)
        calls = select(records_table.c.record_id).where(*conditions).subquery()
        in_calls = _cards.record_id.in_(select(calls.c.record_id))
        linked_feedback = feedback_table.join(cards_table, ISSUED_BY)
        with self._reading("summarising calls") as conn:
            n_calls = int(conn.execute(select(func.count()).select_from(calls)).scalar_one())
            n_failed = int(
                conn.execute(
                    select(func.count())
                    .select_from(records_table)
                    .where(*conditions, records_table.c.http_status >= 400)
                ).scalar_one()
            )
            shown = conn.execute(
                select(_cards.recommendation, func.count()).where(in_calls).group_by(_cards.recommendation)
            ).all()
            outcomes = conn.execute(
                select(_cards.recommendation, _fb.outcome, func.count())
                .select_from(linked_feedback)
                .where(in_calls)
                .group_by(_cards.recommendation, _fb.outcome)
            ).all()
            override_payloads = conn.execute(
                select(records_table.c.payload)
                .select_from(linked_feedback.join(records_table, records_table.c.record_id == _fb.record_id))
                .where(in_calls, _fb.outcome == "overridden")
            ).scalars()
            reasons: dict[str, int] = {}
            for text in override_payloads:
                reason = json.loads(text).get("override_reason") or {}
                label = reason.get("code") or "(no reason given)"
                if reason.get("display"):
                    label = f"{label}: {reason['display']}"
                reasons[label] = reasons.get(label, 0) + 1
            unlinked = int(
                conn.execute(
                    select(func.count())
                    .select_from(feedback_table)
                    .where(not_(exists().where(_cards.card_uuid == _fb.card_uuid, _cards.origin_key == _fb.origin_key)))
                ).scalar_one()
            )
        per: dict[str, dict[str, int]] = {}
        for code, n in shown:
            per.setdefault(str(code), {"shown": 0, "accepted": 0, "overridden": 0})["shown"] = int(n)
        for code, outcome, n in outcomes:
            bucket = per.setdefault(str(code), {"shown": 0, "accepted": 0, "overridden": 0})
            bucket[str(outcome)] = bucket.get(str(outcome), 0) + int(n)
        return Summary(
            calls=n_calls,
            failed_calls=n_failed,
            cards_shown=sum(v["shown"] for v in per.values()),
            accepted=sum(v.get("accepted", 0) for v in per.values()),
            overridden=sum(v.get("overridden", 0) for v in per.values()),
            unlinked_feedback=unlinked,
            override_reasons=dict(sorted(reasons.items(), key=lambda item: (-item[1], item[0]))),
            per_recommendation=dict(sorted(per.items())),
        )

    def _reading(self, what: str) -> AbstractContextManager[Connection]:
        return reading(self.engine, self.time_limit_seconds, what)

    # -- review insights: trends, a patient's timeline, suppressions (issue 18 item 3, issue 15 item 4) ----------

    def trends(self, filters: TrendFilter) -> Trends:
        """Cards shown and the feedback on them per ISO week and recommendation, and overrides per reason.

        Grouped by day in the store from the two index tables (no payload is parsed but one per reason code, for
        its display), so the answer is as long as days x codes x reasons, whatever the number of records.
        """
        # Literal arguments: PostgreSQL must see the same expression in SELECT and GROUP BY, not two bound copies.
        day = func.substr(_cards.occurred_at, literal_column("1"), literal_column("10"))
        conditions: list[ColumnElement[bool]] = []
        if filters.since is not None:
            conditions.append(_cards.occurred_at >= format_timestamp(filters.since))
        if filters.until is not None:
            conditions.append(_cards.occurred_at <= format_timestamp(filters.until))
        if filters.recommendation:
            conditions.append(_cards.recommendation == filters.recommendation)
        with self._reading("counting trends") as conn:
            shown = conn.execute(
                select(day, _cards.recommendation, func.count()).where(*conditions).group_by(day, _cards.recommendation)
            ).all()
            answered = conn.execute(
                select(day, _cards.recommendation, _fb.outcome, _fb.reason_code, func.count())
                .select_from(feedback_table.join(cards_table, ISSUED_BY))
                .where(*conditions)
                .group_by(day, _cards.recommendation, _fb.outcome, _fb.reason_code)
            ).all()
            displays = self._reason_displays(conn, sorted({str(row[3]) for row in answered if row[3] is not None}))
            in_period: list[ColumnElement[bool]] = []
            if filters.since is not None:
                in_period.append(_fb.answered_at >= format_timestamp(filters.since))
            if filters.until is not None:
                in_period.append(_fb.answered_at <= format_timestamp(filters.until))
            unlinked = int(
                conn.execute(
                    select(func.count()).select_from(feedback_table).where(*in_period, not_(exists().where(ISSUED_BY)))
                ).scalar_one()
            )
        return weekly(
            TrendCounts(
                cards=tuple(DailyCards(_day(row[0]), str(row[1]), int(row[2])) for row in shown),
                feedback=tuple(
                    DailyFeedback(_day(row[0]), str(row[1]), str(row[2]), row[3], int(row[4])) for row in answered
                ),
                reason_displays=displays,
                unlinked_feedback=unlinked,
            )
        )

    def _reason_displays(self, conn: Connection, codes: Sequence[str]) -> dict[str, str]:
        """The display the latest feedback sent with each reason code (the index keeps codes only)."""
        if not codes:
            return {}
        latest = (
            select(func.max(records_table.c.seq))
            .select_from(feedback_table.join(records_table, records_table.c.record_id == _fb.record_id))
            .where(_fb.reason_code.in_(list(codes)))
            .group_by(_fb.reason_code)
        )
        displays: dict[str, str] = {}
        for text in conn.execute(select(records_table.c.payload).where(records_table.c.seq.in_(latest))).scalars():
            reason = json.loads(text).get("override_reason") or {}
            if reason.get("code") and reason.get("display"):
                displays[str(reason["code"])] = str(reason["display"])
        return displays

    def get_many(self, record_ids: Sequence[str]) -> dict[str, StoredRecord]:
        """The records with these ids that exist (feedback with its read-time link), by id."""
        found: dict[str, StoredRecord] = {}
        unique = sorted(set(record_ids))
        with self._reading("reading records") as conn:
            for start in range(0, len(unique), _IN_CHUNK):
                chunk = unique[start : start + _IN_CHUNK]
                for row in conn.execute(select(*_with_links()).where(records_table.c.record_id.in_(chunk))):
                    record = row_to_record(row._mapping)
                    found[record.record_id] = record
        return found

    def feedback_on_cards(self, card_uuids: Sequence[str]) -> list[StoredRecord]:
        """Every feedback record naming one of these card uuids, linked or not, in chain order.

        ``linked_record_id`` says which call (if any) issued the card as the link is read: feedback naming a card
        of this call from another EHR, tenant or service is returned with another link or none.
        """
        unique = sorted(set(card_uuids))
        found: list[StoredRecord] = []
        with self._reading("reading feedback on cards") as conn:
            for start in range(0, len(unique), _IN_CHUNK):
                chunk = unique[start : start + _IN_CHUNK]
                rows = conn.execute(
                    select(*_with_links())
                    .select_from(records_table.join(feedback_table, _fb.record_id == records_table.c.record_id))
                    .where(_fb.card_uuid.in_(chunk))
                ).all()
                found.extend(row_to_record(row._mapping) for row in rows)
        return sorted(found, key=lambda record: record.seq)


def _day(text: Any) -> date:
    return date.fromisoformat(str(text))


class _IndexCheck:
    """Recomputes both index tables from the payloads the chain walk reads, page by page, and compares."""

    def __init__(self, reader: SqlAuditReader) -> None:
        self._reader = reader
        self._page: list[dict[str, Any]] = []
        self._cards = 0
        self._feedback = 0
        self.problem: BrokenLink | None = None

    def watch(self, rows: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """Pass the rows through, checking the index of each full page before handing on the next."""
        for row in rows:
            self._page.append(row)
            yield row
            if len(self._page) >= _VERIFY_PAGE:
                self._check_page()
                if self.problem is not None:
                    return

    def finish(self) -> BrokenLink | None:
        """Check the last page and that the index tables hold no row beyond those the payloads give."""
        if self.problem is None and self._page:
            self._check_page()
        if self.problem is not None:
            return self.problem
        with self._reader._reading("counting index rows") as conn:
            cards = int(conn.execute(select(func.count()).select_from(cards_table)).scalar_one())
            feedback = int(conn.execute(select(func.count()).select_from(feedback_table)).scalar_one())
        if cards != self._cards or feedback != self._feedback:
            return BrokenLink(
                None,
                None,
                f"the index tables hold {cards} card and {feedback} feedback rows, the records give {self._cards} "
                f"and {self._feedback}: index rows were added or removed",
            )
        return None

    def _check_page(self) -> None:
        page, self._page = self._page, []
        expected_cards: dict[str, set[tuple[Any, ...]]] = {}
        expected_feedback: dict[str, tuple[Any, ...]] = {}
        for row in page:
            try:
                payload = json.loads(row["payload"])
                if row["event_type"] == AuditEventType.SERVICE_CALL:
                    cards = {_card_tuple(card) for card in card_rows(row["record_id"], payload)}
                    expected_cards[row["record_id"]] = cards
                    self._cards += len(cards)
                elif row["event_type"] == AuditEventType.FEEDBACK:
                    expected_feedback[row["record_id"]] = _feedback_tuple(feedback_row(row["record_id"], payload))
                    self._feedback += 1
            except (ValueError, KeyError, TypeError, AttributeError):
                continue  # the chain walk has already judged this payload
        ids = [row["record_id"] for row in page]
        with self._reader._reading("checking the index tables") as conn:
            found_cards: dict[str, set[tuple[Any, ...]]] = {}
            for card in conn.execute(select(*cards_table.c).where(_cards.record_id.in_(ids))):
                found_cards.setdefault(card.record_id, set()).add(_card_tuple(card._mapping))
            found_feedback = {
                fb.record_id: _feedback_tuple(fb._mapping)
                for fb in conn.execute(select(*feedback_table.c).where(_fb.record_id.in_(ids)))
            }
        for row in page:
            record_id = row["record_id"]
            if found_cards.get(record_id, set()) != expected_cards.get(record_id, set()):
                self.problem = BrokenLink(
                    int(row["seq"]), record_id, "the card index differs from the hashed payload: it was edited"
                )
                return
            if found_feedback.get(record_id) != expected_feedback.get(record_id):
                self.problem = BrokenLink(
                    int(row["seq"]), record_id, "the feedback index differs from the hashed payload: it was edited"
                )
                return


def _card_tuple(row: Mapping[str, Any] | RowMapping) -> tuple[Any, ...]:
    return tuple(row[name] for name in (c.name for c in cards_table.c))


def _feedback_tuple(row: Mapping[str, Any] | RowMapping) -> tuple[Any, ...]:
    return tuple(row[name] for name in (c.name for c in feedback_table.c))


@contextmanager
def reading(engine: Engine, seconds: float, what: str) -> Iterator[Connection]:
    """A read connection whose database failures (and overruns of its time limit) surface as AuditStoreError."""
    try:
        with engine.connect() as conn:
            conn.execution_options(**{READ_ONLY_OPTION: True})
            with time_limit(conn, seconds, what):
                yield conn
    except StoreTimeout:
        raise
    except SQLAlchemyError as exc:
        raise AuditStoreError(f"cannot read the audit store: {type(exc).__name__}") from exc

"""The quarantine: records the store refused (or spool lines that are not records), kept with the reason.

One record the store will not take must not hold up every record behind it (issue 16, B8), and must not be lost
either: the drain moves it here, beside the spool (``<spool>.quarantine.jsonl``), and goes on. Each line is
``{"quarantined_at", "reason", "record_id", "line"}`` where ``line`` is the spool line exactly as it was written.
Appends are checked and fsynced: once the draining file is deleted this is the record's only copy.

``/readyz`` reports degraded and ``mgcds audit verify`` warns while anything is here; ``mgcds audit redrive``
hands the lines to the store again (after the cause was fixed), and whatever it still refuses comes back here.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cds_service.audit.model import PendingEntry
from cds_service.audit.records import format_timestamp
from cds_service.audit.spool import (
    BATCH_BYTES,
    BATCH_RECORDS,
    NOT_A_RECORD,
    Sink,
    locked_append,
    parse_line,
    store_batches,
)

log = logging.getLogger("mgcds.audit")

QUARANTINE_SUFFIX = ".quarantine.jsonl"
REDRIVE_SUFFIX = ".redrive"
_REASON_MAX = 500


@dataclass(frozen=True)
class QuarantinedLine:
    """One quarantined spool line with why and when it was set aside."""

    quarantined_at: str
    reason: str
    record_id: str | None
    line: str


def quarantine_path(spool_path: Path) -> Path:
    """Where the quarantine of a spool lives."""
    return spool_path.with_name(spool_path.name + QUARANTINE_SUFFIX)


def _record_id(line: str) -> str | None:
    try:
        return parse_line(line).record_id
    except ValueError:
        return None


class Quarantine:
    """The quarantine file of one spool, shared by every process that shares the spool."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def add(self, line: str, reason: str) -> None:
        """Keep ``line`` with ``reason``; raises OSError if the disk refuses (the drain then keeps its file)."""
        entry = {
            "quarantined_at": format_timestamp(datetime.now(UTC)),
            "reason": reason[:_REASON_MAX],
            "record_id": _record_id(line),
            "line": line,
        }
        data = (json.dumps(entry, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8", "replace")
        locked_append(self.path, data, fsync=True)
        log.error("audit record %s quarantined in %s: %s", entry["record_id"] or "(unreadable)", self.path, reason)

    def _files(self) -> list[Path]:
        redriving = sorted(
            p for p in self.path.parent.glob(self.path.name + ".*" + REDRIVE_SUFFIX) if p.name != self.path.name
        )
        return [*redriving, self.path]

    def count(self) -> int:
        """How many lines are quarantined (including any left by an interrupted re-drive)."""
        total = 0
        for path in self._files():
            try:
                with path.open("rb") as handle:
                    total += sum(1 for raw in handle if raw.strip())
            except FileNotFoundError:
                continue
        return total

    def entries(self) -> Iterator[QuarantinedLine]:
        """Every quarantined line, oldest first."""
        for path in self._files():
            try:
                handle = path.open("rb")
            except FileNotFoundError:
                continue
            with handle:
                for raw in handle:
                    if not raw.strip():
                        continue
                    yield _parse_quarantined(raw)

    def redrive(self, append: Sink) -> tuple[int, int]:
        """Hand every quarantined record to the store again; returns (stored, still refused).

        Raises AuditStoreError when the store is unavailable; the lines then stay quarantined.
        """
        self._claim()
        before = self.count_new()
        stored = 0
        for path in self._files()[:-1]:
            stored += self._redrive_file(path, append)
        return stored, self.count_new() - before

    def _redrive_file(self, path: Path, append: Sink) -> int:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return 0
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.fstat(fd).st_nlink == 0:
                return 0
            with os.fdopen(os.dup(fd), "rb") as handle:
                stored = store_batches(
                    self._redriven_entries(handle), append, self.add, path.name, BATCH_RECORDS, BATCH_BYTES
                )
            os.unlink(path)
            return stored
        finally:
            os.close(fd)

    def _redriven_entries(self, handle: Iterator[bytes]) -> Iterator[PendingEntry]:
        for raw in handle:
            if not raw.strip():
                continue
            item = _parse_quarantined(raw)
            try:
                yield parse_line(item.line)
            except ValueError:
                self.add(item.line, item.reason)  # still not a record: back where it was, with its reason

    def count_new(self) -> int:
        """Lines in the live quarantine file (not those being re-driven)."""
        try:
            with self.path.open("rb") as handle:
                return sum(1 for raw in handle if raw.strip())
        except FileNotFoundError:
            return 0

    def _claim(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR)
        except FileNotFoundError:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.fstat(fd).st_size > 0 and os.fstat(fd).st_nlink > 0:
                os.rename(self.path, self.path.with_name(f"{self.path.name}.{time.time_ns():020d}{REDRIVE_SUFFIX}"))
        finally:
            os.close(fd)


def _parse_quarantined(raw: bytes) -> QuarantinedLine:
    text = raw.decode("utf-8", "replace").rstrip("\n")
    try:
        value = json.loads(text)
        return QuarantinedLine(
            quarantined_at=str(value["quarantined_at"]),
            reason=str(value["reason"]),
            record_id=value.get("record_id"),
            line=str(value["line"]),
        )
    except (ValueError, KeyError, TypeError):
        return QuarantinedLine(
            quarantined_at="", reason="the quarantine line itself is damaged", record_id=None, line=text
        )


__all__ = ["NOT_A_RECORD", "QUARANTINE_SUFFIX", "Quarantine", "QuarantinedLine", "quarantine_path"]

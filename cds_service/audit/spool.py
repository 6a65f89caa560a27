"""The local append-only spool: every record is written here first, synchronously, then drained to the store.

One JSON line per record. Appending is a single ``write`` under an exclusive ``flock`` (cheap, no database).
To drain, a writer renames the spool to ``<name>.<ns>.<pid>.draining`` under the same lock (new appends start
a new file), then feeds each draining file, oldest first and holding its lock, to the store and deletes it
only once the store has committed every line. The store skips record ids it already holds, so a process
killed at any moment leaves files that replay exactly once: before the commit nothing was stored, after it
the replay is skipped.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from cds_service.audit.model import PendingEntry
from cds_service.audit.records import AuditEventType
from cds_service.errors import AuditStoreError

log = logging.getLogger("mgcds.audit")

DRAINING_SUFFIX = ".draining"
_COMMON = ("record_id", "event_type", "occurred_at", "service_id")
_REQUIRED = {
    AuditEventType.SERVICE_CALL.value: _COMMON,
    AuditEventType.FEEDBACK.value: (*_COMMON, "card_uuid"),
    AuditEventType.FEEDBACK_CALL.value: _COMMON,
}


def parse_line(line: str) -> PendingEntry:
    """A spool line back into the entry it was written from (raises ValueError when it is not one)."""
    payload = json.loads(line)
    if not isinstance(payload, dict):
        raise ValueError("not an audit record")
    required = _REQUIRED.get(str(payload.get("event_type")))
    if required is None or any(not isinstance(payload.get(key), str) for key in required):
        raise ValueError("not an audit record")
    return PendingEntry(
        record_id=str(payload["record_id"]),
        event_type=str(payload["event_type"]),
        payload_text=line,
        payload=payload,
    )


class Spool:
    """An append-only JSONL file shared safely by every process given the same path."""

    def __init__(self, path: Path, *, fsync: bool = False) -> None:
        self.path = path
        # fsync survives power loss at a cost of milliseconds per record; without it a killed process still
        # loses nothing (the page cache belongs to the kernel), only a machine crash could.
        self.fsync = fsync
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def append(self, line: str) -> None:
        """Append one record line durably enough for a process kill; raises OSError if the disk refuses."""
        data = line.encode("utf-8") + b"\n"
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                if not self._is_current(fd):
                    continue  # renamed for draining between our open and our lock: append to the new file
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    # A writer was killed mid-line: end the torn line so this record stays readable.
                    os.write(fd, b"\n")
                os.write(fd, data)
                if self.fsync:
                    os.fsync(fd)
                return
            finally:
                os.close(fd)  # closing releases the flock

    def _is_current(self, fd: int) -> bool:
        try:
            on_disk = os.stat(self.path)
        except FileNotFoundError:
            return False
        mine = os.fstat(fd)
        return (on_disk.st_ino, on_disk.st_dev) == (mine.st_ino, mine.st_dev)

    def draining_files(self) -> list[Path]:
        """Files claimed for draining and not yet fully stored, oldest first (any process's, live or dead)."""
        prefix = self.path.name + "."
        return sorted(
            p for p in self.path.parent.iterdir() if p.name.startswith(prefix) and p.name.endswith(DRAINING_SUFFIX)
        )

    def has_pending(self) -> bool:
        """True while any record waits in the spool."""
        try:
            if self.path.stat().st_size > 0:
                return True
        except FileNotFoundError:
            pass
        return bool(self.draining_files())

    def pending_count(self) -> int:
        """How many record lines wait (for status output)."""
        files = [self.path, *self.draining_files()]
        total = 0
        for path in files:
            try:
                total += sum(1 for line in path.read_bytes().splitlines() if line.strip())
            except FileNotFoundError:
                continue
        return total

    def _claim(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR)
        except FileNotFoundError:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if self._is_current(fd) and os.fstat(fd).st_size > 0:
                target = self.path.with_name(f"{self.path.name}.{time.time_ns():020d}.{os.getpid()}{DRAINING_SUFFIX}")
                os.rename(self.path, target)
        finally:
            os.close(fd)

    def drain(
        self,
        append: Callable[[Sequence[PendingEntry]], int],
        *,
        batch: int = 200,
        known: Callable[[str, PendingEntry | None], PendingEntry | None] | None = None,
    ) -> int:
        """Feed every waiting record to ``append`` in order; returns how many were stored.

        ``known(line, None)`` may give the entry a line was written from (the writer's own records), which saves
        parsing it again; lines it does not know are parsed.
        """
        self._claim()
        stored = 0
        for path in self.draining_files():
            stored += self._drain_file(path, append, batch, known)
        return stored

    def _drain_file(
        self,
        path: Path,
        append: Callable[[Sequence[PendingEntry]], int],
        batch: int,
        known: Callable[[str, PendingEntry | None], PendingEntry | None] | None = None,
    ) -> int:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return 0  # another process finished it
        stored = 0
        try:
            # Blocking: if another process is draining this file, wait, so records are stored in spool order.
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.fstat(fd).st_nlink == 0:
                return 0
            with os.fdopen(os.dup(fd), "rb") as handle:
                raw = handle.read()
            entries: list[PendingEntry] = []
            for number, line in enumerate(raw.split(b"\n"), start=1):
                if not line.strip():
                    continue
                try:
                    text = line.decode("utf-8")
                    entry = known(text, None) if known is not None else None
                    entries.append(entry if entry is not None else parse_line(text))
                except (ValueError, UnicodeDecodeError):
                    # Only a writer killed mid-write leaves such a fragment (that call never returned), or
                    # someone editing the spool by hand; either way it must not block the records after it.
                    log.warning("audit spool %s line %d is not a complete record; skipped", path.name, number)
            for start in range(0, len(entries), batch):
                stored += append(entries[start : start + batch])
            os.unlink(path)
        except AuditStoreError:
            raise
        finally:
            os.close(fd)
        return stored

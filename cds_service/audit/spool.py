"""The local append-only spool: every record is written here first, synchronously, then drained to the store.

One JSON line per record. Appending is one checked ``write`` under an exclusive ``flock`` (no database): the whole
line and its newline are written, or the file is cut back to where it was and ``OSError`` is raised, so a record
is either complete in the spool or not there at all (a full disk never leaves a fragment that looks like a record
a killed writer tore). With ``fsync`` the line is also on stable storage before ``append`` returns.

To drain, a writer renames the spool to ``<name>.<ns>.<pid>.draining`` under the same lock (new appends start a
new file); the live spool is also renamed so once it reaches ``rotate_bytes``. Each draining file, oldest first and
holding its lock, is read line by line and fed to the store in bounded batches (memory does not grow with the
file), and deleted only once the store has committed every line. The store skips record ids it already holds, so a
process killed at any moment leaves files that replay exactly once. A line the store refuses, or that is not a
record at all, goes to the quarantine (``cds_service.audit.quarantine``) with the reason, and the rest drain.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from cds_service.audit.model import AppendOutcome, PendingEntry
from cds_service.audit.records import AuditEventType
from cds_service.errors import AuditStoreError

log = logging.getLogger("mgcds.audit")

DRAINING_SUFFIX = ".draining"
ROTATE_BYTES = 64 * 1024 * 1024  # the live spool is handed to the drain at this size, even while the store is down
BATCH_RECORDS = 200  # records per store transaction
# Text per store transaction: a call record can be large (hundreds of resources), and its parsed form takes several
# times its text, so batches are bounded by size as well as by count.
BATCH_BYTES = 2 * 1024 * 1024
_COUNT_CHUNK = 1024 * 1024
# Counting the lines of a backlog reads it: beyond this many bytes the count is estimated from the first megabyte
# (readiness must stay cheap during a long outage, when the spool can hold gigabytes).
COUNT_EXACTLY_BYTES = 16 * 1024 * 1024
_COMMON = ("record_id", "event_type", "occurred_at", "service_id")
_REQUIRED = {
    AuditEventType.SERVICE_CALL.value: _COMMON,
    AuditEventType.FEEDBACK.value: (*_COMMON, "card_uuid"),
    AuditEventType.FEEDBACK_CALL.value: _COMMON,
}
NOT_A_RECORD = "not a complete audit record (a writer killed mid-write, or the spool was edited)"


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


@dataclass(frozen=True)
class Backlog:
    """What waits in the spool: files, bytes, record lines, and the ``occurred_at`` of the oldest record."""

    files: int = 0
    bytes: int = 0
    records: int = 0
    oldest_occurred_at: str | None = None
    estimated: bool = False  # records estimated from the average line length (the backlog was large)


Sink = Callable[[Sequence[PendingEntry]], AppendOutcome]
Refuse = Callable[[str, str], None]  # (line, reason): into the quarantine
Known = Callable[[str, PendingEntry | None], PendingEntry | None]


def write_all(fd: int, data: bytes, start: int) -> None:
    """Write ``data`` at the end of ``fd`` (opened O_APPEND, size ``start``) completely, or cut it back and raise."""
    view = memoryview(data)
    written = 0
    try:
        while written < len(data):
            n = os.write(fd, view[written:])
            if n <= 0:  # a regular file that accepts nothing: treat as full
                raise OSError(errno.ENOSPC, "no space left: the write was accepted short")
            written += n
        if os.fstat(fd).st_size != start + len(data):
            raise OSError(errno.EIO, "spool size after the write is not what was written")
    except OSError as exc:
        # Fail closed: leave no fragment behind. A cut line would later look like a killed writer's torn line and
        # be set aside, while its call had been answered.
        try:
            os.ftruncate(fd, start)
        except OSError:
            log.critical("audit spool: could not remove a partial write of %d bytes", written)
        raise OSError(
            exc.errno or errno.EIO,
            f"audit record not written completely ({written} of {len(data)} bytes): {exc.strerror or exc}",
        ) from exc


def fsync_directory(directory: Path) -> None:
    """Make a new file's directory entry durable (a file fsynced in a directory that is not could vanish)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def locked_append(path: Path, data: bytes, *, fsync: bool, is_current: Callable[[int], bool] | None = None) -> int:
    """Append ``data`` to ``path`` under an exclusive flock with a checked write; returns the size before it.

    ``is_current(fd)`` (when given) is asked once the lock is held; False means the file was renamed meanwhile and
    the append is retried on a fresh file.
    """
    while True:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if is_current is not None and not is_current(fd):
                continue  # renamed for draining between our open and our lock: append to the new file
            size = os.fstat(fd).st_size
            prefix = b""
            if size and os.pread(fd, 1, size - 1) != b"\n":
                prefix = b"\n"  # a writer killed mid-line: end the torn line so this record stays readable
            write_all(fd, prefix + data, size)
            if fsync:
                try:
                    os.fdatasync(fd)
                    if size == 0:
                        fsync_directory(path.parent)
                except OSError:
                    with contextlib.suppress(OSError):
                        os.ftruncate(fd, size)
                    raise
            return size
        finally:
            os.close(fd)  # closing releases the flock


def _count_lines(path: Path, limit: int | None = None) -> int:
    count = 0
    read = 0
    with path.open("rb") as handle:
        while chunk := handle.read(_COUNT_CHUNK):
            count += chunk.count(b"\n")
            read += len(chunk)
            if limit is not None and read >= limit:
                break
    return count


def _first_occurred_at(path: Path) -> str | None:
    with path.open("rb") as handle:
        for raw in handle:
            if raw.strip():
                try:
                    value = json.loads(raw).get("occurred_at")
                except (ValueError, AttributeError):
                    return None
                return value if isinstance(value, str) else None
    return None


@dataclass
class Spool:
    """An append-only JSONL file shared safely by every process given the same path."""

    path: Path
    # fsync survives power loss at a cost per record (docs/audit.md has the figures); without it a killed process
    # still loses nothing (the page cache belongs to the kernel), only a machine crash could.
    fsync: bool = False
    rotate_bytes: int = ROTATE_BYTES
    batch_records: int = BATCH_RECORDS
    batch_bytes: int = BATCH_BYTES

    def __post_init__(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def append(self, line: str) -> None:
        """Append one record line completely (and durably, with fsync); raises OSError if the disk refuses."""
        self.append_lines([line])

    def append_lines(self, lines: Sequence[str]) -> None:
        """Append several record lines in one checked write: all of them are spooled, or none is."""
        data = b"".join(line.encode("utf-8") + b"\n" for line in lines)

        def current(fd: int) -> bool:
            if not self._is_current(fd):
                return False
            if os.fstat(fd).st_size >= self.rotate_bytes:
                self._rename_for_draining()  # still under the lock: no append slips in between
                return False  # so the append goes to a fresh file
            return True

        locked_append(self.path, data, fsync=self.fsync, is_current=current)

    def _is_current(self, fd: int) -> bool:
        try:
            on_disk = os.stat(self.path)
        except FileNotFoundError:
            return False
        mine = os.fstat(fd)
        return (on_disk.st_ino, on_disk.st_dev) == (mine.st_ino, mine.st_dev)

    def _rename_for_draining(self) -> None:
        target = self.path.with_name(f"{self.path.name}.{time.time_ns():020d}.{os.getpid()}{DRAINING_SUFFIX}")
        os.rename(self.path, target)

    def draining_files(self) -> list[Path]:
        """Files claimed for draining and not yet fully stored, oldest first (any process's, live or dead)."""
        prefix = self.path.name + "."
        return sorted(
            p for p in self.path.parent.iterdir() if p.name.startswith(prefix) and p.name.endswith(DRAINING_SUFFIX)
        )

    def _waiting_files(self) -> list[Path]:
        return [*self.draining_files(), self.path]

    def has_pending(self) -> bool:
        """True while any record waits in the spool."""
        try:
            if self.path.stat().st_size > 0:
                return True
        except FileNotFoundError:
            pass
        return bool(self.draining_files())

    def backlog(self, *, exact: bool = False) -> Backlog:
        """Files, bytes and record lines waiting, and when the oldest was recorded.

        Cheap whatever the size: past COUNT_EXACTLY_BYTES the lines are estimated from the first megabyte
        (``exact`` counts them all, reading every file in bounded chunks).
        """
        sizes: list[tuple[Path, int]] = []
        for path in self._waiting_files():
            try:
                length = path.stat().st_size
            except FileNotFoundError:
                continue  # drained meanwhile
            if length:
                sizes.append((path, length))
        total = sum(length for _, length in sizes)
        oldest: str | None = None
        for path, _ in sizes:
            try:
                oldest = _first_occurred_at(path)
                break
            except FileNotFoundError:
                continue
        records = 0
        estimated = not exact and total > COUNT_EXACTLY_BYTES
        if estimated:
            sample_path, sample_size = sizes[0]
            try:
                lines = _count_lines(sample_path, _COUNT_CHUNK)
                records = round(total * lines / min(sample_size, _COUNT_CHUNK)) if lines else 1
            except FileNotFoundError:
                records = 0
        else:
            for path, _ in sizes:
                try:
                    records += _count_lines(path)
                except FileNotFoundError:
                    continue
        return Backlog(files=len(sizes), bytes=total, records=records, oldest_occurred_at=oldest, estimated=estimated)

    def pending_count(self) -> int:
        """How many record lines wait (counted exactly, for status output and tests)."""
        return self.backlog(exact=True).records

    def _claim(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR)
        except FileNotFoundError:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if self._is_current(fd) and os.fstat(fd).st_size > 0:
                self._rename_for_draining()
        finally:
            os.close(fd)

    def drain(self, append: Sink, *, refuse: Refuse | None = None, known: Known | None = None) -> int:
        """Feed every waiting record to ``append`` in order, in bounded batches; returns how many were stored.

        ``refuse(line, reason)`` receives what the store refused and the lines that are not records (the
        quarantine); without it they are logged and dropped. ``known(line, None)`` may give the entry a line was
        written from (the writer's own records), which saves parsing it again.
        """
        self._claim()
        stored = 0
        for path in self.draining_files():
            stored += drain_file(
                path, append, refuse=refuse, known=known, batch_records=self.batch_records, batch_bytes=self.batch_bytes
            )
        return stored


def _refused(refuse: Refuse | None, source: str, line: str, reason: str) -> None:
    if refuse is not None:
        refuse(line, reason)
    else:
        log.error("audit record in %s set aside: %s", source, reason)


def iter_entries(
    handle: Iterator[bytes], source: str, refuse: Refuse | None, known: Known | None
) -> Iterator[PendingEntry]:
    """The records of a spool file, line by line; lines that are not records go to ``refuse``."""
    for number, raw in enumerate(handle, start=1):
        line = raw[:-1] if raw.endswith(b"\n") else raw
        if not line.strip():
            continue
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            text = line.decode("utf-8", "replace")
            log.warning("audit spool %s line %d is not UTF-8; set aside", source, number)
            _refused(refuse, source, text, NOT_A_RECORD)
            continue
        entry = known(text, None) if known is not None else None
        if entry is None:
            try:
                entry = parse_line(text)
            except ValueError:
                # Only a writer killed mid-write leaves such a fragment (that call never returned), or someone
                # editing the spool by hand; either way it must not block the records after it.
                log.warning("audit spool %s line %d is not a complete record; set aside", source, number)
                _refused(refuse, source, text, NOT_A_RECORD)
                continue
        yield entry


def store_batches(
    entries: Iterator[PendingEntry],
    append: Sink,
    refuse: Refuse | None,
    source: str,
    batch_records: int,
    batch_bytes: int,
) -> int:
    """Feed ``entries`` to ``append`` in batches bounded by count and text size; refused ones to ``refuse``."""
    stored = 0
    batch: list[PendingEntry] = []
    size = 0

    def flush() -> int:
        outcome = append(batch)
        for entry, reason in outcome.refused:
            _refused(refuse, source, entry.payload_text, reason)
        return outcome.stored

    for entry in entries:
        batch.append(entry)
        size += len(entry.payload_text)
        if len(batch) >= batch_records or size >= batch_bytes:
            stored += flush()
            batch, size = [], 0
    if batch:
        stored += flush()
    return stored


def drain_file(
    path: Path,
    append: Sink,
    *,
    refuse: Refuse | None = None,
    known: Known | None = None,
    batch_records: int = BATCH_RECORDS,
    batch_bytes: int = BATCH_BYTES,
) -> int:
    """Store one claimed file line by line in bounded batches, then delete it; returns how many were stored."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return 0  # another process finished it
    try:
        # Blocking: if another process is draining this file, wait, so records are stored in spool order.
        fcntl.flock(fd, fcntl.LOCK_EX)
        if os.fstat(fd).st_nlink == 0:
            return 0
        with os.fdopen(os.dup(fd), "rb") as handle:
            stored = store_batches(
                iter_entries(handle, path.name, refuse, known), append, refuse, path.name, batch_records, batch_bytes
            )
        os.unlink(path)
    except AuditStoreError:
        raise
    finally:
        os.close(fd)
    return stored

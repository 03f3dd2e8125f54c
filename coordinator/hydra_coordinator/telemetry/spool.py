"""A durable, size-capped, append-only spool of telemetry events on local disk.

Every event is appended here first, synchronously, with one ``write(2)`` of a JSON line on an
``O_APPEND`` file descriptor (a few microseconds, no fsync on the request path). Once ``write``
returns, the line is in the kernel's page cache: it survives ``kill -9`` of the process. A
background ``sync()`` every ``fsync_interval_s`` makes it survive a power loss too.

The writer reads lines from the *committed* position onward, stores them in the database and then
``commit()``s the position past them (a small sidecar file, replaced atomically).
Segments (``<16 digits>.spool``) rotate at ``segment_bytes``; a segment wholly before the
committed position is deleted. A crash between the database commit and the sidecar update
replays a batch, which the database ignores (``ON CONFLICT (request_id) DO NOTHING``).

Thread safety: ``append`` runs on the event loop; ``read``, ``commit`` and ``sync`` run in worker
threads. The bookkeeping is guarded by one lock, held only for a few dictionary operations.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Batch", "Position", "Spool", "SpoolLocked"]

log = logging.getLogger("hydra_coordinator.telemetry")

_SUFFIX = ".spool"
_COMMITTED = "committed"
_READ_CHUNK = 4 * 1024 * 1024


class SpoolLocked(Exception):
    """Another coordinator process (or app) already uses this spool directory."""


@dataclass(frozen=True, slots=True, order=True)
class Position:
    segment: int
    offset: int


@dataclass(slots=True)
class Batch:
    lines: list[bytes] = field(default_factory=list)
    end: Position = Position(0, 0)
    skipped: int = 0  # corrupt lines (a torn tail after a power loss)


class Spool:
    def __init__(self, directory: Path, max_bytes: int, segment_bytes: int | None = None) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes or max(1, min(16 * 1024 * 1024, max_bytes // 8))
        self._lock = threading.Lock()
        self._sizes: dict[int, int] = {}  # segment -> bytes on disk (written, for the active)
        self._total = 0
        self._active = 0
        self._fd = -1
        self._to_close: list[int] = []
        self._dirty = False
        self._dir_dirty = False
        self._lock_fd = -1
        self.committed = Position(0, 0)
        self.appended = 0  # lines appended by this process

    # --- opening and closing ----------------------------------------------------------------

    def open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        lock_fd = os.open(self.directory / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock_fd)
            raise SpoolLocked(f"{self.directory} is in use by another process") from None
        self._lock_fd = lock_fd
        for path in self.directory.glob(f"*{_SUFFIX}"):
            with contextlib.suppress(ValueError):
                self._sizes[int(path.stem)] = path.stat().st_size
        self.committed = self._read_committed()
        for segment in [s for s in self._sizes if s < self.committed.segment]:
            self._unlink(segment)
        self._total = sum(self._sizes.values())
        # never append to a segment a previous process wrote: its tail may be torn
        self._open_segment(max([*self._sizes, self.committed.segment, 0]) + 1)

    def close(self) -> None:
        self.sync()
        with self._lock:
            fds, self._fd = [self._fd, *self._to_close], -1
            self._to_close = []
        for fd in fds:
            if fd >= 0:
                os.close(fd)
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    def _read_committed(self) -> Position:
        try:
            text = (self.directory / _COMMITTED).read_text()
            segment, offset = (int(part) for part in text.split())
            return Position(segment, offset)
        except (OSError, ValueError):
            return Position(min(self._sizes, default=0), 0)

    def _path(self, segment: int) -> Path:
        return self.directory / f"{segment:016d}{_SUFFIX}"

    def _open_segment(self, segment: int) -> None:
        fd = os.open(self._path(segment), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        if self._fd >= 0:
            self._to_close.append(self._fd)  # sync() fsyncs and closes it
        self._fd, self._active = fd, segment
        self._sizes[segment] = 0
        self._dir_dirty = True

    def _unlink(self, segment: int) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(segment).unlink()
        self._total -= self._sizes.pop(segment, 0)

    # --- the request path -------------------------------------------------------------------

    @property
    def size(self) -> int:
        return self._total

    def has_room(self, length: int) -> bool:
        return self._total + length <= self.max_bytes

    def append(self, line: bytes) -> bool:
        """Append one newline-terminated line; False (nothing written) when the spool is full."""
        with self._lock:
            if self._fd < 0 or self._total + len(line) > self.max_bytes:
                return False
            written = os.write(self._fd, line)
            self._sizes[self._active] += written
            self._total += written
            self._dirty = True
            self.appended += 1
            if self._sizes[self._active] >= self.segment_bytes:
                self._open_segment(self._active + 1)
            return True

    # --- the background side ----------------------------------------------------------------

    def sync(self) -> None:
        """fsync what was appended since the last call (and the directory, for new segments)."""
        with self._lock:
            if not (self._dirty or self._to_close or self._dir_dirty):
                return
            fd, closing, dir_dirty = self._fd, self._to_close, self._dir_dirty
            self._to_close, self._dirty, self._dir_dirty = [], False, False
        for old in closing:
            os.fsync(old)
            os.close(old)
        if fd >= 0:
            os.fsync(fd)
        if dir_dirty:
            _fsync_dir(self.directory)

    def backlog(self) -> int:
        """Bytes appended but not yet committed to the database."""
        with self._lock:
            return sum(
                size - (self.committed.offset if seg == self.committed.segment else 0)
                for seg, size in self._sizes.items()
                if seg >= self.committed.segment
            )

    def read(self, max_lines: int) -> Batch:
        """Up to ``max_lines`` complete lines from the committed position on (one segment)."""
        position = self.committed
        while True:
            with self._lock:
                segments = sorted(s for s in self._sizes if s >= position.segment)
                if not segments:
                    return Batch([], position)
                segment = segments[0]
                limit = self._sizes[segment]
                active = segment == self._active
                following = segments[1] if len(segments) > 1 else self._active
            start = position.offset if segment == position.segment else 0
            if start >= limit:
                if active:
                    return Batch([], Position(segment, start))
                position = Position(following, 0)  # this segment is done
                continue
            data = _read_range(self._path(segment), start, min(limit, start + _READ_CHUNK))
            cut = data.rfind(b"\n") + 1
            if cut == 0 and start + len(data) < limit:  # one line longer than a chunk
                data = _read_range(self._path(segment), start, limit)
                cut = data.rfind(b"\n") + 1
            skipped = 0
            if cut == 0 and not active and start + len(data) >= limit:
                # an old segment ending in a torn line (power loss mid-write): skip it
                log.warning("telemetry spool: skipping a torn line at the end of %d", segment)
                return Batch([], Position(following, 0), skipped=1)
            lines = data[: cut - 1].split(b"\n")[:max_lines]
            end = start + sum(len(line) + 1 for line in lines)
            if end >= limit and not active:
                return Batch(lines, Position(following, 0), skipped)
            return Batch(lines, Position(segment, end), skipped)

    def commit(self, position: Position) -> None:
        """Everything before ``position`` is in the database: record that, drop old segments.

        The sidecar is replaced atomically but not fsync'd: after a power loss an older
        position only means replaying rows the database already has (and ignores)."""
        tmp = self.directory / f"{_COMMITTED}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, f"{position.segment} {position.offset}\n".encode())
        finally:
            os.close(fd)
        os.replace(tmp, self.directory / _COMMITTED)
        with self._lock:
            self.committed = position
            for segment in [s for s in self._sizes if s < position.segment and s != self._active]:
                self._unlink(segment)


def _read_range(path: Path, start: int, end: int) -> bytes:
    with path.open("rb") as file:
        file.seek(start)
        return file.read(end - start)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

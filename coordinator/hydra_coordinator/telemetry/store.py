"""``TelemetryStore``: the event sink that spools every record and writes it to the database.

Each process has a spool of its own: ``telemetry-spool`` in the state directory, or, when another
process (``serve`` and ``hydra-coordinator mcp`` on one state directory) holds that one,
``telemetry-spool-2``, ``-3``, .... What a process could not write before it stopped is written
by the next one that takes its spool, or by any running one that finds it unused (every
``_ORPHANS_EVERY_S``).

The request path only appends a line to the spool (see ``spool.py``); a background task moves
batches from the spool into the database, in order, and retries with backoff while the database is
unreachable. Nothing waits on the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

import orjson

from ..config import Settings
from ..dependencies import DependencyState
from ..errors import ServiceUnavailable
from ..metrics import Metrics
from ..paths import state_directory
from . import stats as stats_queries
from .db import Database, open_database
from .record import RequestInfo, RequestRecord
from .spool import Batch, Spool, SpoolLocked

__all__ = ["TelemetryStore"]

log = logging.getLogger("hydra_coordinator.telemetry")


_BACKOFF_MIN, _BACKOFF_MAX = 0.25, 10.0
_NEAR_FULL, _REARM = 0.8, 0.5  # warn at 80% of the cap, again after falling under 50%
_DROP_LOG_EVERY_S = 10.0
_SHUTDOWN_FLUSH_S = 5.0
_SPOOL = "telemetry-spool"
_MAX_SPOOLS = 32  # processes on one state directory
_ORPHANS_EVERY_S = 60.0


class TelemetryStore:
    def __init__(self, settings: Settings, metrics: Metrics, db: Database | None = None) -> None:
        self.settings = settings
        self.config = settings.telemetry
        self.enabled = self.config.enabled
        self.db: Database = db if db is not None else open_database(settings)
        self.dependency = "postgres" if self.db.kind == "postgres" else "sqlite"
        self.metrics = metrics
        self.state_dir = state_directory(settings)
        self.spool = Spool(self.state_dir / _SPOOL, self.config.spool_max_bytes)
        self._events = metrics.telemetry_events  # outcome -> count; only the loop's thread counts
        metrics.telemetry_spooled = lambda: self.spool.appended
        metrics.telemetry_spool_limit.set(self.config.spool_max_bytes)
        metrics.telemetry_spool_bytes.set_function(lambda: float(self.spool.size))
        self._open = False
        self._broken: str | None = None  # why the spool could not be opened
        self._ready = False  # migrated and reachable
        self._failures = 0
        self._replaying = False
        self._appended_at_read = 0  # spool.appended when the writer last read a batch
        self._warned_full = False
        self._dropped = 0
        self._last_drop = -1e9
        self._last_drop_log = -1e9
        self._stopping = False
        self._wake: asyncio.Event | None = None
        self._stop_event: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []

    # --- the sink (request path) ------------------------------------------------------------

    def emit(self, record: RequestRecord) -> None:
        """Copy the record into the spool. This is all the request path pays for telemetry:
        the spool counts its lines, and the fill warning and waking the writer early happen on
        the syncer's tick (``_tick``)."""
        if record.prompt is not None and not self.config.store_prompts:
            record = dataclasses.replace(record, prompt=None)
        line = orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)  # orjson knows dataclasses
        if not (self._open and self.spool.append(line)):
            self._drop()

    def _tick(self) -> None:
        """After each fsync: warn once when the spool nears its cap, and wake the writer when a
        batch's worth of lines arrived since its last read."""
        size, cap = self.spool.size, self.spool.max_bytes
        if size >= _NEAR_FULL * cap and not self._warned_full:
            self._warned_full = True
            log.warning(
                "TELEMETRY SPOOL NEARLY FULL: %d of %d bytes (%s is %s); events will be dropped "
                "when it is full",
                size,
                cap,
                self.dependency,
                "unreachable" if not self._ready else "behind",
            )
        elif size < _REARM * cap:
            self._warned_full = False
        unsent = self.spool.appended - self._appended_at_read
        if unsent >= self.config.batch_size and self._wake is not None:
            self._wake.set()

    def _drop(self) -> None:
        self._tick()  # the spool may be full: warn now, not at the next fsync
        self._events["dropped"] += 1
        self._dropped += 1
        now = time.monotonic()
        self._last_drop = now
        if now - self._last_drop_log >= _DROP_LOG_EVERY_S:
            self._last_drop_log = now
            reason = self._broken or (
                f"spool full ({self.spool.size} of {self.spool.max_bytes} bytes)"
                if self._open
                else "telemetry is not running"
            )
            log.error("TELEMETRY EVENTS DROPPED: %s; %d dropped since start", reason, self._dropped)

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        if not self.enabled:
            return
        self._wake, self._stop_event = asyncio.Event(), asyncio.Event()
        try:
            self.spool = await asyncio.to_thread(self._take_spool)
        except Exception as exc:
            self._broken = f"cannot open the spool in {self.spool.directory}: {exc}"
            log.error("telemetry: %s; events will be dropped", self._broken)
            return
        self._open = True
        backlog = self.spool.backlog()
        if backlog:
            self._replaying = True
            log.info("telemetry: %d bytes of events in the spool to replay", backlog)
        self._tasks = [
            asyncio.create_task(self._writer(), name="telemetry-writer"),
            asyncio.create_task(self._syncer(), name="telemetry-fsync"),
        ]

    def _spool_directory(self, number: int) -> Path:
        return self.state_dir / (_SPOOL if number == 1 else f"{_SPOOL}-{number}")

    def _take_spool(self) -> Spool:
        """The first spool no other process holds (in a worker thread)."""
        for number in range(1, _MAX_SPOOLS + 1):
            spool = Spool(self._spool_directory(number), self.config.spool_max_bytes)
            try:
                spool.open()
            except SpoolLocked:
                continue
            if number > 1:
                log.info(
                    "telemetry: %s is in use by another process; this one spools to %s",
                    self._spool_directory(1),
                    spool.directory,
                )
            return spool
        raise SpoolLocked(f"all {_MAX_SPOOLS} spools in {self.state_dir} are in use")

    async def _write_orphans(self) -> None:
        """Write what other, stopped processes left in their spools (one no process holds).
        Raises when the database is unreachable (the caller backs off)."""
        mine = self.spool.directory
        for number in range(1, _MAX_SPOOLS + 1):
            directory = self._spool_directory(number)
            if directory == mine or not directory.is_dir():
                continue
            spool = Spool(directory, self.config.spool_max_bytes)
            try:
                await asyncio.to_thread(spool.open, append=False)
            except (SpoolLocked, OSError):
                continue  # a running process writes its own
            try:
                while True:
                    batch = await asyncio.to_thread(spool.read, self.config.batch_size)
                    lines = [ln for ln in batch.lines if ln[:1] == b"{" and ln[-1:] == b"}"]
                    self._events["dropped"] += batch.skipped + len(batch.lines) - len(lines)
                    if not batch.lines and batch.end == spool.committed:
                        break
                    self._events["replayed"] += await self._insert(lines)
                    await asyncio.to_thread(spool.commit, batch.end)
            finally:
                await asyncio.to_thread(spool.close)

    async def _orphans_pass(self) -> float:
        """Write other processes' leftovers; when to look again (at once after a failure,
        which the writer then handles like its own: not ready, retried with backoff)."""
        try:
            await self._write_orphans()
        except Exception as exc:
            if not self.db.is_connection_error(exc):
                log.exception("telemetry: writing another process's spool failed")
                return time.monotonic() + _ORPHANS_EVERY_S
            self._failed(exc)
            return 0.0
        return time.monotonic() + _ORPHANS_EVERY_S

    async def stop(self, flush_s: float = _SHUTDOWN_FLUSH_S) -> None:
        """Write what can be written within ``flush_s``; the rest stays in the spool."""
        self._stopping = True
        if self._wake is not None and self._stop_event is not None:
            self._wake.set()
            self._stop_event.set()
        if self._tasks:
            writer, syncer = self._tasks
            try:
                await asyncio.wait_for(asyncio.shield(writer), flush_s)
            except (TimeoutError, Exception):
                writer.cancel()
            syncer.cancel()
            await asyncio.gather(writer, syncer, return_exceptions=True)
            self._tasks = []
        if self._open:
            self._open = False
            await asyncio.to_thread(self.spool.close)
            left = self.spool.backlog()
            if left:
                log.warning(
                    "telemetry: %d bytes of events stay in the spool until the next start", left
                )
        await self.db.close()

    # --- background tasks -------------------------------------------------------------------

    async def _syncer(self) -> None:
        while True:
            await asyncio.sleep(self.config.fsync_interval_s)
            try:
                await asyncio.to_thread(self.spool.sync)
            except OSError:
                log.exception("telemetry: fsync of the spool failed")
            self._tick()

    async def _pause(self, event: asyncio.Event | None, seconds: float) -> None:
        if event is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), seconds)
        if event is self._wake:
            event.clear()

    def _failed(self, exc: BaseException) -> None:
        self._ready = False
        self._replaying = True
        self._failures += 1
        if self._failures == 1 or self._failures % 30 == 0:
            log.warning(
                "telemetry: %s at %s is unavailable (%s: %s); events are kept in the spool "
                "(%d bytes) and written when it is back",
                self.dependency,
                self.db.where,
                type(exc).__name__,
                str(exc).strip().splitlines()[0] if str(exc).strip() else "",
                self.spool.backlog(),
            )

    async def _writer(self) -> None:
        backoff = _BACKOFF_MIN
        orphans_at = 0.0  # when to look for other processes' leftovers next
        while True:
            if not self._ready:
                try:
                    applied = await self.db.migrate()
                except Exception as exc:
                    self._failed(exc)
                    if self._stopping:
                        return
                    await self._pause(self._stop_event, backoff)
                    backoff = min(backoff * 2, _BACKOFF_MAX)
                    continue
                for migration in applied:
                    log.info("telemetry: applied %04d_%s", migration.version, migration.name)
                if self._failures:
                    log.warning("telemetry: %s is back; replaying the spool", self.dependency)
                self._ready, self._failures = True, 0
            self._appended_at_read = self.spool.appended
            # reading in a worker thread keeps the event loop free for requests
            batch, lines = await asyncio.to_thread(self._read)
            self._events["dropped"] += batch.skipped + len(batch.lines) - len(lines)
            if not batch.lines:
                if batch.end != self.spool.committed:
                    await asyncio.to_thread(self.spool.commit, batch.end)
                    continue
                self._replaying = False
                if self._stopping:
                    return
                if time.monotonic() >= orphans_at:
                    orphans_at = await self._orphans_pass()
                await self._pause(self._wake, self.config.flush_interval_s)
                continue
            try:
                written = await self._insert(lines)
            except Exception as exc:
                self._failed(exc)
                if self._stopping:
                    return
                await self._pause(self._stop_event, backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX)
                continue
            await asyncio.to_thread(self.spool.commit, batch.end)
            backoff = _BACKOFF_MIN
            self._events["replayed" if self._replaying else "written"] += written
            if len(batch.lines) < self.config.batch_size:
                self._replaying = False
                if not self._stopping:
                    await self._pause(self._wake, self.config.flush_interval_s)

    def _read(self) -> tuple[Batch, list[bytes]]:
        """A batch from the spool (in a worker thread), and its lines that look like events."""
        batch = self.spool.read(self.config.batch_size)
        # a cheap sanity check; the database refuses whatever else is malformed (_insert_each)
        lines = [line for line in batch.lines if line[:1] == b"{" and line[-1:] == b"}"]
        if len(lines) < len(batch.lines):
            log.error("telemetry: dropping %d corrupt spool line(s)", len(batch.lines) - len(lines))
        return batch, lines

    async def _insert(self, lines: list[bytes]) -> int:
        """Insert a batch; how many were written. Raises only when the database is unreachable."""
        if not lines:
            return 0
        try:
            await self.db.insert(lines)
        except Exception as exc:
            if self.db.is_connection_error(exc):
                raise
            log.exception("telemetry: a batch was refused; writing its events one by one")
            return await self._insert_each(lines)
        return len(lines)

    async def _insert_each(self, lines: list[bytes]) -> int:
        written = 0
        for line in lines:
            try:
                await self.db.insert([line])
            except Exception as exc:
                if self.db.is_connection_error(exc):
                    raise
                self._events["dropped"] += 1
                log.error(
                    "telemetry: dropping a malformed event (%d bytes): %s",
                    len(line),
                    type(exc).__name__,
                )
            else:
                written += 1
        return written

    # --- health and queries -----------------------------------------------------------------

    async def probe(self, timeout_s: float) -> None:
        """Is the database reachable now? Run every ``health.interval_s``, so that ``/health``
        says ``down`` without any traffic; once it failed, the writer retries on its own."""
        if not self._open or not self._ready:
            return  # starting, or already down: the writer is on it
        try:
            await asyncio.wait_for(self.db.ping(), timeout_s)
        except Exception as exc:
            if isinstance(exc, TimeoutError) or self.db.is_connection_error(exc):
                self._failed(exc)
            else:
                log.exception("telemetry: probing %s failed", self.dependency)

    def health(self) -> DependencyState:
        if self._broken is not None or (self._failures and not self._ready):
            return "down"
        if not self._ready:
            return "degraded"  # starting
        recently_dropped = time.monotonic() - self._last_drop < 60
        near_full = self.spool.size >= _NEAR_FULL * self.spool.max_bytes
        if self._replaying or recently_dropped or near_full:
            return "degraded"
        return "healthy"

    async def _ensure_schema(self) -> None:
        if not self._ready:
            await self.db.migrate()

    async def stats(self, since_s: float, *, key_id: str | None = None) -> dict[str, Any]:
        """Requests, route mix, per-backend counts, latency p50/p95/p99, tokens and cost; of
        one key only with ``key_id`` ("" for requests made without a key).

        Raises ``ServiceUnavailable`` (a ``HydraError``) when the database is unreachable."""
        try:
            await self._ensure_schema()
            return await stats_queries.stats(self.db, since_s, self.settings.budgets, key_id=key_id)
        except Exception as exc:
            raise self._unavailable(exc) from None

    async def recent_decisions(self, limit: int) -> list[dict[str, Any]]:
        """The last ``limit`` routing decisions, newest first."""
        try:
            await self._ensure_schema()
            return await stats_queries.recent_decisions(self.db, limit)
        except Exception as exc:
            raise self._unavailable(exc) from None

    async def lookup(self, request_id: str) -> RequestInfo | None:
        """What feedback needs to know about an earlier request, from the table."""
        p = "?" if self.db.kind == "sqlite" else "%s"
        try:
            await self._ensure_schema()
            rows = await self.db.fetch(
                f"SELECT backend, route, task_class, key_id FROM telemetry WHERE request_id = {p}",
                (request_id,),
            )
        except Exception as exc:
            raise self._unavailable(exc) from None
        if not rows:
            return None
        backend, route, task_class, key_id = rows[0]
        return RequestInfo(str(backend), str(route), task_class, key_id)

    async def record_feedback(
        self, request_id: str, rating: float, comment: str | None, key_id: str | None
    ) -> float | None:
        """Store a rating next to the request's telemetry (table ``feedback``): a request has
        one rating, so rating it again replaces the rating and its comment. Returns the rating
        it replaced (None: the first)."""
        sqlite = self.db.kind == "sqlite"
        p = "?" if sqlite else "%s"
        now = "strftime('%Y-%m-%d %H:%M:%f', 'now')" if sqlite else "now()"
        try:
            await self._ensure_schema()
            earlier = await self.db.fetch(
                f"SELECT rating FROM feedback WHERE request_id = {p}", (request_id,)
            )
            await self.db.fetch(
                "INSERT INTO feedback (request_id, rating, comment, key_id) "
                f"VALUES ({p}, {p}, {p}, {p}) ON CONFLICT (request_id) DO UPDATE SET "
                "rating = excluded.rating, comment = excluded.comment, "
                f"key_id = excluded.key_id, timestamp = {now} RETURNING id",
                (request_id, rating, comment, key_id),
            )
        except Exception as exc:
            raise self._unavailable(exc) from None
        return float(earlier[0][0]) if earlier else None

    def _unavailable(self, exc: Exception) -> Exception:
        if not self.db.is_connection_error(exc):
            return exc
        return ServiceUnavailable(
            f"the telemetry database ({self.dependency}) is unavailable: {type(exc).__name__}"
        )

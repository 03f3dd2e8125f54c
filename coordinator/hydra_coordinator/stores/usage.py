"""Usage and spend counters per API key id and for everyone ("global"), per UTC day and month.

With Redis every replica adds to the same counters (``HINCRBY``/``HINCRBYFLOAT`` on
``hydra:usage:<period>:<day or month>:<scope>``, expiring after the period), so budgets see the
spend of the whole deployment. While Redis is down the increments are kept in process and
added to Redis when it is back. The request path never waits for this: the recorder's
:class:`UsageSink` queues each record and a background task adds it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from ..telemetry import RequestRecord
from ..telemetry.record import NO_BACKEND
from .redis_link import RedisLink, RedisUnavailable

if TYPE_CHECKING:
    import redis.asyncio as aioredis

__all__ = [
    "MemoryUsage",
    "Period",
    "RedisUsage",
    "Usage",
    "UsageCounters",
    "UsageSink",
    "period_id",
]

log = logging.getLogger("hydra_coordinator.usage")

Period = Literal["daily", "monthly"]
PERIODS: tuple[Period, ...] = ("daily", "monthly")
GLOBAL = "global"
_TTL_S = {"daily": 2 * 86400, "monthly": 62 * 86400}


def period_id(period: Period, now: float | None = None) -> str:
    moment = time.gmtime(time.time() if now is None else now)
    return time.strftime("%Y-%m-%d" if period == "daily" else "%Y-%m", moment)


@dataclass(slots=True)
class Usage:
    requests: int = 0
    tokens: int = 0
    cost_usd: float = 0.0

    def add(self, other: Usage) -> None:
        self.requests += other.requests
        self.tokens += other.tokens
        self.cost_usd += other.cost_usd


class UsageCounters(Protocol):
    async def add(self, key_id: str | None, tokens: int, cost_usd: float) -> None:
        """Count one request with its tokens and cost for ``key_id`` (None = "anon") and
        for "global", in the current day and month."""
        ...

    async def usage(self, scope: str, period: Period) -> Usage:
        """The current period's totals for ``scope``: "global" or a key id."""
        ...

    async def spend(self, scope: str, period: Period) -> float:
        """US dollars spent in the current period by ``scope``: "global" or a key id."""
        ...


def _scopes(key_id: str | None) -> tuple[str, str]:
    return (GLOBAL, key_id or "anon")


class MemoryUsage:
    """Counters of this process alone."""

    def __init__(self) -> None:
        self._counts: dict[tuple[Period, str, str], Usage] = defaultdict(Usage)

    def add_now(self, key_id: str | None, tokens: int, cost_usd: float) -> None:
        now = time.time()
        for period in PERIODS:
            pid = period_id(period, now)
            for scope in _scopes(key_id):
                self._counts[period, pid, scope].add(Usage(1, tokens, cost_usd))

    async def add(self, key_id: str | None, tokens: int, cost_usd: float) -> None:
        self.add_now(key_id, tokens, cost_usd)

    async def usage(self, scope: str, period: Period) -> Usage:
        found = self._counts.get((period, period_id(period), scope))
        return Usage(found.requests, found.tokens, found.cost_usd) if found else Usage()

    async def spend(self, scope: str, period: Period) -> float:
        return (await self.usage(scope, period)).cost_usd

    def drain(self) -> dict[tuple[Period, str, str], Usage]:
        counts, self._counts = dict(self._counts), defaultdict(Usage)
        return counts


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _key(period: Period, pid: str, scope: str) -> str:
    return f"hydra:usage:{period}:{pid}:{scope}"


class RedisUsage:
    def __init__(self, link: RedisLink) -> None:
        self.link = link
        self.pending = MemoryUsage()  # increments made while Redis was down
        self._flush_lock = asyncio.Lock()
        link.on_recover.append(self.flush)

    async def _write(self, counts: dict[tuple[Period, str, str], Usage]) -> None:
        async def write(r: aioredis.Redis) -> None:
            pipe = r.pipeline(transaction=False)
            for (period, pid, scope), u in counts.items():
                key = _key(period, pid, scope)
                pipe.hincrby(key, "requests", u.requests)
                if u.tokens:
                    pipe.hincrby(key, "tokens", u.tokens)
                if u.cost_usd:
                    pipe.hincrbyfloat(key, "cost_usd", u.cost_usd)
                pipe.expire(key, _TTL_S[period])
            await pipe.execute()

        await self.link.run(write)

    async def add(self, key_id: str | None, tokens: int, cost_usd: float) -> None:
        now = time.time()
        counts = {
            (period, period_id(period, now), scope): Usage(1, tokens, cost_usd)
            for period in PERIODS
            for scope in _scopes(key_id)
        }
        try:
            await self._write(counts)
        except RedisUnavailable:
            self.pending.add_now(key_id, tokens, cost_usd)

    async def flush(self) -> None:
        """Add what was counted while Redis was down."""
        async with self._flush_lock:
            counts = self.pending.drain()
            if not counts:
                return
            try:
                await self._write(counts)
            except RedisUnavailable:
                for (period, pid, scope), u in counts.items():
                    self.pending._counts[period, pid, scope].add(u)

    async def usage(self, scope: str, period: Period) -> Usage:
        key = _key(period, period_id(period), scope)
        result = await self.pending.usage(scope, period)
        try:
            raw = await self.link.run(lambda r: r.hgetall(key))
        except RedisUnavailable:
            return result  # what this process counted since Redis went down
        values = {_text(k): _text(v) for k, v in raw.items()}
        result.add(
            Usage(
                int(values.get("requests", 0)),
                int(values.get("tokens", 0)),
                float(values.get("cost_usd", 0.0)),
            )
        )
        return result

    async def spend(self, scope: str, period: Period) -> float:
        return (await self.usage(scope, period)).cost_usd


class UsageSink:
    """An :class:`~hydra_coordinator.telemetry.EventSink`: counts each answered request off
    the request path (bounded queue; a full queue drops and logs)."""

    def __init__(self, counters: UsageCounters, max_queue: int = 4096) -> None:
        self.counters = counters
        self.queue: asyncio.Queue[RequestRecord] = asyncio.Queue(max_queue)
        self.dropped = 0
        self._task: asyncio.Task[None] | None = None

    def emit(self, record: RequestRecord) -> None:
        if record.backend == NO_BACKEND:
            return  # refused before any backend was tried (401, 429, ...): no usage
        try:
            self.queue.put_nowait(record)
        except asyncio.QueueFull:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("usage counters are behind; %d record(s) dropped", self.dropped)

    async def _run(self) -> None:
        while True:
            r = await self.queue.get()
            tokens = (r.prompt_tokens or 0) + (r.completion_tokens or 0)
            try:
                await self.counters.add(r.key_id, tokens, r.cost_usd or 0.0)
            except Exception:
                log.exception("counting usage failed")
            finally:
                self.queue.task_done()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="usage-counters")

    async def stop(self) -> None:
        if self._task is not None:
            # count what is queued (briefly), then stop
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.queue.join(), 2.0)
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

"""Daily and monthly cloud budgets, for everyone ("global") and per API key.

A request that may go to the cloud first learns how much budget remains (one read), so the
learned router never explores past it. When the route is cloud, the request's expected cost is
*reserved* atomically against every budget that applies to it: with Redis a Lua script checks
all of them and adds to all of them in one step, so replicas behind one load balancer enforce
one limit. When the answer is in, the reservation is settled to the real cost. Without Redis,
or while it is down, the same happens in process.

When a budget is exhausted, ``budgets.on_exhausted`` applies: ``local`` routes the request to a
local backend, ``reject`` answers 429 naming the budget and when it resets.
"""

from __future__ import annotations

import asyncio
import calendar
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import orjson
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..config import BackendConfig, BudgetLimit, BudgetsConfig
from ..errors import TooManyRequests
from ..telemetry.record import RequestRecord

if TYPE_CHECKING:
    import redis.asyncio as aioredis

    from ..stores.redis_link import RedisLink

__all__ = [
    "BudgetCollector",
    "BudgetExhausted",
    "BudgetSink",
    "Budgets",
    "Line",
    "period_start",
    "reset_time",
    "worst_case_cost",
]

log = logging.getLogger("hydra_coordinator.budgets")

Period = Literal["daily", "monthly"]
_TTL_S = {"daily": 2 * 86400, "monthly": 62 * 86400}

# KEYS: the counters; ARGV[1]: the amount; ARGV[2..]: each counter's limit, then its TTL.
# Returns 0 when reserved, else the 1-based index of the first budget it would exceed.
_RESERVE = """
local n = #KEYS
for i = 1, n do
  local spent = tonumber(redis.call('GET', KEYS[i]) or '0')
  if spent + tonumber(ARGV[1]) > tonumber(ARGV[1 + i]) then return i end
end
for i = 1, n do
  redis.call('INCRBYFLOAT', KEYS[i], ARGV[1])
  redis.call('EXPIRE', KEYS[i], ARGV[1 + n + i])
end
return 0
"""


def _period_id(period: Period, now: float) -> str:
    return time.strftime("%Y-%m-%d" if period == "daily" else "%Y-%m", time.gmtime(now))


def period_start(period: Period, now: float) -> float:
    """When the current period began (UTC)."""
    t = time.gmtime(now)
    day = 1 if period == "monthly" else t.tm_mday
    return float(calendar.timegm((t.tm_year, t.tm_mon, day, 0, 0, 0)))


def reset_time(period: Period, now: float) -> float:
    """When the current period ends (UTC)."""
    t = time.gmtime(now)
    if period == "daily":
        return calendar.timegm((t.tm_year, t.tm_mon, t.tm_mday, 0, 0, 0)) + 86400.0
    year, month = (t.tm_year + 1, 1) if t.tm_mon == 12 else (t.tm_year, t.tm_mon + 1)
    return float(calendar.timegm((year, month, 1, 0, 0, 0)))


@dataclass(frozen=True, slots=True)
class Line:
    """One budget that applies to a request: a scope (``global`` or a key id) and a period."""

    scope: str
    period: Period
    limit: float

    def key(self, now: float) -> str:
        return f"hydra:budget:{self.period}:{_period_id(self.period, now)}:{self.scope}"

    def describe(self) -> str:
        who = "global" if self.scope == "global" else f"key {self.scope}"
        return f"{self.period} cloud budget ({who}) of ${self.limit:g}"


class BudgetExhausted(TooManyRequests):
    code = "budget_exhausted"


_DEFAULT_OUTPUT_CAP = 32768  # output tokens reserved when neither the request nor config caps
_IMAGES = frozenset({"image_url", "input_image", "image"})
_FILES = frozenset({"file", "input_file"})


def _parts(body: dict[str, Any]) -> tuple[int, int, int]:
    """(image parts, bytes of those parts, file parts) in the messages."""
    images = image_bytes = files = 0
    for message in body.get("messages") or ():
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            continue
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind in _IMAGES:
                images += 1
                image_bytes += len(orjson.dumps(part))
            elif kind in _FILES:
                files += 1
    return images, image_bytes, files


def worst_case_cost(backend: BackendConfig, body: dict[str, Any], body_size: int) -> float:
    """The most one request can cost on ``backend``, in US dollars.

    The prompt: every byte of what is sent upstream (messages, tools, schemas, every other
    field) counted as a token, as a token is at least one byte in every tokenizer in use;
    an image counted as ``image_tokens`` instead of its bytes (providers bill an image by its
    size in pixels, up to a maximum); a file (a PDF: text and page images) as its bytes plus
    ``image_tokens``. The answer: ``max_completion_tokens`` or ``max_tokens``, else the
    backend's cap, times ``n`` (or ``best_of``)."""
    images, image_bytes, files = _parts(body)
    prompt = max(0, body_size - image_bytes) + (images + files) * backend.image_tokens
    cap = backend.max_output_tokens or backend.context_window or _DEFAULT_OUTPUT_CAP
    asked = body.get("max_completion_tokens") or body.get("max_tokens")
    completion = min(asked, cap) if isinstance(asked, int) and asked > 0 else cap
    # answers generated: n, or (legacy completions) best_of, of which n are returned
    generated = [v for v in (body.get("n"), body.get("best_of")) if isinstance(v, int) and v > 1]
    if generated:
        completion *= max(generated)
    price = backend.price_per_mtok
    return (prompt * price.input + completion * price.output) / 1e6


class _Memory:
    def __init__(self) -> None:
        self.spent: dict[str, float] = {}

    def get(self, keys: Sequence[str]) -> list[float]:
        return [self.spent.get(k, 0.0) for k in keys]

    def reserve(self, keys: Sequence[str], amount: float, limits: Sequence[float]) -> int:
        for index, (key, limit) in enumerate(zip(keys, limits, strict=True), start=1):
            if self.spent.get(key, 0.0) + amount > limit:
                return index
        for key in keys:
            self.spent[key] = self.spent.get(key, 0.0) + amount
        return 0

    def add(self, keys: Sequence[str], amount: float) -> None:
        for key in keys:
            self.spent[key] = self.spent.get(key, 0.0) + amount


class Budgets:
    def __init__(
        self, config: BudgetsConfig, link: RedisLink | None = None, stale_after_s: float = 3600.0
    ) -> None:
        self.config = config
        self.link = link
        self.memory = _Memory()  # the fallback, and all there is without Redis
        self.last_spent: dict[tuple[str, str], float] = {}  # (scope, period) -> $, for /metrics
        # request id -> (amount, counters, when), oldest first
        self._reserved: dict[str, tuple[float, tuple[str, ...], float]] = {}
        # a reservation this old belongs to a request that cannot be running any more (past
        # limits.request_timeout_s): given back, whatever path forgot it
        self.stale_after_s = stale_after_s
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def enabled(self) -> bool:
        c = self.config
        return any(
            limit is not None
            for b in (c, c.per_key, *c.keys.values())
            for limit in (b.daily_usd, b.monthly_usd)
        )

    def lines(self, key_id: str | None) -> list[Line]:
        """The budgets that apply to a request made with ``key_id``."""
        scope = key_id or "anon"
        return [
            *self.lines_for("global", self.config),
            *self.lines_for(scope, self.config.keys.get(scope, self.config.per_key)),
        ]

    @staticmethod
    def lines_for(scope: str, limits: BudgetLimit) -> list[Line]:
        """The budgets ``limits`` sets for ``scope`` (also used by ``stats``, from telemetry)."""
        found = []
        if limits.daily_usd is not None:
            found.append(Line(scope, "daily", limits.daily_usd))
        if limits.monthly_usd is not None:
            found.append(Line(scope, "monthly", limits.monthly_usd))
        return found

    async def _read(self, keys: list[str]) -> list[float]:
        if self.link is not None:
            from ..stores.redis_link import RedisUnavailable

            async def read(r: aioredis.Redis) -> list[float]:
                values = await r.mget(keys)
                return [float(v) if v is not None else 0.0 for v in values]

            try:
                return await self.link.run(read)
            except RedisUnavailable:
                pass
        return self.memory.get(keys)

    async def remaining(self, key_id: str | None) -> tuple[float | None, Line | None]:
        """What can still be spent on the cloud, and the budget that limits it (None: no budget)."""
        lines = self.lines(key_id)
        if not lines:
            return None, None
        now = time.time()
        spent = await self._read([line.key(now) for line in lines])
        best: tuple[float | None, Line | None] = (None, None)
        for line, used in zip(lines, spent, strict=True):
            self.last_spent[line.scope, line.period] = used
            left = line.limit - used
            if best[0] is None or left < best[0]:
                best = (left, line)
        return best

    async def reserve(self, request_id: str, key_id: str | None, amount: float) -> Line | None:
        """Reserve ``amount`` against every budget of ``key_id``; the exceeded budget if not."""
        lines = self.lines(key_id)
        if not lines:
            return None
        now = time.time()
        keys = [line.key(now) for line in lines]
        limits = [line.limit for line in lines]
        await self._release_stale(now)
        failed = await self._reserve(keys, amount, limits, [_TTL_S[line.period] for line in lines])
        if failed:
            return lines[failed - 1]
        self._reserved[request_id] = (amount, tuple(keys), now)
        return None

    def reserved(self, request_id: str) -> float:
        """What ``request_id`` holds reserved (0 when nothing)."""
        return self._reserved.get(request_id, (0.0, (), 0.0))[0]

    async def release(self, request_id: str) -> None:
        """Give back what ``request_id`` reserved, if it still holds anything (a request that
        ended without an answer: upstream timeout, connection refused, client gone, ...)."""
        amount, keys, _ = self._reserved.pop(request_id, (0.0, (), 0.0))
        if keys and amount:
            await self._add(keys, -amount)

    def release_later(self, request_id: str) -> None:
        """:meth:`release` in a task of its own (from a path being cancelled or unwinding)."""
        if request_id not in self._reserved:
            return
        task = asyncio.get_running_loop().create_task(self.release(request_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _release_stale(self, now: float) -> None:
        while self._reserved:
            request_id, (_, _, when) = next(iter(self._reserved.items()))
            if now - when < self.stale_after_s:
                return
            log.warning("request %s held a budget reservation past its deadline", request_id)
            await self.release(request_id)

    async def _reserve(
        self, keys: list[str], amount: float, limits: list[float], ttls: list[int]
    ) -> int:
        if self.link is not None:
            from ..stores.redis_link import RedisUnavailable

            async def run(r: aioredis.Redis) -> int:
                return int(await r.eval(_RESERVE, len(keys), *keys, amount, *limits, *ttls))

            try:
                return await self.link.run(run)
            except RedisUnavailable:
                pass
        return self.memory.reserve(keys, amount, limits)

    async def settle(self, record: RequestRecord) -> None:
        """Replace a reservation by the request's real cost (or add an unreserved cloud cost)."""
        reserved, keys, _ = self._reserved.pop(record.request_id, (0.0, (), 0.0))
        if not keys and record.route == "cloud" and record.cost_usd:
            keys = tuple(line.key(time.time()) for line in self.lines(record.key_id))
        delta = (record.cost_usd or 0.0) - reserved
        if not keys or abs(delta) < 1e-12:
            return
        await self._add(keys, delta)

    async def _add(self, keys: Sequence[str], delta: float) -> None:
        if self.link is not None:
            from ..stores.redis_link import RedisUnavailable

            async def add(r: aioredis.Redis) -> None:
                pipe = r.pipeline(transaction=False)
                for key in keys:
                    pipe.incrbyfloat(key, delta)
                await pipe.execute()

            try:
                await self.link.run(add)
                return
            except RedisUnavailable:
                pass
        self.memory.add(keys, delta)

    def exhausted_error(self, line: Line, now: float | None = None) -> BudgetExhausted:
        moment = time.time() if now is None else now
        resets = reset_time(line.period, moment)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(resets))
        return BudgetExhausted(
            f"the {line.describe()} is exhausted; it resets at {stamp}",
            headers={"retry-after": str(max(1, int(resets - moment)))},
        )


class BudgetSink:
    """A telemetry sink: settles each request's reservation to its real cost, off the path."""

    def __init__(self, budgets: Budgets) -> None:
        self.budgets = budgets
        self._tasks: set[asyncio.Task[None]] = set()

    def emit(self, record: RequestRecord) -> None:
        # cache hits too: a request answered from a cache gives its reservation back
        task = asyncio.get_running_loop().create_task(self._settle(record))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _settle(self, record: RequestRecord) -> None:
        try:
            await self.budgets.settle(record)
        except Exception:
            log.exception("settling the budget of request %s failed", record.request_id)

    async def drain(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


class BudgetCollector(Collector):
    """``hydra_budget_spent_usd`` and ``hydra_budget_limit_usd`` per scope and period, from the
    spend last read (every request that may go to the cloud reads it).

    Without ``per_key`` (``/metrics`` served without a key) only the global budget is exported
    by name; the keys' budgets are summed up in ``hydra_budget_keys_exhausted``, so a scrape
    shows no key's spending."""

    def __init__(self, budgets: Budgets, *, per_key: bool) -> None:
        self.budgets = budgets
        self.per_key = per_key

    def collect(self) -> Iterator[Metric]:
        labels = ["scope", "period"]
        spent = GaugeMetricFamily(
            "hydra_budget_spent_usd", "Cloud spend in the current period", labels=labels
        )
        limit = GaugeMetricFamily(
            "hydra_budget_limit_usd", "Cloud budget of the current period", labels=labels
        )
        exhausted = GaugeMetricFamily(
            "hydra_budget_keys_exhausted",
            "API keys whose own cloud budget of the current period is spent",
            labels=["period"],
        )
        b = self.budgets
        scopes = {"global", *b.config.keys, *(scope for scope, _ in b.last_spent)}
        spent_keys = {"daily": 0, "monthly": 0}
        for scope in sorted(scopes):
            limits = b.config if scope == "global" else b.config.keys.get(scope, b.config.per_key)
            for line in b.lines_for(scope, limits):
                used = b.last_spent.get((scope, line.period), 0.0)
                if scope != "global" and used >= line.limit:
                    spent_keys[line.period] += 1
                if scope == "global" or self.per_key:
                    limit.add_metric([scope, line.period], line.limit)
                    spent.add_metric([scope, line.period], used)
        for period, count in spent_keys.items():
            exhausted.add_metric([period], count)
        yield from (spent, limit, exhausted)

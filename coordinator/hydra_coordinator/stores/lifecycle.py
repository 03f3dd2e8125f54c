"""The stores of a runtime: opened with it, started and stopped with it.

- :func:`open_stores` (from ``build_runtime``) makes the response cache, the rate limiter, the
  usage counters and the knowledge base (Redis-backed when ``redis.url`` is set, else in
  process), registers the ``redis``, ``qdrant`` and ``embeddings`` health checks and the usage
  counting sink.
- :func:`stores_running` (in the lifespan) starts and stops their background work.

The chat path's hooks into them are in :mod:`.hooks`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from prometheus_client import Counter

from ..config import Settings
from ..dependencies import Dependencies
from ..metrics import Metrics
from ..redaction import redact_url
from ..telemetry import Recorder
from .cache import MemoryCache, RedisCache, ResponseCache
from .embeddings import make_embedder
from .knowledge import KnowledgeBase
from .limiter import MemoryLimiter, RateLimiter, RedisLimiter
from .redis_link import RedisLink
from .usage import MemoryUsage, RedisUsage, UsageCounters, UsageSink

__all__ = ["Stores", "open_stores", "stores_running"]


@dataclass
class Stores:
    """A runtime's stores, and their moving parts that the lifespan starts and stops."""

    redis: RedisLink | None
    cache: ResponseCache
    limiter: RateLimiter
    usage: UsageCounters
    usage_sink: UsageSink
    knowledge: KnowledgeBase
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` in the background, off the request path."""
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


def _in_process() -> Literal["healthy"]:
    return "healthy"


def open_stores(
    settings: Settings, metrics: Metrics, recorder: Recorder, dependencies: Dependencies
) -> Stores:
    """The stores ``settings`` configure, their health checks in ``dependencies``, the usage
    counters as a sink of ``recorder``."""
    link = RedisLink(settings.redis) if settings.redis.url else None
    cache: ResponseCache
    limiter: RateLimiter
    usage: UsageCounters
    if link is not None:
        cache = RedisCache(link, settings.cache.ttl_s)
        limiter = RedisLimiter(link, settings.rate_limits)
        usage = RedisUsage(link)
        dependencies.add("redis", link.status, redact_url(link.url))
    else:
        dependencies.add("redis", _in_process, "in process (redis.url unset)")
        cache = MemoryCache(settings.cache.ttl_s)
        limiter = MemoryLimiter(settings.rate_limits)
        usage = MemoryUsage()

    embedder = make_embedder(settings.embeddings, settings.upstream.client)
    knowledge = KnowledgeBase(settings, embedder)
    if knowledge.enabled:
        where = redact_url(knowledge.where)
        dependencies.add(
            "qdrant",
            knowledge.status,
            f"server {where}" if settings.qdrant.url else f"embedded {where}",
            probe=knowledge.probe,
        )
        dependencies.add("embeddings", embedder.status, embedder.description, probe=embedder.probe)
        answers = Counter(
            "hydra_knowledge_answers_dropped",
            "Answers not stored in the knowledge base because its queue was full",
            registry=metrics.registry,
        )
        knowledge.on_drop = answers.inc

    sink = UsageSink(usage)
    recorder.sinks.append(sink)
    return Stores(link, cache, limiter, usage, sink, knowledge)


@asynccontextmanager
async def stores_running(stores: Stores) -> AsyncIterator[None]:
    if stores.redis is not None:
        stores.redis.start()
    stores.usage_sink.start()
    await stores.knowledge.start()
    try:
        yield
    finally:
        if stores.tasks:
            await asyncio.wait(set(stores.tasks), timeout=2.0)
        await stores.usage_sink.stop()
        await stores.knowledge.stop()
        if stores.redis is not None:
            await stores.redis.stop()

"""Wiring of the stores into the runtime, the app's lifespan and the chat path.

- :func:`attach_stores` (from ``build_runtime``) sets ``runtime.cache``, ``runtime.limiter``,
  ``runtime.usage`` and ``runtime.knowledge`` (Redis-backed when ``redis.url`` is set, else in
  process), registers the ``redis``, ``qdrant`` and ``embeddings`` health checks and the usage
  counting sink.
- :func:`stores_running` (in the lifespan) starts and stops their background work.
- :func:`check_rate_limit`, :func:`cache_lookup` and :func:`after_answer` are the chat path's
  three hooks (``api/chat.py: handle_chat``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from prometheus_client import Counter
from starlette.responses import Response

from ..errors import TooManyRequests
from ..telemetry import RequestRecord
from .cache import (
    CachedAnswer,
    MemoryCache,
    RedisCache,
    ResponseCache,
    cache_eligible,
    cache_key,
)
from .embeddings import make_embedder
from .knowledge import KnowledgeBase
from .limiter import MemoryLimiter, RateLimiter, RedisLimiter, retry_after
from .redis_link import RedisLink
from .usage import MemoryUsage, RedisUsage, UsageCounters, UsageSink

if TYPE_CHECKING:
    from ..app import Runtime
    from ..proxy import Call
    from ..routing.router import Decision

__all__ = ["Stores", "after_answer", "attach_stores", "cache_lookup", "check_rate_limit"]

log = logging.getLogger("hydra_coordinator.stores")

CACHE_HEADER = "x-hydra-cache"


@dataclass
class Stores:
    """The stores' moving parts that the lifespan starts and stops."""

    redis: RedisLink | None
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


def _redact_url(url: str) -> str:
    from ..config import _URL_PASSWORD

    return _URL_PASSWORD.sub(r"\g<head>***@", url)


def attach_stores(runtime: Runtime) -> None:
    settings = runtime.settings
    link = RedisLink(settings.redis) if settings.redis.url else None
    cache: ResponseCache
    limiter: RateLimiter
    usage: UsageCounters
    if link is not None:
        cache = RedisCache(link, settings.cache.ttl_s)
        limiter = RedisLimiter(link, settings.rate_limits)
        usage = RedisUsage(link)
        runtime.dependencies["redis"] = link.status
        runtime.dependency_details["redis"] = _redact_url(link.url)
    else:
        runtime.dependencies["redis"] = _in_process
        runtime.dependency_details["redis"] = "in process (redis.url unset)"
        cache = MemoryCache(settings.cache.ttl_s)
        limiter = MemoryLimiter(settings.rate_limits)
        usage = MemoryUsage()
    runtime.cache, runtime.limiter, runtime.usage = cache, limiter, usage

    embedder = make_embedder(settings.embeddings, settings.upstream.client)
    knowledge = KnowledgeBase(settings, embedder)
    runtime.knowledge = knowledge
    if knowledge.enabled:
        runtime.dependencies["qdrant"] = knowledge.status
        runtime.dependencies["embeddings"] = embedder.status
        where = _redact_url(knowledge.where)
        runtime.dependency_details["qdrant"] = (
            f"server {where}" if settings.qdrant.url else f"embedded {where}"
        )
        runtime.dependency_details["embeddings"] = embedder.description
        answers = Counter(
            "hydra_knowledge_answers_dropped",
            "Answers not stored in the knowledge base because its queue was full",
            registry=runtime.metrics.registry,
        )
        knowledge.on_drop = answers.inc

    sink = UsageSink(usage)
    runtime.recorder.sinks.append(sink)
    runtime.stores = Stores(link, sink, knowledge)
    runtime.metrics.watch_dependencies(runtime.dependencies)


@asynccontextmanager
async def stores_running(runtime: Runtime) -> AsyncIterator[None]:
    stores = runtime.stores
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


# --- the chat path's hooks --------------------------------------------------------------------


async def check_rate_limit(runtime: Runtime, key_id: str | None) -> None:
    wait = await runtime.limiter.acquire(key_id)
    if wait is not None:
        raise TooManyRequests(
            "rate limit exceeded for this API key; retry later",
            headers={"retry-after": retry_after(wait)},
        )


async def cache_lookup(
    runtime: Runtime,
    body: dict[str, Any],
    *,
    stream: bool,
    key_id: str | None,
    request_id: str,
    started: float,
    opt_in: bool | None,
    decision: Decision | None = None,
) -> tuple[str | None, Response | None]:
    """(cache key or None when not eligible, the cached response on a hit). A request that
    a privacy rule decided is never cached."""
    if decision is not None and decision.privacy_rule is not None:
        return None, None
    if not runtime.settings.cache.enabled or not cache_eligible(body, stream, opt_in):
        return None, None
    key = cache_key(key_id, body)
    hit = await runtime.cache.get(key)
    runtime.metrics.cache_requests.labels("hit" if hit else "miss").inc()
    if hit is None:
        return key, None
    latency = time.perf_counter() - started
    runtime.recorder.record(
        RequestRecord(
            request_id=request_id,
            key_id=key_id,
            route=hit.route,
            backend=hit.backend,
            model=hit.model,
            status=200,
            stream=False,
            latency_s=latency,
            ttft_s=latency,
            cost_usd=0.0,
            cache_hit=True,
            task_class=decision.task_class if decision is not None else None,
        )
    )
    headers = {
        "x-hydra-route": hit.route,
        "x-hydra-backend": hit.backend,
        "x-hydra-request-id": request_id,
        CACHE_HEADER: "hit",
    }
    return key, Response(hit.body, 200, media_type=hit.content_type, headers=headers)


def after_answer(runtime: Runtime, call: Call, response: Response, key: str | None) -> None:
    """Mark a cache miss, cache the answer and queue it for the knowledge base (unless a
    privacy rule decided the route), all without waiting for a store."""
    if key is not None:
        response.headers[CACHE_HEADER] = "miss"
    if response.status_code != 200 or call.stream:
        return
    body = getattr(response, "body", None)
    if not isinstance(body, bytes):
        return
    backend = response.headers.get("x-hydra-backend", "")
    if key is not None and len(body) <= runtime.settings.cache.max_entry_bytes:
        answer = CachedAnswer(
            body,
            response.media_type or "application/json",
            response.headers.get("x-hydra-route", ""),
            backend,
            call.model,
        )
        runtime.stores.spawn(_cache_put(runtime.cache, key, answer))
    if call.decision.privacy_rule is None:  # what a privacy rule decided is not kept
        runtime.knowledge.submit(call.body, body, backend, call.key_id, call.request_id)


async def _cache_put(cache: ResponseCache, key: str, answer: CachedAnswer) -> None:
    try:
        await cache.put(key, answer)
    except Exception:
        log.warning("caching an answer failed", exc_info=True)

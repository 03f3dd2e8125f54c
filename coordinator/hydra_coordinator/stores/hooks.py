"""The chat path's hooks into the stores (``api/chat.py: handle_chat``), in the order it calls
them: :func:`check_rate_limit`, :func:`cache_lookup` (exact answers), :func:`semantic_answer`
(a highly rated answer to a near-duplicate question) and :func:`after_answer`."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import orjson
from starlette.responses import Response

from ..errors import TooManyRequests
from ..routing.neighbours import single_turn
from ..telemetry import RequestRecord
from .cache import CachedAnswer, ResponseCache, cache_eligible, cache_key
from .limiter import retry_after

if TYPE_CHECKING:
    from ..proxy import Call
    from ..routing.router import Decision
    from ..runtime import Runtime

__all__ = ["CACHE_HEADER", "after_answer", "cache_lookup", "check_rate_limit", "semantic_answer"]

log = logging.getLogger("hydra_coordinator.stores")

CACHE_HEADER = "x-hydra-cache"


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


def semantic_answer(
    runtime: Runtime,
    similar: list[dict[str, Any]],
    body: dict[str, Any],
    *,
    stream: bool,
    decision: Decision,
    key_id: str | None,
    request_id: str,
    started: float,
) -> Response | None:
    """A highly rated answer to a near-duplicate question, as a chat completion; else None."""
    config = runtime.settings.cache.semantic
    if not config.enabled or stream or not similar or not single_turn(body):
        return None
    if decision.privacy_rule is not None:
        return None  # a request a privacy rule decided is never answered from a cache
    good = [
        s
        for s in similar
        if s["score"] >= config.min_similarity
        and s.get("rating") is not None
        and s["rating"] >= config.min_rating
    ]
    if not good:
        return None
    best = max(good, key=lambda s: (s["score"], s["rating"]))
    backend = str(best.get("backend") or "knowledge")
    route = "local"
    for b in runtime.pool:
        if b.name == backend:
            route = b.kind
    latency = time.perf_counter() - started
    model = str(body.get("model") or "auto")
    runtime.recorder.record(
        RequestRecord(
            request_id=request_id,
            key_id=key_id,
            route=route,
            backend=backend,
            model=model,
            status=200,
            stream=False,
            latency_s=latency,
            ttft_s=latency,
            cost_usd=0.0,
            cache_hit=True,
            task_class=decision.task_class,
            reasons=decision.reasons,
            confidence=decision.confidence,
        )
    )
    payload = {
        "id": f"chatcmpl-hydra-{request_id}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": best.get("answer") or ""},
                "finish_reason": "stop",
            }
        ],
    }
    headers = {
        "x-hydra-route": route,
        "x-hydra-backend": backend,
        "x-hydra-request-id": request_id,
        CACHE_HEADER: "semantic",
        "x-hydra-similarity": f"{best['score']:.3f}",
    }
    return Response(orjson.dumps(payload), 200, media_type="application/json", headers=headers)


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

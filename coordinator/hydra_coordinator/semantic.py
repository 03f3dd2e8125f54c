"""The knowledge base on the request path: similar past questions, for learned routing (their
ratings) and for the optional semantic cache (a highly rated answer to a near-duplicate).

Both are off by default: they cost one embedding and one search per request. The search is
bounded by ``routing.knowledge_timeout_s`` and only ever sees the caller's own API key's entries.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from starlette.responses import Response

from .routing.features import last_user_text
from .routing.router import Decision
from .telemetry.record import RequestRecord

__all__ = ["neighbours", "semantic_answer", "similar_questions"]

CACHE_HEADER = "x-hydra-cache"


def _single_turn(body: dict[str, Any]) -> bool:
    messages = body.get("messages") or []
    return sum(1 for m in messages if isinstance(m, dict) and m.get("role") != "system") == 1


async def similar_questions(
    runtime: Any, body: dict[str, Any], key_id: str | None, *, stream: bool
) -> list[dict[str, Any]]:
    settings = runtime.settings
    wanted = settings.routing.knowledge_neighbours or (
        settings.cache.semantic.enabled and not stream and _single_turn(body)
    )
    knowledge = getattr(runtime, "knowledge", None)
    if not wanted or knowledge is None or not knowledge.enabled:
        return []
    text = last_user_text(body.get("messages") or [])
    if not text:
        return []
    try:
        found: list[dict[str, Any]] = await asyncio.wait_for(
            knowledge.search(text, 5, key_id), settings.routing.knowledge_timeout_s
        )
    except TimeoutError:
        return []
    return found


def neighbours(similar: list[dict[str, Any]]) -> list[tuple[str, float, float]]:
    """(backend, rating, similarity) of the similar questions that were rated."""
    return [
        (str(s["backend"]), float(s["rating"]), max(0.0, min(1.0, float(s["score"]))))
        for s in similar
        if s.get("rating") is not None and s.get("backend")
    ]


def semantic_answer(
    runtime: Any,
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
    if not config.enabled or stream or not similar or not _single_turn(body):
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

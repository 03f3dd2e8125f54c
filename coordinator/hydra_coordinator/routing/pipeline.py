"""The routing pipeline, the one every surface uses (chat, ``/route``, MCP, and
``hydra-coordinator route`` offline): similar past questions, privacy rules, budgets, then the
route (:class:`~.service.Router`).

It runs on any :class:`Routing`: the server's runtime, or :func:`offline` (built from the
configuration and the state directory when no server answers)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from ..backends.client import create_client
from ..backends.pool import BackendPool
from ..config import Settings
from ..errors import NotFound
from ..privacy import PrivacyVerdict
from ..stores.knowledge import KnowledgeBase
from .budgets import Budgets, Line, worst_case_cost
from .learning import load_state
from .neighbours import neighbours, similar_questions
from .recent import RecentDecisions
from .router import Decision, UnknownModel
from .service import Router

__all__ = ["OfflineRouting", "Routing", "decide_query", "offline", "route_within_budget"]

_OFFLINE_PROBE_S = 3.0  # longest wait for the backends' model lists offline


class Routing(Protocol):
    """What the pipeline reads: the runtime of a server, or :class:`OfflineRouting`."""

    @property
    def settings(self) -> Settings: ...
    @property
    def router(self) -> Router: ...
    @property
    def budgets(self) -> Budgets: ...
    @property
    def pool(self) -> BackendPool: ...
    @property
    def knowledge(self) -> KnowledgeBase | None: ...
    @property
    def recent(self) -> RecentDecisions: ...


@dataclass
class OfflineRouting:
    """The pipeline's inputs without a server: see :func:`offline`."""

    settings: Settings
    router: Router
    budgets: Budgets
    pool: BackendPool
    knowledge: KnowledgeBase | None = None  # the server holds the knowledge base
    recent: RecentDecisions = field(default_factory=RecentDecisions)
    notes: list[str] = field(default_factory=list)  # how it differs from a server's view


@asynccontextmanager
async def offline(settings: Settings) -> AsyncIterator[OfflineRouting]:
    """The routing a server with ``settings`` would do, built here: the privacy rules, the
    learned router's state from the state directory, the budgets' spend from Redis when
    ``redis.url`` is set, and each backend's health and models from one probe (``GET /models``,
    at most a few seconds). Secrets that cannot be read are left out (a probe may then fail)."""
    from ..paths import state_directory
    from ..stores.redis_link import RedisLink

    router = Router(settings)
    load_state(settings, router)
    state = state_directory(settings) / "router-state.json"
    notes = [f"learned state: {state}" if state.exists() else f"no learned state at {state}"]
    link = RedisLink(settings.redis) if settings.redis.url else None
    if link is None and Budgets(settings.budgets).enabled:
        notes.append("budgets: the server keeps their spend (no redis.url); counted as none")
    pool = BackendPool(settings, skip_unreadable_keys=True)
    pool.client = client = create_client(settings.upstream.client)
    try:
        await _probe_once(pool, settings)
        notes.append("backends (one probe): " + ", ".join(f"{b.name} {b.status}" for b in pool))
        yield OfflineRouting(settings, router, Budgets(settings.budgets, link), pool, notes=notes)
    finally:
        await client.aclose()
        if link is not None:
            await link.stop()


async def _probe_once(pool: BackendPool, settings: Settings) -> None:
    """Each backend's models and health from one probe; a backend that fails it counts as
    down, as the server's circuit breaker would after ``health.failure_threshold`` probes."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(pool.probe_all(), _OFFLINE_PROBE_S)
    for backend in pool:
        if not backend.probe_ok:
            for _ in range(settings.health.failure_threshold):
                backend.record_failure()


async def decide_query(
    runtime: Routing, query: str, context: dict[str, Any], key_id: str | None = None
) -> Decision:
    """The decision the chat endpoint would make for ``query`` in ``context``."""
    earlier = context.get("messages")
    messages = [*(earlier if isinstance(earlier, list) else []), {"role": "user", "content": query}]
    # the whole context, as a chat request would carry it: the privacy rules read all of it
    body = {**context, "messages": messages}
    model = context.get("model", "auto")
    try:
        similar = await similar_questions(
            runtime.settings, runtime.knowledge, body, key_id, stream=False
        )
        decision = await route_within_budget(
            runtime, body, str(model), key_id, neighbours=neighbours(similar)
        )
    except UnknownModel:
        raise NotFound(
            f"the model {model!r} does not exist on any backend", code="model_not_found"
        ) from None
    runtime.recent.add(decision, kind="route", model=str(model), key_id=key_id)
    return decision


async def route_within_budget(
    runtime: Routing,
    body: dict[str, Any],
    model: str,
    key_id: str | None,
    *,
    request_id: str | None = None,
    neighbours: Sequence[tuple[str, float, float]] = (),
    body_size: int | None = None,
) -> Decision:
    """Privacy rules, budgets, then the route. With ``request_id`` (a real request, not a
    preview) a cloud route reserves the most the request can cost on any of its cloud
    candidates (:func:`worst_case_cost`; ``body_size`` is the size of what goes upstream);
    429 or a local route when that does not fit. The reservation is settled to the real cost
    when the request is recorded, and given back (``Budgets.release``) on any other end."""
    privacy = await runtime.router.privacy_verdict(body, key_id)  # once, off the loop if big
    budgets = runtime.budgets
    if not budgets.enabled:
        return runtime.router.decide(
            body,
            model,
            runtime.pool.views(),
            key_id,
            neighbours=neighbours,
            request_id=request_id,
            privacy=privacy,
        )
    views = runtime.pool.views()
    remaining, line = await budgets.remaining(key_id)
    if remaining is not None and line is not None and remaining <= 0:
        return _over_budget(
            runtime, budgets, body, model, key_id=key_id, line=line, privacy=privacy
        )
    decision = runtime.router.decide(
        body,
        model,
        views,
        key_id,
        budget_remaining=remaining,
        neighbours=neighbours,
        request_id=request_id,
        privacy=privacy,
    )
    if decision.route != "cloud" or decision.backend is None:
        return decision
    size = len(orjson.dumps(body)) if body_size is None else body_size
    cost = max(
        worst_case_cost(runtime.settings.backend(name), body, size)
        for name in (decision.backend, *decision.candidates)
        if runtime.settings.backend(name).kind == "cloud"
    )
    if request_id is None:  # a preview: say what a real request would get, reserve nothing
        if remaining is None or line is None or cost <= remaining:
            return decision
        return _over_budget(
            runtime, budgets, body, model, key_id=key_id, line=line, privacy=privacy
        )
    failed = await budgets.reserve(request_id, key_id, cost)
    if failed is None:
        return decision
    return _over_budget(runtime, budgets, body, model, key_id=key_id, line=failed, privacy=privacy)


def _over_budget(
    runtime: Routing,
    budgets: Budgets,
    body: dict[str, Any],
    model: str,
    *,
    key_id: str | None,
    line: Line,
    privacy: PrivacyVerdict,
) -> Decision:
    views = runtime.pool.views()
    if budgets.config.on_exhausted == "reject":
        wanted = runtime.router.decide(body, model, views, key_id, privacy=privacy)
        if wanted.route == "cloud":
            raise budgets.exhausted_error(line)
    return runtime.router.decide(
        body,
        model,
        views,
        key_id,
        cloud_allowed=False,
        cloud_blocked_by=f"the {line.describe()} is exhausted: cloud backends are skipped",
        privacy=privacy,
    )

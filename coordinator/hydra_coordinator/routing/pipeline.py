"""The routing pipeline, the one every surface uses (chat, ``/route``, MCP): similar past
questions, privacy rules, budgets, then the route (:class:`~.service.Router`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..errors import NotFound
from .budgets import Budgets, Line
from .neighbours import neighbours, similar_questions
from .router import Decision, UnknownModel

if TYPE_CHECKING:
    from ..runtime import Runtime

__all__ = ["decide_query", "route_within_budget"]


async def decide_query(
    runtime: Runtime, query: str, context: dict[str, Any], key_id: str | None = None
) -> Decision:
    """The decision the chat endpoint would make for ``query`` in ``context``."""
    earlier = context.get("messages")
    messages = [*(earlier if isinstance(earlier, list) else []), {"role": "user", "content": query}]
    body = {"messages": messages, "tools": context.get("tools")}
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
    runtime: Runtime,
    body: dict[str, Any],
    model: str,
    key_id: str | None,
    *,
    request_id: str | None = None,
    neighbours: Sequence[tuple[str, float, float]] = (),
) -> Decision:
    """Privacy rules, budgets, then the route. With ``request_id`` (a real request, not a
    preview) a cloud route reserves its expected cost; 429 or a local route when it cannot."""
    budgets = runtime.budgets
    if not budgets.enabled:
        return runtime.router.decide(
            body, model, runtime.pool.views(), key_id, neighbours=neighbours, request_id=request_id
        )
    views = runtime.pool.views()
    remaining, line = await budgets.remaining(key_id)
    if remaining is not None and line is not None and remaining <= 0:
        return _over_budget(runtime, budgets, body, model, key_id=key_id, line=line)
    decision = runtime.router.decide(
        body,
        model,
        views,
        key_id,
        budget_remaining=remaining,
        neighbours=neighbours,
        request_id=request_id,
    )
    if decision.route != "cloud" or decision.backend is None:
        return decision
    cost = runtime.router.expected_cost(decision.backend, body)
    if request_id is None:  # a preview: say what a real request would get, reserve nothing
        if remaining is None or line is None or cost <= remaining:
            return decision
        return _over_budget(runtime, budgets, body, model, key_id=key_id, line=line)
    failed = await budgets.reserve(request_id, key_id, cost)
    if failed is None:
        return decision
    return _over_budget(runtime, budgets, body, model, key_id=key_id, line=failed)


def _over_budget(
    runtime: Runtime,
    budgets: Budgets,
    body: dict[str, Any],
    model: str,
    *,
    key_id: str | None,
    line: Line,
) -> Decision:
    views = runtime.pool.views()
    if budgets.config.on_exhausted == "reject":
        wanted = runtime.router.decide(body, model, views, key_id)
        if wanted.route == "cloud":
            raise budgets.exhausted_error(line)
    return runtime.router.decide(
        body,
        model,
        views,
        key_id,
        cloud_allowed=False,
        cloud_blocked_by=f"the {line.describe()} is exhausted: cloud backends are skipped",
    )

"""``POST /route``: the routing decision for a query, without calling any model."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from ..budgets import route_within_budget
from ..errors import NotFound
from ..routing.router import Decision, UnknownModel
from ..semantic import neighbours, similar_questions
from .body import read_model

router = APIRouter()


class RouteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1)
    context: dict[str, Any] = Field(
        default_factory=dict,
        description="Optional: 'messages' (earlier turns), 'tools', 'model' (default auto).",
    )


class RouteResponse(BaseModel):
    route: str
    backend: str | None
    confidence: float
    reasons: list[str]
    candidates: list[str] = []
    task_class: str | None = None
    privacy_rule: str | None = None


async def decide_query(
    runtime: Any, query: str, context: dict[str, Any], key_id: str | None = None
) -> Decision:
    """The decision the chat endpoint would make for ``query`` in ``context``."""
    earlier = context.get("messages")
    messages = [*(earlier if isinstance(earlier, list) else []), {"role": "user", "content": query}]
    body = {"messages": messages, "tools": context.get("tools")}
    model = context.get("model", "auto")
    try:
        similar = await similar_questions(runtime, body, key_id, stream=False)
        decision: Decision = await route_within_budget(
            runtime, body, str(model), key_id, neighbours=neighbours(similar)
        )
    except UnknownModel:
        raise NotFound(
            f"the model {model!r} does not exist on any backend", code="model_not_found"
        ) from None
    runtime.recent.add(decision, kind="route", model=str(model))
    return decision


@router.post("/route", response_model=RouteResponse)
async def route_query(request: Request) -> dict[str, object]:
    runtime = request.app.state.runtime
    payload = await read_model(request, RouteRequest, runtime.settings.limits.max_body_bytes)
    key_id = request.scope.get("state", {}).get("key_id")
    decision = await decide_query(runtime, payload.query, payload.context, key_id)
    return decision.as_dict()

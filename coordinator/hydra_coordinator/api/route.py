"""``POST /route``: the routing decision for a query, without calling any model."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import BadRequest, NotFound
from ..routing.features import extract_features
from ..routing.router import Decision, UnknownModel, decide
from .body import read_json_object

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


def decide_query(runtime: Any, query: str, context: dict[str, Any]) -> Decision:
    """The decision the chat endpoint would make for ``query`` in ``context``."""
    earlier = context.get("messages")
    messages = [*(earlier if isinstance(earlier, list) else []), {"role": "user", "content": query}]
    body = {"messages": messages, "tools": context.get("tools")}
    model = context.get("model", "auto")
    try:
        decision = decide(
            extract_features(body), str(model), runtime.pool.views(), runtime.settings.routing
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
    body, _ = await read_json_object(request, runtime.settings.limits.max_body_bytes)
    try:
        payload = RouteRequest.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise BadRequest(f"{where}: {first['msg']}") from None
    return decide_query(runtime, payload.query, payload.context).as_dict()

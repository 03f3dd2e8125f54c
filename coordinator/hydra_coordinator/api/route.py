"""``POST /route``: the routing decision for a query, without calling any model."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from ..routing.pipeline import decide_query
from ..runtime import get_runtime
from .body import read_model

router = APIRouter()


class RouteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1)
    context: dict[str, Any] = Field(
        default_factory=dict,
        description="Optional: 'messages' (earlier turns), 'tools', 'model' (default auto).",
    )


class Expected(BaseModel):
    route: str
    backend: str | None
    confidence: float


class Estimate(BaseModel):
    backend: str
    kind: str
    quality: float
    uncertainty: float
    cost_usd: float
    utility: float
    sample: float | None


class CloudGain(BaseModel):
    mean: float
    sd: float


class Pacing(BaseModel):
    """Where the month's cloud spend stands against ``routing.pacing.monthly_usd``."""

    monthly_usd: float
    spent_usd: float = Field(description="real cost of this month's cloud requests")
    pace_usd_per_day: float = Field(description="what is left of the budget over the days left")
    share: float | None = Field(
        description="share of recent requests the pace pays for (null: too few seen yet)"
    )
    cost_ratio: float = Field(description="real over expected cost of paced cloud requests")
    required_gain: float = Field(description="the gain a cloud answer must now bring")


class RouteResponse(BaseModel):
    """The decision a request would get now, and what the router believes (docs/api.md)."""

    route: str
    backend: str | None
    confidence: float = Field(description="probability that the chosen route is the better one")
    reasons: list[str]
    candidates: list[str] = []
    task_class: str | None = None
    privacy_rule: str | None = None
    local_confidence: float | None = Field(
        default=None, description="the cold-start scorer's confidence that local suffices"
    )
    strategy: str | None = None
    sampled: bool = False
    explored: bool = False
    expected: Expected
    sampled_decision: Expected | None = None
    estimates: list[Estimate] = []
    cloud_gain: CloudGain | None = None
    pacing: Pacing | None = None


@router.post("/route", response_model=RouteResponse)
async def route_query(request: Request) -> dict[str, object]:
    runtime = get_runtime(request)
    payload = await read_model(request, RouteRequest, runtime.settings.limits)
    key_id = request.scope.get("state", {}).get("key_id")
    decision = await decide_query(runtime, payload.query, payload.context, key_id)
    return decision.explain()

"""``POST /v1/feedback``: rate an earlier request; the router learns from it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from ..errors import BadRequest
from ..runtime import get_runtime
from .body import read_model

router = APIRouter()


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(min_length=1, max_length=64)
    rating: float | str = Field(description="-1 (bad) .. 1 (good), or 'up' / 'down'")
    comment: str | None = Field(default=None, max_length=4000)


@router.post("/v1/feedback")
async def feedback(request: Request) -> dict[str, Any]:
    runtime = get_runtime(request)
    payload = await read_model(request, FeedbackRequest, runtime.settings.limits)
    key_id = request.scope.get("state", {}).get("key_id")
    try:
        return await runtime.feedback.record(
            payload.request_id, payload.rating, payload.comment, key_id
        )
    except ValueError as exc:
        raise BadRequest(str(exc), code="invalid_rating") from None

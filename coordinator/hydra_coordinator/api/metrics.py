"""``GET /metrics``: Prometheus text format."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from ..metrics import CONTENT_TYPE
from ..runtime import get_runtime

router = APIRouter()


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    return Response(get_runtime(request).metrics.render(), media_type=CONTENT_TYPE)

"""``GET /v1/models``: the virtual models and every backend's models."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from ..routing.router import VIRTUAL_MODELS
from ..runtime import get_runtime

router = APIRouter()

_VIRTUAL_OWNER = "hydra"


@router.get("/v1/models")
async def list_models(request: Request) -> dict[str, Any]:
    runtime = get_runtime(request)
    data: list[dict[str, Any]] = [
        {"id": name, "object": "model", "created": 0, "owned_by": _VIRTUAL_OWNER}
        for name in VIRTUAL_MODELS
    ]
    seen = set(VIRTUAL_MODELS)
    for model, backend in runtime.pool.all_models():
        if model not in seen:
            seen.add(model)
            data.append({"id": model, "object": "model", "created": 0, "owned_by": backend.name})
    return {"object": "list", "data": data}

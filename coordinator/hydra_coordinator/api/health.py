"""``GET /health``: the coordinator, its dependencies and its backends; 503 only when unhealthy."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from .. import __version__
from ..runtime import Runtime, get_runtime

router = APIRouter()


def health_report(runtime: Runtime) -> dict[str, Any]:
    backends = {b.name: b.status for b in runtime.pool}
    dependencies = {name: check() for name, check in runtime.dependencies.checks.items()}
    if all(state == "down" for state in backends.values()):
        status = "unhealthy"
    elif any(s != "healthy" for s in (*backends.values(), *dependencies.values())):
        status = "degraded"
    else:
        status = "healthy"
    return {
        "status": status,
        "service": "hybrid-coordinator",
        "version": __version__,
        "dependencies": dependencies,
        "backends": backends,
        # what each dependency is, e.g. "embeddings": "builtin (feature hashing, ...)"
        "dependency_details": dict(runtime.dependencies.details),
    }


@router.get("/health")
async def health(request: Request) -> JSONResponse:
    report = health_report(get_runtime(request))
    return JSONResponse(report, status_code=503 if report["status"] == "unhealthy" else 200)

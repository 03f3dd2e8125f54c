"""``GET /health``: the coordinator, its dependencies and its backends; 503 only when unhealthy."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from .. import __version__
from ..runtime import Runtime, get_runtime

router = APIRouter()


_PATH = re.compile(r"(?<![\w:/])[~/][^\s,;()]*")
_URL = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*://)(?:[^\s@/]*@)?([^\s/?#,;()]*)[^\s,;()]*")


def public_detail(detail: str) -> str:
    """What /health shows without a key: a URL's scheme and host only, no file paths (which
    would show the state directory)."""
    return _PATH.sub("(path hidden)", _URL.sub(r"\1\2", detail))


def health_report(runtime: Runtime, *, detailed: bool = True) -> dict[str, Any]:
    """The health report; without ``detailed`` the dependency details name no paths or URLs
    beyond a host."""
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
        "dependency_details": {
            name: detail if detailed else public_detail(detail)
            for name, detail in runtime.dependencies.details.items()
        },
    }


@router.get("/health")
async def health(request: Request) -> JSONResponse:
    # public: the details only to a caller that sent a valid key
    detailed = request.scope.get("state", {}).get("key_id") is not None
    report = health_report(get_runtime(request), detailed=detailed)
    return JSONResponse(report, status_code=503 if report["status"] == "unhealthy" else 200)

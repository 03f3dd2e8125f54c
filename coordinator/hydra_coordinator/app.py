"""The ASGI application: ``create_app(settings)`` builds the runtime (:mod:`.runtime`), adds the
routers and middleware, and runs the runtime in its lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from . import __version__
from .api import chat, completions, embeddings, feedback, health, models, route, unsupported
from .api import metrics as metrics_api
from .api.accounting import RequestAccounting
from .api.browsers import BrowserGuard
from .api.openapi import install_openapi
from .auth import AuthMiddleware
from .config import Settings
from .errors import install_error_handlers
from .mcp import LazyMcpEndpoint, mount_mcp
from .runtime import Runtime, build_runtime, runtime_context

__all__ = ["create_app"]

log = logging.getLogger("hydra_coordinator")

# the model requests, each recorded once whatever its status (path -> its name in telemetry)
MODEL_PATHS = {chat.PATH: "chat", completions.PATH: "completions", embeddings.PATH: "embeddings"}


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    runtime: Runtime = app.state.runtime
    mcp: LazyMcpEndpoint = app.state.mcp
    try:
        async with runtime_context(runtime):
            # `serve` says where it listens once it does (startup.py)
            log.debug("hydra-coordinator %s started", __version__)
            try:
                yield
            finally:
                await mcp.aclose()
    finally:
        log.info("hydra-coordinator stopped")


def create_app(settings: Settings) -> FastAPI:
    runtime = build_runtime(settings)
    app = FastAPI(
        title="Hydra hybrid coordinator",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.runtime = runtime
    install_error_handlers(app)
    install_openapi(app)
    for router in (
        chat.router,
        models.router,
        route.router,
        feedback.router,
        health.router,
        metrics_api.router,
        completions.router,
        embeddings.router,
        unsupported.router,  # last: any other /v1/ path
    ):
        app.include_router(router)
    app.state.mcp = mount_mcp(app, lambda: runtime)
    app.add_middleware(chat.ChatFastPath, runtime=runtime)  # auth, added next, wraps it
    public = {"/health"} | ({"/metrics"} if settings.auth.public_metrics else set())
    app.add_middleware(AuthMiddleware, keys=runtime.keys, public_paths=public)
    # Host and Origin checks, CORS preflights (which carry no key)
    app.add_middleware(BrowserGuard, listen=settings.listen, keys_enabled=runtime.keys.enabled)
    # outermost: every request gets its request id and is accounted for, whatever answers it
    app.add_middleware(RequestAccounting, recorder=runtime.recorder, model_paths=MODEL_PATHS)
    return app

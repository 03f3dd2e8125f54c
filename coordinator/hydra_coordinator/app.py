"""The ASGI application: ``create_app(settings)`` wires the runtime, routers and middleware."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Literal

from fastapi import FastAPI, Request

from . import __version__
from .api import chat, health, models, route
from .api import metrics as metrics_api
from .auth import ApiKeys, AuthMiddleware
from .backends.client import create_client
from .backends.pool import BackendPool
from .config import Settings, read_secret
from .errors import install_error_handlers
from .metrics import Metrics
from .proxy import Proxy
from .telemetry import Recorder
from .telemetry import lifecycle as telemetry_lifecycle
from .telemetry.store import TelemetryStore

__all__ = ["Runtime", "create_app", "get_runtime"]

log = logging.getLogger("hydra_coordinator")

DependencyState = Literal["healthy", "degraded", "down"]


@dataclass
class Runtime:
    """Everything a request needs, created once per app (no module-level state)."""

    settings: Settings
    pool: BackendPool
    metrics: Metrics
    recorder: Recorder
    proxy: Proxy
    keys: ApiKeys
    # name -> a cheap, non-blocking check; later issues register PostgreSQL, Redis, ...
    dependencies: dict[str, Callable[[], DependencyState]] = field(default_factory=dict)
    # issue 3: telemetry (set by telemetry.lifecycle.setup)
    telemetry: TelemetryStore | None = None


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def build_runtime(settings: Settings) -> Runtime:
    pool = BackendPool(settings)
    metrics = Metrics(pool)
    recorder = Recorder(metrics)
    keys = ApiKeys(
        read_secret(path, f"auth.api_key_files.{i}")
        for i, path in enumerate(settings.auth.api_key_files)
    )
    runtime = Runtime(settings, pool, metrics, recorder, Proxy(pool, recorder), keys)
    telemetry_lifecycle.setup(runtime)
    return runtime


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    runtime: Runtime = app.state.runtime
    runtime.pool.client = create_client(runtime.settings.upstream.client)
    first_probe = asyncio.create_task(runtime.pool.probe_all())
    runtime.pool.start()
    await telemetry_lifecycle.start(runtime)
    log.info(
        "hydra-coordinator %s serving %d backend(s)", __version__, len(runtime.settings.backends)
    )
    try:
        yield
    finally:
        first_probe.cancel()
        await runtime.pool.stop()
        await runtime.pool.client.aclose()
        runtime.pool.client = None
        await telemetry_lifecycle.stop(runtime)
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
    for router in (chat.router, models.router, route.router, health.router, metrics_api.router):
        app.include_router(router)
    public = {"/health"} | ({"/metrics"} if settings.auth.public_metrics else set())
    app.add_middleware(AuthMiddleware, keys=runtime.keys, public_paths=public)
    return app

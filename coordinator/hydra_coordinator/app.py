"""The ASGI application: ``create_app(settings)`` wires the runtime, routers and middleware."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Literal

from fastapi import FastAPI, Request

from . import __version__, learning
from .api import chat, feedback, health, models, route
from .api import metrics as metrics_api
from .auth import ApiKeys, AuthMiddleware
from .backends.client import create_client
from .backends.pool import BackendPool
from .budgets import BudgetCollector, Budgets, BudgetSink
from .config import Settings, read_secret
from .errors import install_error_handlers
from .learning import Feedback, RouterState
from .mcp import mount_mcp
from .metrics import Metrics
from .proxy import Proxy
from .routing.recent import RecentDecisions
from .routing.service import Router
from .stores.cache import ResponseCache
from .stores.knowledge import KnowledgeBase
from .stores.lifecycle import Stores, attach_stores, stores_running
from .stores.limiter import RateLimiter
from .stores.usage import UsageCounters
from .telemetry import Recorder
from .telemetry import lifecycle as telemetry_lifecycle
from .telemetry.store import TelemetryStore
from .tokens import TokenCounter

__all__ = ["Runtime", "build_runtime", "create_app", "get_runtime", "runtime_context"]

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
    # the latest routing decisions (no prompt text), for the MCP resource hydra://decisions/recent
    recent: RecentDecisions = field(default_factory=RecentDecisions)
    router: Router | None = None
    # issue 3: telemetry (set by telemetry.lifecycle.setup)
    telemetry: TelemetryStore | None = None
    # issue 4: feedback and the learned router's state (set by learning.setup)
    feedback: Feedback | None = None
    router_state: RouterState | None = None
    # stores (issue 3), set by stores.lifecycle.attach_stores: Redis or in process; Qdrant
    dependency_details: dict[str, str] = field(default_factory=dict)  # shown in /health
    cache: ResponseCache = field(init=False)
    limiter: RateLimiter = field(init=False)
    usage: UsageCounters = field(init=False)
    knowledge: KnowledgeBase = field(init=False)
    stores: Stores = field(init=False)
    budgets: Budgets | None = None  # issue 4: cloud budgets (budgets.py)


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
    tokens = TokenCounter(settings.cost.tokenizer_file)
    runtime = Runtime(settings, pool, metrics, recorder, Proxy(pool, recorder, tokens), keys)
    attach_stores(runtime)
    runtime.budgets = Budgets(settings.budgets, runtime.stores.redis)
    if runtime.budgets.enabled:
        runtime.recorder.sinks.append(BudgetSink(runtime.budgets))
        metrics.registry.register(BudgetCollector(runtime.budgets))
    runtime.router = Router(settings)
    telemetry_lifecycle.setup(runtime)
    learning.setup(runtime)
    return runtime


@asynccontextmanager
async def runtime_context(runtime: Runtime) -> AsyncIterator[Runtime]:
    """Start what the runtime needs to serve (upstream client, health probes) and stop it after:
    the app's lifespan and ``hydra-coordinator mcp`` (stdio) both run inside this."""
    runtime.pool.client = create_client(runtime.settings.upstream.client)
    first_probe = asyncio.create_task(runtime.pool.probe_all())
    runtime.pool.start()
    await telemetry_lifecycle.start(runtime)
    await learning.start(runtime)
    try:
        async with stores_running(runtime):
            yield runtime
    finally:
        first_probe.cancel()
        await runtime.pool.stop()
        await runtime.pool.client.aclose()
        runtime.pool.client = None
        await learning.stop(runtime)
        await telemetry_lifecycle.stop(runtime)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    runtime: Runtime = app.state.runtime
    try:
        async with runtime_context(runtime):
            log.info(
                "hydra-coordinator %s serving %d backend(s)",
                __version__,
                len(runtime.settings.backends),
            )
            try:
                yield
            finally:
                await app.state.mcp.aclose()
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
    for router in (
        chat.router,
        models.router,
        route.router,
        feedback.router,
        health.router,
        metrics_api.router,
    ):
        app.include_router(router)
    app.state.mcp = mount_mcp(app, lambda: app.state.runtime)
    app.add_middleware(chat.ChatFastPath, runtime=runtime)  # auth, added next, wraps it
    public = {"/health"} | ({"/metrics"} if settings.auth.public_metrics else set())
    app.add_middleware(AuthMiddleware, keys=runtime.keys, public_paths=public)
    return app

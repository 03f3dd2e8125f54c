"""The application state: one typed :class:`Runtime` per process that serves (the HTTP app, or
``hydra-coordinator mcp`` over stdio), built whole by :func:`build_runtime` and run inside
:func:`runtime_context`.

Handlers reach it with :func:`get_runtime`; nothing here imports the HTTP app, the API or the MCP
server, which all import this module (no import cycle).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .auth import ApiKeys
from .backends.client import create_client
from .backends.pool import BackendPool
from .config import Settings, admin_keys, client_keys
from .dependencies import Dependencies
from .metrics import Metrics
from .proxy import Proxy
from .routing.budgets import BudgetCollector, Budgets, BudgetSink
from .routing.feedback import Feedback
from .routing.learning import RouterState, open_learner
from .routing.recent import RecentDecisions
from .routing.service import Router
from .stores.cache import ResponseCache
from .stores.knowledge import KnowledgeBase
from .stores.lifecycle import Stores, open_stores, stores_running
from .stores.limiter import RateLimiter
from .stores.usage import UsageCounters
from .telemetry import Recorder
from .telemetry.lifecycle import open_telemetry
from .telemetry.store import TelemetryStore
from .tokens import TokenCounter

if TYPE_CHECKING:
    from starlette.requests import HTTPConnection

__all__ = ["Runtime", "build_runtime", "get_runtime", "runtime_context"]


@dataclass
class Runtime:
    """Everything a request needs, created once per app (no module-level state)."""

    settings: Settings
    pool: BackendPool
    metrics: Metrics
    recorder: Recorder
    proxy: Proxy
    keys: ApiKeys
    router: Router  # privacy rules, then the learned (or threshold) router
    budgets: Budgets  # cloud budgets; ``enabled`` is False when none is configured
    telemetry: TelemetryStore
    feedback: Feedback
    router_state: RouterState  # the learned router's state on disk
    stores: Stores
    cache: ResponseCache
    limiter: RateLimiter
    usage: UsageCounters
    knowledge: KnowledgeBase
    dependencies: Dependencies  # what /health probes and describes
    # the latest routing decisions (no prompt text), for the MCP resource hydra://decisions/recent
    recent: RecentDecisions = field(default_factory=RecentDecisions)


def get_runtime(connection: HTTPConnection) -> Runtime:
    """The runtime of the app serving ``connection`` (a request or a websocket)."""
    runtime: Runtime = connection.app.state.runtime
    return runtime


def build_runtime(settings: Settings) -> Runtime:
    pool = BackendPool(settings)
    metrics = Metrics(pool)
    recorder = Recorder(metrics)
    keys = ApiKeys(client_keys(settings), admin_keys(settings))
    proxy = Proxy(pool, recorder, TokenCounter(settings.cost.tokenizer_file))
    proxy.max_answer_bytes = settings.limits.max_answer_bytes
    dependencies = Dependencies()
    stores = open_stores(settings, metrics, recorder, dependencies)
    metrics.watch_dependencies(dependencies.checks)
    # a reservation older than any request can run is given back, whatever forgot it
    budgets = Budgets(
        settings.budgets, stores.redis, stale_after_s=settings.limits.request_timeout_s + 60
    )
    if budgets.enabled:
        recorder.sinks.append(BudgetSink(budgets))
        # per key only where /metrics needs a key: a public scrape shows no key's spending
        metrics.registry.register(
            BudgetCollector(budgets, per_key=not settings.auth.public_metrics)
        )
    router = Router(settings)
    telemetry = open_telemetry(settings, metrics, recorder, proxy, dependencies)
    router_state, recent = open_learner(settings, router, recorder)
    return Runtime(
        settings=settings,
        pool=pool,
        metrics=metrics,
        recorder=recorder,
        proxy=proxy,
        keys=keys,
        router=router,
        budgets=budgets,
        telemetry=telemetry,
        feedback=Feedback(recent, telemetry, stores.knowledge, router.prompts),
        router_state=router_state,
        stores=stores,
        cache=stores.cache,
        limiter=stores.limiter,
        usage=stores.usage,
        knowledge=stores.knowledge,
        dependencies=dependencies,
    )


@asynccontextmanager
async def runtime_context(runtime: Runtime) -> AsyncIterator[Runtime]:
    """Start what the runtime needs to serve (upstream client, health probes) and stop it after:
    the app's lifespan and ``hydra-coordinator mcp`` (stdio) both run inside this."""
    client = runtime.pool.client = create_client(runtime.settings.upstream.client)
    runtime.pool.start()  # probes every backend at once, then every health.interval_s
    await asyncio.to_thread(runtime.router.privacy.warm_up)
    await runtime.telemetry.start()
    runtime.router_state.start()
    try:
        async with stores_running(runtime.stores):
            health = runtime.settings.health
            runtime.dependencies.start(health.interval_s, health.timeout_s)
            try:
                yield runtime
            finally:
                await runtime.dependencies.stop()
    finally:
        await runtime.pool.stop()
        await client.aclose()
        runtime.pool.client = None
        await runtime.router_state.stop()
        await runtime.telemetry.stop()

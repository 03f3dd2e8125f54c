"""Wiring the telemetry store into the app: ``setup`` when the runtime is built, ``start`` and
``stop`` in the lifespan."""

from __future__ import annotations

from typing import Any

from .store import TelemetryStore

__all__ = ["setup", "start", "stop"]


def setup(runtime: Any) -> TelemetryStore:
    """Create ``runtime.telemetry``; when enabled, register it as a sink and a dependency."""
    store = TelemetryStore(runtime.settings, runtime.metrics)
    runtime.telemetry = store
    if store.enabled:
        runtime.recorder.sinks.append(store)
        # /health always names the telemetry database "postgres"; details say when it is the
        # embedded SQLite file (database.url unset)
        runtime.dependencies["postgres"] = store.health
        if store.db.kind == "sqlite":
            where = getattr(store.db, "where", "")
            runtime.dependency_details["postgres"] = f"sqlite {where} (database.url unset)"
        runtime.proxy.store_prompts = runtime.settings.telemetry.store_prompts
    return store


async def start(runtime: Any) -> None:
    await runtime.telemetry.start()


async def stop(runtime: Any) -> None:
    """Flush to the database for a few seconds; what is left stays in the spool (on disk)."""
    await runtime.telemetry.stop()

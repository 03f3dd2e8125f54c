"""Opening the telemetry store for a runtime (``build_runtime``), which starts and stops it."""

from __future__ import annotations

from ..config import Settings
from ..dependencies import Dependencies
from ..metrics import Metrics
from ..proxy import Proxy
from .record import Recorder
from .store import TelemetryStore

__all__ = ["open_telemetry"]


def open_telemetry(
    settings: Settings,
    metrics: Metrics,
    recorder: Recorder,
    proxy: Proxy,
    dependencies: Dependencies,
) -> TelemetryStore:
    """The telemetry store; when enabled, a sink of ``recorder`` and a dependency."""
    store = TelemetryStore(settings, metrics)
    if store.enabled:
        recorder.sinks.append(store)
        # named by what it is: "postgres" (database.url) or "sqlite" (the file in the state
        # directory); probed every health.interval_s
        detail = f"{store.db.kind} {store.db.where}"
        if store.db.kind == "sqlite":
            detail += " (database.url unset)"
        dependencies.add(store.dependency, store.health, detail, probe=store.probe)
        proxy.store_prompts = settings.telemetry.store_prompts
    return store

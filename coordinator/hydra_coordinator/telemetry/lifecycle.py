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
        # /health always names the telemetry database "postgres"; details say when it is the
        # embedded SQLite file (database.url unset)
        detail = None
        if store.db.kind == "sqlite":
            where = getattr(store.db, "where", "")
            detail = f"sqlite {where} (database.url unset)"
        dependencies.add("postgres", store.health, detail)
        proxy.store_prompts = settings.telemetry.store_prompts
    return store

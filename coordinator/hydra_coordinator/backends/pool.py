"""All configured backends, and the background health prober that watches them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

from ..config import BackendConfig, ConfigError, Settings, backend_api_key
from ..routing.router import BackendView
from .backend import Backend
from .client import Timeouts, UpstreamClient, UpstreamError

__all__ = ["BackendPool"]

log = logging.getLogger("hydra_coordinator.backends")


def _api_key(backend: BackendConfig, index: int, *, skip_unreadable: bool) -> str | None:
    try:
        return backend_api_key(backend, index)
    except ConfigError:
        if skip_unreadable:
            return None
        raise


class BackendPool:
    def __init__(
        self,
        settings: Settings,
        client: UpstreamClient | None = None,
        *,
        skip_unreadable_keys: bool = False,
    ) -> None:
        """``skip_unreadable_keys``: a backend whose API key cannot be read gets none (for
        ``hydra-coordinator route`` offline) instead of a :class:`ConfigError`."""
        self._settings = settings
        self._client = client
        self._backends = {
            b.name: Backend(
                b, settings.health, _api_key(b, i, skip_unreadable=skip_unreadable_keys)
            )
            for i, b in enumerate(settings.backends)
        }
        self._task: asyncio.Task[None] | None = None
        self.first_probe: asyncio.Task[None] | None = None

    @property
    def client(self) -> UpstreamClient:
        if self._client is None:
            raise RuntimeError("the backend pool has no HTTP client yet (the app is not started)")
        return self._client

    @client.setter
    def client(self, client: UpstreamClient | None) -> None:
        self._client = client

    def __iter__(self) -> Iterator[Backend]:
        return iter(self._backends.values())

    def __getitem__(self, name: str) -> Backend:
        return self._backends[name]

    def views(self) -> list[BackendView]:
        """What chat routing sees: every backend that serves chat models."""
        return [b.view() for b in self._backends.values() if b.serves_chat]

    def all_models(self) -> list[tuple[str, Backend]]:
        return [(model, b) for b in self._backends.values() for model in b.models]

    @staticmethod
    def probe_url(backend: Backend) -> str:
        return backend.config.probe_url or f"{backend.config.base_url}/models"

    @staticmethod
    def auth_headers(backend: Backend) -> dict[str, str]:
        return {"authorization": f"Bearer {backend.api_key}"} if backend.api_key else {}

    # -- probing ------------------------------------------------------------------------------

    async def probe(self, backend: Backend) -> None:
        health = self._settings.health
        timeouts = Timeouts(
            connect=min(health.timeout_s, backend.config.connect_timeout_s), read=health.timeout_s
        )
        before, probed_before = backend.status, backend.probed
        try:
            payload = await self.client.get_json(
                self.probe_url(backend), self.auth_headers(backend), timeouts
            )
        except UpstreamError as exc:
            backend.probe_error = exc
            backend.record_probe(False)
            if before != backend.status or before == "healthy":
                log.warning(
                    "backend %s probe failed: %s (now %s)", backend.name, exc, backend.status
                )
            return
        data = payload.get("data") if isinstance(payload, dict) else None
        if isinstance(data, list):
            ids = (m.get("id") for m in data if isinstance(m, dict))
            backend.discovered_models = tuple(i for i in ids if isinstance(i, str))
        backend.probe_error = None
        backend.record_probe(True)
        if before != "healthy" and probed_before:  # the first answer: see startup.py
            log.info("backend %s is healthy", backend.name)

    async def probe_all(self) -> None:
        await asyncio.gather(*(self.probe(b) for b in self._backends.values()))

    async def _probe_forever(self) -> None:
        while True:
            await asyncio.sleep(self._settings.health.interval_s)
            try:
                await self.probe_all()
            except Exception:  # a prober bug must never stop probing
                log.exception("health probe round failed")

    def start(self) -> None:
        """Probe every backend now (:attr:`first_probe`), then every ``health.interval_s``."""
        self.first_probe = asyncio.create_task(self.probe_all(), name="hydra-first-probe")
        self._task = asyncio.create_task(self._probe_forever(), name="hydra-health-prober")

    async def stop(self) -> None:
        for task in (self.first_probe, self._task):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self.first_probe = self._task = None

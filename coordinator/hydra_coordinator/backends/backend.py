"""One upstream backend at run time: its concurrency limit, wait queue, circuit breaker and health.

A GPU serves few requests at once, so each backend admits ``max_concurrency`` requests and lets
at most ``max_queue`` more wait; beyond that :class:`QueueFull` tells the caller to answer 429.

The circuit breaker opens after ``failure_threshold`` consecutive failures (from requests or
from health probes) and stays open for ``cooldown_s``; then one request or probe may try again
(half-open) and a success closes it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Literal

from ..config import BackendConfig, HealthConfig
from ..routing.router import BackendView

__all__ = ["Backend", "QueueFull"]

Status = Literal["healthy", "degraded", "down"]


class QueueFull(Exception):
    """The backend's wait queue is full."""

    def __init__(self, backend: str, retry_after: int) -> None:
        super().__init__(f"backend {backend!r} is busy: its wait queue is full")
        self.retry_after = retry_after


class Backend:
    def __init__(
        self,
        config: BackendConfig,
        health: HealthConfig,
        api_key: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.name = config.name
        self.kind = config.kind
        self.api_key = api_key
        self.discovered_models: tuple[str, ...] = ()
        self._health = health
        self._clock = clock
        self._slots = asyncio.Semaphore(config.max_concurrency)
        self.in_flight = 0
        self.waiting = 0
        self.failures = 0  # consecutive
        self.open_until = 0.0
        self.probed = False  # a health probe has answered at least once
        self.probe_ok = True
        self.probe_error: Exception | None = None  # why the last probe failed

    # -- models -------------------------------------------------------------------------------

    @property
    def models(self) -> tuple[str, ...]:
        """Every model it serves: as configured (else as discovered), and its embedding models."""
        served = tuple(self.config.models) or self.discovered_models
        extra = tuple(m for m in self.config.embedding_models if m not in served)
        return served + extra

    @property
    def chat_models(self) -> tuple[str, ...]:
        embedding = self.config.embedding_models
        return tuple(m for m in self.models if m not in embedding)

    @property
    def serves_chat(self) -> bool:
        """False for a backend whose models are all embedding models (e.g. TEI)."""
        return bool(self.chat_models) or not self.models

    def upstream_model(self, requested: str, *, embeddings: bool = False) -> str:
        """The model to ask the upstream for when the client asked for ``requested``: that model
        when it serves it, else (``auto``, ``local``, ``cloud``, or a model of another backend
        on failover) its ``default_model``, else its first chat model; for embeddings, its first
        embedding model."""
        if requested in self.models:
            return requested
        if embeddings:
            first = self.config.embedding_models[:1]
            return first[0] if first else requested
        if self.config.default_model is not None:
            return self.config.default_model
        return self.chat_models[0] if self.chat_models else requested

    # -- health -------------------------------------------------------------------------------

    @property
    def failure_threshold(self) -> int:
        return self._health.failure_threshold

    @property
    def cooldown_s(self) -> float:
        return self._health.cooldown_s

    @property
    def breaker_open(self) -> bool:
        return self.failures >= self._health.failure_threshold and self._clock() < self.open_until

    @property
    def status(self) -> Status:
        if self.breaker_open:
            return "down"
        if self.failures >= self._health.failure_threshold:
            return "degraded"  # half-open: the next try decides
        if not self.probed or self.failures:
            return "degraded"
        return "healthy"

    def record_success(self) -> None:
        self.failures = 0
        self.open_until = 0.0

    def record_failure(self) -> None:
        self.failures += 1
        if self.failures >= self._health.failure_threshold:
            self.open_until = self._clock() + self._health.cooldown_s

    def record_probe(self, ok: bool) -> None:
        self.probed = True
        self.probe_ok = ok
        if ok:
            self.record_success()
        else:
            self.record_failure()

    def view(self) -> BackendView:
        load = (self.in_flight + self.waiting) / self.config.max_concurrency
        return BackendView(self.name, self.kind, self.status, load, self.chat_models)

    # -- admission ----------------------------------------------------------------------------

    def retry_after(self) -> int:
        """A hint for clients told to come back: about one request's time per queued request."""
        return max(1, min(60, self.waiting // self.config.max_concurrency + 1))

    async def acquire(self) -> None:
        """Take one of the backend's concurrency slots, waiting in its bounded queue if needed.

        Raises :class:`QueueFull` at once when the queue is full. Pair with :meth:`release`.
        """
        if self._slots.locked() or self.waiting:
            if self.waiting >= self.config.max_queue:
                raise QueueFull(self.name, self.retry_after())
            self.waiting += 1
            try:
                await self._slots.acquire()
            finally:
                self.waiting -= 1
        else:
            await self._slots.acquire()
        self.in_flight += 1

    def release(self) -> None:
        self.in_flight -= 1
        self._slots.release()

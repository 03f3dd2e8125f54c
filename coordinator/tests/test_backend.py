from __future__ import annotations

import asyncio

import pytest

from hydra_coordinator.backends.backend import Backend, QueueFull
from hydra_coordinator.config import BackendConfig, HealthConfig


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make(clock=None, **overrides) -> Backend:
    config = BackendConfig(name="b", kind="local", base_url="http://x/v1", **overrides)
    return Backend(config, HealthConfig(failure_threshold=2, cooldown_s=10), clock=clock or Clock())


async def test_concurrency_limit_and_bounded_queue():
    backend = make(max_concurrency=2, max_queue=1)
    await backend.acquire()
    await backend.acquire()
    waiter = asyncio.create_task(backend.acquire())
    await asyncio.sleep(0)
    assert (backend.in_flight, backend.waiting) == (2, 1)
    with pytest.raises(QueueFull) as caught:
        await backend.acquire()
    assert caught.value.retry_after >= 1
    backend.release()
    await waiter
    assert (backend.in_flight, backend.waiting) == (2, 0)
    backend.release()
    backend.release()
    assert backend.in_flight == 0


def test_breaker_opens_and_half_opens():
    clock = Clock()
    backend = make(clock)
    backend.record_probe(True)
    assert backend.status == "healthy"
    backend.record_failure()
    assert backend.status == "degraded"
    backend.record_failure()
    assert backend.status == "down" and backend.breaker_open
    clock.now += 11
    assert backend.status == "degraded" and not backend.breaker_open  # half-open
    backend.record_failure()
    assert backend.status == "down"
    clock.now += 11
    backend.record_success()
    assert backend.status == "healthy"


def test_upstream_model_choice():
    backend = make(models=["a", "b"])
    assert backend.upstream_model("b") == "b"
    assert backend.upstream_model("auto") == "a"
    discovered = make()
    assert discovered.upstream_model("auto") == "auto"
    discovered.discovered_models = ("m",)
    assert discovered.upstream_model("local") == "m"

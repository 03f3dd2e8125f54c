"""The dependencies a runtime uses (telemetry database, Redis, Qdrant, embeddings), in one place:
a cheap, non-blocking check of each for ``/health`` and ``hydra_dependency_up``, what each one is
(``details``, shown by ``/health``), and an active probe of each that can go away, run every
``health.interval_s`` so that ``/health`` is true without any traffic.

Each probe belongs to its component and updates the state its check reads; it never raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

from .redaction import redact_text

__all__ = ["Dependencies", "DependencyCheck", "DependencyProbe", "DependencyState"]

log = logging.getLogger("hydra_coordinator.dependencies")

DependencyState = Literal["healthy", "degraded", "down"]
DependencyCheck = Callable[[], DependencyState]
DependencyProbe = Callable[[float], Awaitable[None]]  # (timeout in seconds) -> None


@dataclass
class Dependencies:
    checks: dict[str, DependencyCheck] = field(default_factory=dict)  # name -> its check
    details: dict[str, str] = field(default_factory=dict)  # name -> what it is, for /health
    probes: dict[str, DependencyProbe] = field(default_factory=dict)  # name -> its probe
    _task: asyncio.Task[None] | None = field(default=None, init=False, repr=False)

    def add(
        self,
        name: str,
        check: DependencyCheck,
        detail: str | None = None,
        probe: DependencyProbe | None = None,
    ) -> None:
        self.checks[name] = check
        if detail is not None:
            self.details[name] = redact_text(detail)
        if probe is not None:
            self.probes[name] = probe

    async def probe_all(self, timeout_s: float) -> None:
        """Probe every dependency that has a probe, at once; each within ``timeout_s``."""
        await asyncio.gather(*(self._probe(n, p, timeout_s) for n, p in self.probes.items()))

    @staticmethod
    async def _probe(name: str, probe: DependencyProbe, timeout_s: float) -> None:
        try:
            # the probe keeps to timeout_s itself (and records a timeout); this is a backstop
            await asyncio.wait_for(probe(timeout_s), timeout_s + 5.0)
        except Exception:  # a probe's bug must never stop probing
            log.exception("probing %s failed", name)

    def start(self, interval_s: float, timeout_s: float) -> None:
        """Probe now, then every ``interval_s``."""

        async def forever() -> None:
            while True:
                await self.probe_all(timeout_s)
                await asyncio.sleep(interval_s)

        if self.probes:
            self._task = asyncio.create_task(forever(), name="hydra-dependency-prober")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

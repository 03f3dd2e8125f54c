"""One Redis connection shared by the cache, the rate limiter and the usage counters.

Redis is never allowed to stall or fail a request: every command has a short timeout, and after
a failure the link is "down" for ``redis.retry_s``, during which callers use their in-process
fallback without trying Redis at all. A background check pings Redis, so ``/health`` follows
it even without traffic and the link comes back by itself. Transitions are logged once each.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Literal, TypeVar

from ..config import RedisConfig, read_secret

if TYPE_CHECKING:  # redis is imported only when redis.url is set (~7 MB less when it is not)
    import redis.asyncio as aioredis

__all__ = ["RedisLink", "RedisUnavailable"]

log = logging.getLogger("hydra_coordinator.redis")

T = TypeVar("T")


class RedisUnavailable(Exception):
    """Redis is down (or was a moment ago): use the in-process fallback."""


class RedisLink:
    def __init__(self, config: RedisConfig) -> None:
        from redis.exceptions import RedisError

        assert config.url is not None
        self._failures = (RedisError, OSError, TimeoutError)
        self.config = config
        self.url = config.url
        self._client: aioredis.Redis | None = None
        self._up = True  # optimistic until a command or the check says otherwise
        self._retry_at = 0.0
        self._task: asyncio.Task[None] | None = None
        # called once each time the link comes back (e.g. to flush counters kept meanwhile)
        self.on_recover: list[Callable[[], Awaitable[None]]] = []

    @property
    def client(self) -> aioredis.Redis:
        if self._client is None:  # created lazily, inside the event loop that uses it
            import redis.asyncio as aioredis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            timeout = self.config.timeout_s
            password = None
            if self.config.password_file:
                password = read_secret(self.config.password_file, "redis.password_file")
            self._client = aioredis.Redis.from_url(
                self.url,
                password=password,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                retry=Retry(NoBackoff(), 0),
                retry_on_timeout=False,
                health_check_interval=0,
                decode_responses=False,
            )
        return self._client

    @property
    def up(self) -> bool:
        return self._up

    def status(self) -> Literal["healthy", "down"]:
        return "healthy" if self._up else "down"

    def _down(self, exc: BaseException) -> None:
        self._retry_at = time.monotonic() + self.config.retry_s
        if self._up:
            self._up = False
            log.warning(
                "redis is unreachable (%s: %s); using in-process cache and limits until it is back",
                type(exc).__name__,
                exc,
            )

    async def _recovered(self) -> None:
        if self._up:
            return
        self._up = True
        log.warning("redis is reachable again; shared cache and limits resumed")
        for callback in self.on_recover:
            try:
                await callback()
            except Exception:
                log.exception("redis recovery callback failed")

    async def run(self, operation: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
        """Run ``operation`` against Redis, or raise :class:`RedisUnavailable` at once when
        Redis is down or fails now."""
        if not self._up and time.monotonic() < self._retry_at:
            raise RedisUnavailable
        try:
            result = await asyncio.wait_for(operation(self.client), self.config.timeout_s * 2)
        except self._failures as exc:
            self._down(exc)
            raise RedisUnavailable from exc
        if not self._up:
            await self._recovered()
        return result

    async def ping(self) -> bool:
        try:
            await asyncio.wait_for(self.client.ping(), self.config.timeout_s * 2)
        except self._failures as exc:
            self._down(exc)
            return False
        await self._recovered()
        return True

    async def _watch(self) -> None:
        while True:
            await self.ping()
            await asyncio.sleep(self.config.retry_s)

    def start(self) -> None:
        self._task = asyncio.create_task(self._watch(), name="redis-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._client is not None:
            with contextlib.suppress(*self._failures):
                await self._client.aclose()
            self._client = None

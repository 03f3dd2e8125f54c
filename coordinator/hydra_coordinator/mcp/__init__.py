"""MCP (Model Context Protocol) server: the coordinator's tools for agents and editors.

Streamable HTTP at ``/mcp`` in the API's app (:func:`mount_mcp`) and stdio
(``hydra-coordinator mcp``, :func:`run_stdio`); both are the one server of :func:`build_mcp`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import orjson
from fastapi import FastAPI
from starlette.requests import Request
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..api.body import check_depth, read_body
from ..config import LimitsConfig
from ..durations import parse_since
from ..errors import HydraError, answer_error
from .caller import current_key

if TYPE_CHECKING:
    from ..runtime import Runtime

__all__ = ["LazyMcpEndpoint", "mount_mcp", "parse_since", "run_stdio"]

RuntimeProvider = Callable[[], "Runtime"]

log = logging.getLogger("hydra_coordinator.mcp")


class BodyLimit:
    """ASGI wrapper: POST bodies over ``limits.max_body_bytes`` get the API's 413, before the MCP
    transport buffers them (mcp 1.x has no limit of its own; 2.x's is set to the same value), and
    JSON nested deeper than ``limits.max_json_depth`` the API's 400, before the SDK parses it."""

    def __init__(self, app: ASGIApp, limits: LimitsConfig) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        try:
            body = await read_body(Request(scope, receive), self.limits.max_body_bytes)
            _check_nesting(body, self.limits.max_json_depth)
        except HydraError as exc:
            await answer_error(scope, exc)(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def _check_nesting(body: bytes, limit: int) -> None:
    if body.count(b"[") + body.count(b"{") <= limit:
        return  # cannot be nested deeper (the common case: no parse here)
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return  # not JSON: the SDK answers that itself
    check_depth(body, parsed, limit)


class LazyMcpEndpoint:
    """``/mcp``, built on its first request: importing the MCP SDK and building its models
    costs about 0.4 s, which the coordinator's start should not pay for a surface some labs
    never use. The SDK's session manager then runs in a task of its own until :meth:`aclose`
    (the app's lifespan calls it at shutdown)."""

    def __init__(self, runtime_provider: RuntimeProvider, limits: LimitsConfig) -> None:
        self.runtime_provider = runtime_provider
        self.limits = limits
        self._endpoint: ASGIApp | None = None
        self._lock = asyncio.Lock()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _start(self) -> ASGIApp:
        from .sdk import http_app
        from .server import build_mcp

        mcp = build_mcp(self.runtime_provider)
        (route,) = (r for r in http_app(mcp, mcp.transport).routes if isinstance(r, Route))
        ready = asyncio.Event()

        async def serve() -> None:
            async with mcp.session_manager.run():
                ready.set()
                await self._stop.wait()

        self._task = asyncio.create_task(serve(), name="mcp-session-manager")
        waiter = asyncio.create_task(ready.wait())
        await asyncio.wait({waiter, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if not ready.is_set():
            waiter.cancel()
            await self._task  # raises what stopped the session manager
        return BodyLimit(route.endpoint, self.limits)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = self._endpoint
        if endpoint is None:
            async with self._lock:
                if self._endpoint is None:
                    self._endpoint = await self._start()
                endpoint = self._endpoint
        state = scope.get("state") or {}
        key = state.get("key_id") if isinstance(state, dict) else None
        token = current_key.set(key if isinstance(key, str) else None)
        try:
            await endpoint(scope, receive, send)
        finally:
            current_key.reset(token)

    async def aclose(self) -> None:
        self._stop.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None


def mount_mcp(app: FastAPI, runtime_provider: RuntimeProvider) -> LazyMcpEndpoint:
    """Serve the MCP server at ``/mcp`` in ``app``: a plain route of the API's router (no
    sub-app, no redirect from ``/mcp`` to ``/mcp/``), so the API's middleware (auth) and error
    handling apply. The app's lifespan must call ``aclose()`` at shutdown."""
    endpoint = LazyMcpEndpoint(runtime_provider, runtime_provider().settings.limits)
    app.router.routes.append(Route("/mcp", endpoint, name="mcp"))
    return endpoint


async def run_stdio(runtime: Runtime) -> None:
    """Serve ``runtime`` over stdio until the client closes stdin (stdout is the protocol)."""
    from .. import __version__
    from ..runtime import runtime_context
    from .server import build_mcp

    mcp = build_mcp(lambda: runtime)
    async with runtime_context(runtime):
        log.info(
            "hydra-coordinator %s serving MCP over stdio with %d backend(s)",
            __version__,
            len(runtime.settings.backends),
        )
        await mcp.run_stdio_async()
    log.info("hydra-coordinator MCP (stdio) stopped")

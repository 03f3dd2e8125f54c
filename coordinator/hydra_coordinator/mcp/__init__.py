"""MCP (Model Context Protocol) server: the coordinator's tools for agents and editors.

Streamable HTTP at ``/mcp`` in the API's app (:func:`mount_mcp`) and stdio
(``hydra-coordinator mcp``, :func:`run_stdio`); both are the one server of :func:`build_mcp`.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI
from mcp.server.fastmcp import FastMCP
from starlette.requests import Request
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..api.body import read_body
from ..errors import PayloadTooLarge, error_response
from .server import RuntimeProvider, build_mcp, parse_since

__all__ = ["build_mcp", "mount_mcp", "parse_since", "run_stdio"]

log = logging.getLogger("hydra_coordinator.mcp")


class BodyLimit:
    """ASGI wrapper: POST bodies over ``limit`` bytes get the API's 413 (``limits.max_body_bytes``),
    before the MCP transport buffers them (mcp 1.27 has no limit of its own)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        try:
            body = await read_body(Request(scope, receive), self.limit)
        except PayloadTooLarge as exc:
            await error_response(exc)(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def mount_mcp(app: FastAPI, runtime_provider: RuntimeProvider) -> FastMCP[Any]:
    """Serve the MCP server at ``/mcp`` in ``app``: the endpoint is a plain route of the API's
    router (no sub-app, no redirect from ``/mcp`` to ``/mcp/``), so the API's middleware (auth)
    and error handling apply. The app's lifespan must run ``mcp.session_manager.run()``."""
    mcp = build_mcp(runtime_provider)
    limit = runtime_provider().settings.limits.max_body_bytes
    for route in mcp.streamable_http_app().routes:
        assert isinstance(route, Route), route
        app.router.routes.append(Route(route.path, BodyLimit(route.endpoint, limit), name="mcp"))
    return mcp


async def run_stdio(runtime: Any) -> None:
    """Serve ``runtime`` over stdio until the client closes stdin (stdout is the protocol)."""
    from .. import __version__
    from ..app import runtime_context

    mcp = build_mcp(lambda: runtime)
    async with runtime_context(runtime):
        log.info(
            "hydra-coordinator %s serving MCP over stdio with %d backend(s)",
            __version__,
            len(runtime.settings.backends),
        )
        await mcp.run_stdio_async()
    log.info("hydra-coordinator MCP (stdio) stopped")

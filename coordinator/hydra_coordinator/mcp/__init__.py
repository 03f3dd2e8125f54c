"""MCP (Model Context Protocol) server: the coordinator's tools for agents and editors.

Streamable HTTP at ``/mcp`` in the API's app (:func:`mount_mcp`) and stdio
(``hydra-coordinator mcp``, :func:`run_stdio`); both are the one server of :func:`build_mcp`.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI
from mcp.server.fastmcp import FastMCP

from .server import RuntimeProvider, build_mcp, parse_since

__all__ = ["build_mcp", "mount_mcp", "parse_since", "run_stdio"]

log = logging.getLogger("hydra_coordinator.mcp")


def mount_mcp(app: FastAPI, runtime_provider: RuntimeProvider) -> FastMCP[Any]:
    """Serve the MCP server at ``/mcp`` in ``app``: the endpoint is a plain route of the API's
    router (no sub-app, no redirect from ``/mcp`` to ``/mcp/``), so the API's middleware (auth)
    and error handling apply. The app's lifespan must run ``mcp.session_manager.run()``."""
    mcp = build_mcp(runtime_provider)
    app.router.routes.extend(mcp.streamable_http_app().routes)
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

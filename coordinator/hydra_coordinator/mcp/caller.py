"""Who is calling the MCP server over HTTP: the id of the API key the request was authenticated
with.

The ``/mcp`` endpoint sets it for the duration of each request, and the tasks the SDK starts to
answer it inherit it. Tools read the caller from their request context; static resources have
none in mcp 2.x (1.x had ``get_context()``), so they read it here. Unset over stdio: the local
user.
"""

from __future__ import annotations

from contextvars import ContextVar

__all__ = ["current_key"]

current_key: ContextVar[str | None] = ContextVar("hydra_mcp_caller_key", default=None)

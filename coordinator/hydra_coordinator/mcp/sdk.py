"""The MCP SDK's server API across its two majors, in one place.

nixos-26.05 ships mcp 1.x (1.26), PyPI and later nixpkgs ship 2.x. For the coordinator's server
they differ in three ways, all handled here:

- the server class: ``mcp.server.fastmcp.FastMCP`` (1.x), ``mcp.server.mcpserver.MCPServer`` (2.x);
- where streamable HTTP is configured: 1.x takes the path, stateless/JSON mode and the
  transport security in the constructor; 2.x takes them (and a body-size limit of its own,
  4 MiB by default) where the ASGI app is built;
- ``serverInfo.version``: a constructor argument in 2.x; 1.x reports its own version unless the
  low-level server's is replaced.

Decorators, ``Context`` (including ``ctx.request_context.request``), ``ToolError``, structured
output, ``TransportSecuritySettings``, the session manager and stdio are the same in both. Type
checking follows the installed major (2.x in the development environment); 1.x is exercised by
the package's check phase (``tests/package/check_phase.py``), which runs the tests against it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib.metadata import version as distribution_version
from typing import TYPE_CHECKING, Any

from mcp.server.transport_security import TransportSecuritySettings

__all__ = [
    "MAJOR",
    "Context",
    "HttpTransport",
    "Server",
    "ToolContext",
    "ToolError",
    "http_app",
    "server_kwargs",
    "set_version",
]

MAJOR = int(distribution_version("mcp").split(".")[0])

if TYPE_CHECKING:
    from mcp.server.mcpserver import Context
    from mcp.server.mcpserver import MCPServer as Server
    from mcp.server.mcpserver.exceptions import ToolError
    from starlette.applications import Starlette

    # the annotation of a tool's context parameter
    ToolContext = Context[Any, Any]
elif MAJOR >= 2:
    from mcp.server.mcpserver import Context
    from mcp.server.mcpserver import MCPServer as Server
    from mcp.server.mcpserver.exceptions import ToolError

    ToolContext = Context
else:  # the module does not exist in 2.x: imported by name so that type checking skips it
    _fastmcp = importlib.import_module("mcp.server.fastmcp")
    Server, Context = _fastmcp.FastMCP, _fastmcp.Context
    ToolError = importlib.import_module("mcp.server.fastmcp.exceptions").ToolError
    ToolContext = Context


@dataclass(frozen=True)
class HttpTransport:
    """How the server answers over streamable HTTP: one path, stateless, plain JSON answers."""

    path: str
    security: TransportSecuritySettings
    max_body_bytes: int


def server_kwargs(version: str, transport: HttpTransport) -> dict[str, Any]:
    """Constructor arguments beyond name, instructions and log level, for the installed SDK."""
    if MAJOR >= 2:
        return {"version": version}
    return {
        "streamable_http_path": transport.path,
        "stateless_http": True,
        "json_response": True,
        "transport_security": transport.security,
    }


def set_version(server: Server[Any], version: str) -> None:
    """``serverInfo.version`` = the coordinator's (1.x has no constructor argument for it)."""
    if MAJOR < 2:
        server._mcp_server.version = version  # type: ignore[attr-defined]


def http_app(server: Server[Any], transport: HttpTransport) -> Starlette:
    """The server's streamable-HTTP ASGI app; its session manager exists once this is built."""
    if MAJOR >= 2:
        return server.streamable_http_app(
            streamable_http_path=transport.path,
            stateless_http=True,
            json_response=True,
            transport_security=transport.security,
            max_request_body_size=transport.max_body_bytes,
        )
    app: Starlette = server.streamable_http_app()
    return app

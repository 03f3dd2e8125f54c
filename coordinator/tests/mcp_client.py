"""The official MCP client, as the tests use it, across the SDK's two majors.

nixos-26.05 ships mcp 1.x, PyPI 2.x; the MCP tests run against both (the development
environment has 2.x, the package's check phase 1.x). The client API they use is common to both
except for the HTTP client the streamable-HTTP transport takes (``httpx`` in 1.x, ``httpx2`` in
2.x) and what it yields. Results are read in their wire form (camelCase, as JSON-RPC carries
them), which both majors produce alike: 1.x's models have camelCase fields, 2.x's have
snake_case fields with camelCase aliases.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version
from typing import Any

from mcp.client.streamable_http import streamable_http_client
from pydantic import BaseModel

MAJOR = int(version("mcp").split(".")[0])


@asynccontextmanager
async def http_streams(url: str, headers: dict[str, str]) -> AsyncIterator[tuple[Any, Any]]:
    """The read and write streams of a streamable-HTTP connection sending ``headers``."""
    httpx = importlib.import_module("httpx2" if MAJOR >= 2 else "httpx")
    async with (
        httpx.AsyncClient(headers=headers, timeout=30.0) as client,
        streamable_http_client(url, http_client=client) as streams,
    ):
        yield streams[0], streams[1]


def wire(model: BaseModel) -> dict[str, Any]:
    """A result as JSON-RPC carries it (camelCase keys)."""
    return model.model_dump(by_alias=True, mode="json")


def text_of(result: BaseModel) -> str:
    return " ".join(c["text"] for c in wire(result)["content"] if c["type"] == "text")


def is_error(result: BaseModel) -> bool:
    return bool(wire(result).get("isError"))


def ok(result: BaseModel) -> dict[str, Any]:
    """The structured result of a successful tool call."""
    assert not is_error(result), text_of(result)
    structured = wire(result).get("structuredContent")
    assert structured is not None
    return dict(structured)


def resource_text(result: BaseModel) -> str:
    """The text of a read resource's first (and only) content."""
    return str(wire(result)["contents"][0]["text"])

"""Reading and checking a JSON request body: once, with a size limit, with a fast parser, with
a nesting limit (checked once here, so nothing that walks the body later can recurse too deep)."""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect, Request

from ..config import LimitsConfig
from ..errors import BadRequest, ClientClosedRequest, PayloadTooLarge

__all__ = ["check_depth", "read_body", "read_json_object", "read_model"]


def _too_deep(limit: int) -> BadRequest:
    return BadRequest(
        f"request body nests objects and arrays more than {limit} deep (limits.max_json_depth)",
        code="json_too_deep",
    )


def check_depth(raw: bytes, body: Any, limit: int) -> None:
    """400 when ``body`` (parsed from ``raw``) nests objects and arrays deeper than ``limit``.
    Counting brackets bounds the depth at C speed; only a body with more than ``limit`` of them
    is walked (without recursion)."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return
    stack: list[tuple[Any, int]] = [(body, 1)]
    while stack:
        value, depth = stack.pop()
        children = value.values() if isinstance(value, dict) else value
        for child in children:
            if isinstance(child, dict | list):
                if depth + 1 > limit:
                    raise _too_deep(limit)
                stack.append((child, depth + 1))


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body of {declared} bytes is over the limit of {limit}")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"request body is over the limit of {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        raise ClientClosedRequest("the client closed the connection while sending") from None
    return b"".join(chunks)


async def read_json_object(request: Request, limits: LimitsConfig) -> tuple[dict[str, Any], bytes]:
    raw = await read_body(request, limits.max_body_bytes)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    check_depth(raw, body, limits.max_json_depth)
    return body, raw


M = TypeVar("M", bound=BaseModel)


async def read_model(request: Request, model: type[M], limits: LimitsConfig) -> M:
    """The JSON body as ``model``; 400 naming the first bad field otherwise."""
    body, _ = await read_json_object(request, limits)
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise BadRequest(f"{where}: {first['msg']}") from None

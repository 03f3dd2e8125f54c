"""``POST /v1/chat/completions``: validate, route, and hand over to the proxy."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import BadRequest, GatewayTimeout, HydraError, NotFound, answer_error
from ..exchange import REQUEST_ID_HEADER, Exchange, exchange_of
from ..proxy import Call
from ..routing.neighbours import neighbours, similar_questions
from ..routing.pipeline import route_within_budget
from ..routing.router import UnknownModel
from ..runtime import Runtime, get_runtime
from ..stores.cache import parse_cache_header
from ..stores.hooks import (
    CACHE_HEADER,
    after_answer,
    cache_lookup,
    check_rate_limit,
    semantic_answer,
)
from .body import read_json_object
from .forwarding import check_model
from .lifetime import Lifetime

__all__ = ["PATH", "ChatFastPath", "handle_chat", "router"]

PATH = "/v1/chat/completions"

log = logging.getLogger("hydra_coordinator.api")

router = APIRouter()


def _check_chat_body(body: dict[str, Any]) -> tuple[str, bool]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty list", code="invalid_messages")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise BadRequest(
                f"messages[{index}] must be an object with a 'role'", code="invalid_messages"
            )
    model = check_model(body)
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise BadRequest("'stream' must be true or false", code="invalid_stream")
    return model, stream


async def handle_chat(
    runtime: Runtime,
    body: dict[str, Any],
    raw: bytes,
    key_id: str | None,
    started: float,
    *,
    cache: bool | None = None,
    exchange: Exchange | None = None,
) -> Response:
    """Validate, route and forward one chat request: the one path every surface uses
    (the HTTP endpoint and the MCP ``ask`` tool). ``cache`` is the client's wish
    (``x-hydra-cache``): True opts in, False opts out, None caches temperature 0 only.

    The request is recorded exactly once: an answer by whoever answered it (proxy, cache), an
    error here; the error then carries the request id (``exchange``: the HTTP request's, or a
    new one)."""
    if exchange is None:
        exchange = Exchange.begin(key_id, started)
    exchange.key_id = key_id
    try:
        return await _handle_chat(runtime, exchange, body, raw, cache)
    except HydraError as exc:
        exchange.answered(exc.status, exc.code)
        exc.headers.setdefault(REQUEST_ID_HEADER, exchange.request_id)
        runtime.recorder.record_failure(exchange)
        raise
    except Exception:
        exchange.answered(500, "internal_error")
        runtime.recorder.record_failure(exchange)
        raise


async def _handle_chat(
    runtime: Runtime,
    exchange: Exchange,
    body: dict[str, Any],
    raw: bytes,
    cache: bool | None,
) -> Response:
    key_id, started, request_id = exchange.key_id, exchange.started, exchange.request_id
    model, stream = _check_chat_body(body)
    exchange.model, exchange.stream = model, stream
    await check_rate_limit(runtime, key_id)
    similar = await similar_questions(
        runtime.settings, runtime.knowledge, body, key_id, stream=stream
    )
    try:
        decision = await route_within_budget(
            runtime,
            body,
            model,
            key_id,
            request_id=request_id,
            neighbours=neighbours(similar),
            body_size=len(raw),
        )
    except UnknownModel:
        raise NotFound(
            f"the model {model!r} does not exist on any backend; see GET /v1/models",
            code="model_not_found",
        ) from None
    exchange.decision = decision
    runtime.metrics.decisions.labels(decision.route).inc()
    runtime.recent.add(decision, kind="chat", model=model, request_id=request_id, key_id=key_id)
    # after routing, so privacy rules (403, local only) apply to cached answers too
    key, cached = await cache_lookup(
        runtime,
        body,
        stream=stream,
        key_id=key_id,
        request_id=request_id,
        started=started,
        opt_in=cache,
        decision=decision,
    )
    if cached is not None:
        exchange.recorded = True
        return cached
    semantic = semantic_answer(
        runtime,
        similar,
        body,
        stream=stream,
        decision=decision,
        key_id=key_id,
        request_id=request_id,
        started=started,
    )
    if semantic is not None:
        exchange.recorded = True
        return semantic
    call = Call(
        request_id=request_id,
        key_id=key_id,
        body=body,
        raw=raw,
        model=model,
        stream=stream,
        decision=decision,
        started=started,
    )
    try:
        response: Response = await runtime.proxy.forward(call)
    except BaseException as exc:
        # whatever ended the request without a recorded answer (an upstream timeout or
        # refusal, the client leaving, the deadline): its budget reservation is given back
        runtime.budgets.release_later(request_id)
        if isinstance(exc, HydraError):
            exchange.backend = call.tried
        raise
    exchange.recorded = True  # by the proxy (a stream: when it ends)
    after_answer(runtime, call, response, key)
    return response


@router.post(PATH)
async def chat_completions(request: Request) -> Response:
    exchange = exchange_of(request.scope) or Exchange.begin()
    runtime = get_runtime(request)
    body, raw = await read_json_object(request, runtime.settings.limits)
    key_id = request.scope.get("state", {}).get("key_id")
    cache = parse_cache_header(request.headers.get(CACHE_HEADER))
    try:
        async with asyncio.timeout(runtime.settings.limits.request_timeout_s):
            return await handle_chat(
                runtime, body, raw, key_id, exchange.started, cache=cache, exchange=exchange
            )
    except TimeoutError:
        raise GatewayTimeout(
            "the request took longer than limits.request_timeout_s", code="request_timeout"
        ) from None


class ChatFastPath:
    """``POST /v1/chat/completions`` as a plain ASGI middleware: the hot route skips FastAPI's
    routing, dependency and exception-middleware layers (about a fifth of the per-request CPU,
    see bench/). Sits inside the auth middleware; any other request, and this path with another
    method or a trailing slash, goes on to the FastAPI route, which behaves the same."""

    def __init__(self, app: ASGIApp, runtime: Runtime) -> None:
        self.app = app
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        exchange = exchange_of(scope) or Exchange.begin()
        runtime = self.runtime
        life = Lifetime(runtime.settings.limits.request_timeout_s, scope, receive, send)
        try:
            async with life:
                try:
                    request = Request(scope, receive)
                    body, raw = await read_json_object(request, runtime.settings.limits)
                    life.watch()
                    key_id = scope.get("state", {}).get("key_id")
                    cache = parse_cache_header(request.headers.get(CACHE_HEADER))
                    response = await handle_chat(
                        runtime, body, raw, key_id, exchange.started, cache=cache, exchange=exchange
                    )
                except HydraError as exc:  # what the app's HydraError handler answers
                    response = answer_error(scope, exc)
                except Exception:  # what the app's catch-all handler answers; never crash
                    log.exception("unhandled error on POST %s", PATH)
                    response = answer_error(scope, HydraError("internal error"))
                await response(scope, life.receive, life.send)
        except TimeoutError:  # the deadline, or the client left
            await life.expired(scope)

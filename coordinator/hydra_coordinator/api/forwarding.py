"""What the endpoints besides chat share: checks on the body, the rate limit, the decision,
then the proxy (the same one chat uses: limits, failover, metrics, telemetry)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope

from ..errors import BadRequest, ClientClosedRequest, GatewayTimeout, HydraError, NotFound
from ..exchange import Exchange, exchange_of
from ..proxy import Call
from ..routing.router import Decision, UnknownModel
from ..runtime import Runtime, get_runtime
from ..stores.hooks import check_rate_limit
from .body import read_json_object
from .lifetime import Lifetime

__all__ = ["Incoming", "check_model", "check_text_input", "forward", "read_incoming"]


async def _never() -> Message:
    await asyncio.Event().wait()
    return {"type": "http.disconnect"}


async def _drop(message: Message) -> None:
    return None


class Incoming:
    """A request body read once, with who sent it and its exchange (request id, start)."""

    def __init__(
        self,
        runtime: Runtime,
        body: dict[str, Any],
        raw: bytes,
        key_id: str | None,
        exchange: Exchange | None = None,
        *,
        receive: Receive | None = None,
        scope: Scope | None = None,
    ) -> None:
        self.runtime = runtime
        self.receive = receive  # the client's, to notice when it leaves
        self.scope: Scope = scope or {}
        self.body = body
        self.raw = raw
        self.key_id = key_id
        self.exchange = exchange or Exchange.begin(key_id)
        self.exchange.key_id = key_id
        self.started = self.exchange.started


async def read_incoming(request: Request) -> Incoming:
    exchange = exchange_of(request.scope) or Exchange.begin()
    runtime = get_runtime(request)
    body, raw = await read_json_object(request, runtime.settings.limits)
    key_id = request.scope.get("state", {}).get("key_id")
    return Incoming(
        runtime, body, raw, key_id, exchange, receive=request.receive, scope=request.scope
    )


def check_model(body: dict[str, Any]) -> str:
    if "model" not in body:  # as OpenAI's API: no default
        raise BadRequest(
            "you must provide a model parameter ('auto', 'local', 'cloud' or a model of "
            "GET /v1/models)",
            code="missing_model",
        )
    model = body["model"]
    if not isinstance(model, str) or not model:
        raise BadRequest("'model' must be a non-empty string", code="invalid_model")
    return model


def check_text_input(body: dict[str, Any], field: str) -> None:
    """``field`` is a string, a list of strings, or token ids (a list, or a list of lists)."""
    value = body.get(field)
    ok = isinstance(value, str) and value != ""
    if isinstance(value, list) and value:
        ok = all(isinstance(v, str) for v in value) or all(
            isinstance(v, int) or (isinstance(v, list) and all(isinstance(t, int) for t in v))
            for v in value
        )
    if not ok:
        raise BadRequest(
            f"'{field}' must be a non-empty string, a list of strings or of token ids",
            code=f"invalid_{field}",
        )


async def forward(
    incoming: Incoming,
    *,
    model: str,
    stream: bool,
    endpoint: str,
    route: Callable[[str], Awaitable[Decision]],
) -> Response:
    """Rate limit, decide (``route(request_id)``), then the proxy to ``endpoint``. An error
    raised here is recorded by the accounting middleware, from the exchange."""
    runtime = incoming.runtime
    exchange = incoming.exchange
    exchange.model, exchange.stream = model, stream
    await check_rate_limit(runtime, incoming.key_id)
    request_id = exchange.request_id
    try:
        decision = await route(request_id)
    except UnknownModel:
        raise NotFound(
            f"the model {model!r} does not exist on any backend; see GET /v1/models",
            code="model_not_found",
        ) from None
    exchange.decision = decision
    runtime.metrics.decisions.labels(decision.route).inc()
    runtime.recent.add(
        decision, kind=endpoint, model=model, request_id=request_id, key_id=incoming.key_id
    )
    call = Call(
        request_id=request_id,
        key_id=incoming.key_id,
        body=incoming.body,
        raw=incoming.raw,
        model=model,
        stream=stream,
        decision=decision,
        started=incoming.started,
        endpoint=endpoint,
    )
    # the deadline, and the client watched until the answer starts (a queued request whose
    # client left is never sent; the stream relay watches it afterwards)
    life = Lifetime(
        runtime.settings.limits.request_timeout_s,
        incoming.scope,
        incoming.receive or _never,
        _drop,
    )
    try:
        async with life:
            if incoming.receive is not None:
                life.watch()
            response: Response = await runtime.proxy.forward(call)
    except BaseException as exc:
        runtime.budgets.release_later(request_id)  # nothing recorded: the reservation back
        if isinstance(exc, HydraError):
            exchange.backend = call.tried
        if isinstance(exc, TimeoutError):
            if life.gone:
                raise ClientClosedRequest("the client closed the connection") from None
            raise GatewayTimeout(
                "the request took longer than limits.request_timeout_s", code="request_timeout"
            ) from None
        raise
    exchange.recorded = True  # by the proxy
    return response

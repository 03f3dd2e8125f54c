"""The outermost middleware: every HTTP request is accounted for, whatever its status.

It opens the request's :class:`~..exchange.Exchange` (its request id, its start). A model
request (chat, legacy completions, embeddings) is recorded exactly once
(``hydra_requests_total``, the access line, a telemetry row): by the proxy or the chat path when
they answer, else here, from the exchange that whoever answered the error marked (the auth
middleware's 401, a body refused with 400 or 413, an unexpected 500). Any other request gets an
access line (a successful ``/health`` or ``/metrics`` poll excepted).
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..exchange import REQUEST_ID_HEADER, Exchange
from ..logs import access_log
from ..telemetry import Recorder

__all__ = ["RequestAccounting"]

_QUIET = frozenset({"/health", "/metrics"})  # polled all day: logged only when they fail
_REQUEST_ID = REQUEST_ID_HEADER.encode()


class RequestAccounting:
    def __init__(self, app: ASGIApp, recorder: Recorder, model_paths: Mapping[str, str]) -> None:
        self.app = app
        self.recorder = recorder
        self.model_paths = dict(model_paths)  # path -> the endpoint's name in telemetry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        exchange = Exchange.begin()
        scope.setdefault("state", {})["exchange"] = exchange
        endpoint = self.model_paths.get(scope["path"].rstrip("/"))
        if endpoint is not None and scope["method"] == "POST":
            exchange.endpoint = endpoint
            try:
                await self.app(scope, receive, send)
            finally:
                if not exchange.recorded and exchange.status:
                    exchange.key_id = exchange.key_id or scope["state"].get("key_id")
                    self.recorder.record_failure(exchange)
            return
        await self._other(scope, receive, send, exchange)

    async def _other(self, scope: Scope, receive: Receive, send: Send, exchange: Exchange) -> None:
        """Any other request: its status, the request id on an error, one access line."""
        status = 500  # what the server answers when the app raises before starting a response

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = message.get("headers") or []
                if status >= 400 and not any(name == _REQUEST_ID for name, _ in headers):
                    message["headers"] = [*headers, (_REQUEST_ID, exchange.request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            if status >= 400 or scope["path"] not in _QUIET:
                access_log(
                    request_id=exchange.request_id,
                    method=scope["method"],
                    path=scope["path"],
                    status=status,
                    latency_ms=round((time.perf_counter() - exchange.started) * 1000, 2),
                    error=exchange.error if status >= 400 else None,
                )

"""One HTTP request's identity and outcome, shared by the layers that answer it.

The outermost middleware (:mod:`.api.accounting`) opens an :class:`Exchange` for every HTTP
request and keeps it in the ASGI scope's state; the layers that answer an error (the auth
middleware, the chat path, the app's exception handlers) mark it with :meth:`Exchange.answered`,
and a chat request is recorded exactly once (``recorded``): by the proxy when an upstream
answered, else from the exchange.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .routing.router import Decision

__all__ = ["REQUEST_ID_HEADER", "Exchange", "exchange_of", "new_request_id"]

REQUEST_ID_HEADER = "x-hydra-request-id"


def new_request_id() -> str:
    return os.urandom(12).hex()


@dataclass(slots=True)
class Exchange:
    request_id: str
    started: float  # time.perf_counter() when the request arrived
    key_id: str | None = None
    endpoint: str = "chat"  # for a model request: chat, completions (legacy) or embeddings
    model: str = ""  # the model the client asked for, once the body is read
    stream: bool = False
    decision: Decision | None = None
    backend: str | None = None  # the backend tried last
    status: int = 0  # the error status the coordinator answered (0: none yet)
    error: str | None = None  # its error class (the error's code)
    recorded: bool = False  # the request's one record is made

    @classmethod
    def begin(cls, key_id: str | None = None, started: float | None = None) -> Exchange:
        return cls(new_request_id(), time.perf_counter() if started is None else started, key_id)

    def answered(self, status: int, error: str) -> None:
        """The coordinator answers this request with an error."""
        self.status, self.error = status, error


def exchange_of(scope: Any) -> Exchange | None:
    """The exchange the accounting middleware opened for an ASGI scope, if any."""
    state = scope.get("state")
    exchange = state.get("exchange") if state else None
    return exchange if isinstance(exchange, Exchange) else None

"""One request's lifetime: a total deadline, and a client that is watched on every path.

:class:`Lifetime` wraps the handling of a request (reading the body, routing, waiting in a
backend's queue, the upstream call, relaying the answer) in one ``asyncio`` timeout:

- at ``limits.request_timeout_s`` the work is cancelled wherever it waits (a dripping upstream
  included) and the client gets 504, or an error event when a stream has started;
- once the body is read, the client is watched: when it leaves, the same timeout fires at
  once, so a queued request is never sent upstream, a non-streamed request stops reading its
  upstream, and a stalled stream frees its upstream connection (and the backend's slot)
  without waiting for a next chunk. The server's connection says so directly
  (``connections.ON_DISCONNECT`` in the scope); under another server a task waits for
  ``http.disconnect``.

Cancellation unwinds through the proxy, which releases the backend slot and closes the
upstream response on every path; a budget reservation is given back (``api/chat.py``).
"""

from __future__ import annotations

import asyncio
import logging
from types import TracebackType

import orjson
from starlette.types import Message, Receive, Scope, Send

from ..connections import ON_DISCONNECT
from ..errors import GatewayTimeout, answer_error

__all__ = ["Lifetime"]

log = logging.getLogger("hydra_coordinator.api")

_DISCONNECT: Message = {"type": "http.disconnect"}


class Lifetime:
    def __init__(self, timeout_s: float, scope: Scope, receive: Receive, send: Send) -> None:
        self.timeout_s = timeout_s
        self._scope = scope
        self._receive = receive
        self._send = send
        self._loop = asyncio.get_running_loop()
        self._timeout = asyncio.timeout_at(self._loop.time() + timeout_s)
        self._inside = False
        self._watcher: asyncio.Task[None] | None = None
        self._left = asyncio.Event()
        self.gone = False  # the client left
        self.started = False  # the response's head was sent
        self.finished = False  # the response's last byte was sent

    async def __aenter__(self) -> Lifetime:
        await self._timeout.__aenter__()
        self._inside = True
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._inside = False
        if self._watcher is not None:
            self._watcher.cancel()
        await self._timeout.__aexit__(kind, error, traceback)

    def watch(self) -> None:
        """Watch for the client leaving (call once the request body has been read)."""
        on_disconnect = self._scope.get("state", {}).get(ON_DISCONNECT)
        if on_disconnect is not None:
            on_disconnect(self._client_left)
        else:
            self._watcher = self._loop.create_task(self._watch())

    async def _watch(self) -> None:
        while (await self._receive())["type"] != "http.disconnect":
            pass
        self._client_left()

    def _client_left(self) -> None:
        self.gone = True
        self._left.set()
        if self._inside and not self.finished:
            self._timeout.reschedule(self._loop.time())  # cancel the work now

    async def receive(self) -> Message:
        """``receive`` for the response: the body was read, so only the client leaving."""
        await self._left.wait()
        return _DISCONNECT

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
        elif not message.get("more_body", False):
            self.finished = True
        await self._send(message)

    async def expired(self, scope: Scope) -> None:
        """Answer a request whose deadline passed (nothing when the client left)."""
        if self.gone or self.finished:
            return
        message = f"the request took longer than limits.request_timeout_s ({self.timeout_s:g} s)"
        log.warning("request to %s cut at its deadline (%g s)", scope.get("path"), self.timeout_s)
        try:
            if not self.started:
                error = GatewayTimeout(message, code="request_timeout")
                await answer_error(scope, error)(scope, self.receive, self._send)
                return
            event = {
                "error": {"message": message, "type": "timeout_error", "code": "request_timeout"}
            }
            await self._send(
                {
                    "type": "http.response.body",
                    "body": b"data: " + orjson.dumps(event) + b"\n\n",
                    "more_body": False,
                }
            )
        except (OSError, RuntimeError):
            pass  # the client went away meanwhile

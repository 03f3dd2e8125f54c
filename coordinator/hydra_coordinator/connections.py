"""Connection limits below the ASGI app: what uvicorn itself does not bound.

uvicorn times out idle keep-alive connections, but not a connection that never finishes its
request head, and it accepts a request head of any size. :func:`guarded_protocol` returns
uvicorn's httptools protocol with:

- a connection cap: past ``max_connections`` the connection that has waited longest for a
  request head (an idle or slow one, e.g. one of a thousand sockets opened to lock clients out)
  is closed with 408 to make room; when every connection is busy with a request, the new one
  gets 503 and is closed at once. Idle sockets cannot use up the process's file descriptors;
- a head timeout: a client that has not sent a whole request head ``header_timeout_s`` after
  connecting (or after starting a request) gets 408 and is closed;
- a head size cap: more than ``max_header_bytes`` before the end of a head is 431, answered
  before the bytes are parsed, so a 100 MB header line costs what reading it costs.

These answers never reach the app; ``hydra_connections_refused_total{reason}`` counts them. A
refusal after part of a request head arrived (431, or 408 for a head that stalled) also gets an
access line, without a request id (the request never began); a connection that sent nothing
(408 after the head timeout or to make room, 503 at the cap) is only counted.

Each request's ASGI scope also carries ``state[ON_DISCONNECT]``: a function that registers a
callback run when the client's connection is lost while the request is being answered. The
request path (``api/lifetime.py``) uses it to notice a client that left at no cost per
request (no task waiting for ``http.disconnect``).
"""

from __future__ import annotations

import asyncio
import logging
import resource
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .config import LimitsConfig
from .errors import error_body
from .logs import access_log

__all__ = [
    "ON_DISCONNECT",
    "RefusalCounter",
    "effective_max_connections",
    "guarded_protocol",
    "raise_fd_limit",
]

ON_DISCONNECT = "hydra.on_disconnect"

log = logging.getLogger("hydra_coordinator.connections")

RefusalCounter = Callable[[str], None]

# descriptors kept for everything but client connections: listening sockets, the telemetry
# database and spool, Redis, Qdrant's files, log files
_RESERVED_FDS = 128


def raise_fd_limit(wanted: int = 65536) -> int:
    """Raise the soft descriptor limit towards the hard one (as Go's runtime does); the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return wanted if soft == resource.RLIM_INFINITY else soft


def effective_max_connections(configured: int, fd_limit: int) -> int:
    """``configured``, but at most half of the descriptors left after the reserve: a proxied
    request holds two (the client's connection and the upstream's)."""
    return max(1, min(configured, (fd_limit - _RESERVED_FDS) // 2))


def _raw_response(status: int, reason: str, message: str, code: str) -> bytes:
    body = error_body(message, "invalid_request_error", code)
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


def guarded_protocol(
    limits: LimitsConfig, max_connections: int, refused: RefusalCounter
) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol with the limits above (pass it as ``Config(http=...)``)."""
    max_head = limits.max_header_bytes
    head_timeout = limits.header_timeout_s
    too_large = _raw_response(
        431,
        "Request Header Fields Too Large",
        f"the request head is over the limit of {max_head} bytes (limits.max_header_bytes)",
        "header_too_large",
    )
    too_slow = _raw_response(
        408,
        "Request Timeout",
        f"the request head did not arrive within {head_timeout:g} s (limits.header_timeout_s)",
        "header_timeout",
    )
    too_many = _raw_response(
        503,
        "Service Unavailable",
        "too many open connections; retry later (limits.max_connections)",
        "too_many_connections",
    )

    # the connections waiting for (or receiving) a request head, longest waiting first
    waiting: dict[GuardedProtocol, None] = {}

    class GuardedProtocol(HttpToolsProtocol):
        _head_bytes = 0  # bytes received since the last complete head
        _tail = b""  # the last bytes of the head so far (a blank line may span two reads)
        _in_head = True
        _head_timer: asyncio.TimerHandle | None = None
        _on_lost: Callable[[], None] | None = None  # the request being answered wants to know

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            if len(self.connections) > max_connections:
                victim = next(iter(waiting), None)
                if victim is None:  # every connection is busy with a request
                    self._refuse(too_many, "too_many_connections")
                    return
                victim._refuse(too_slow, "header_timeout")  # the longest idle makes room
            waiting[self] = None
            self._start_head_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            self._stop_head_timer()
            waiting.pop(self, None)
            callback, self._on_lost = self._on_lost, None
            super().connection_lost(exc)
            if callback is not None:
                callback()

        def _notify_on_lost(self, callback: Callable[[], None]) -> None:
            self._on_lost = callback

        def data_received(self, data: bytes) -> None:
            if self._in_head:
                total = self._head_bytes + len(data)
                if total > max_head and not self._head_ends_within(data):
                    self._head_bytes = total
                    self._refuse(too_large, "header_too_large")
                    return
                self._head_bytes = total
                self._tail = data[-3:]
            super().data_received(data)

        def _head_ends_within(self, data: bytes) -> bool:
            """Whether the head ends (a blank line) within the bytes it may still take: the
            rest of ``data`` is the body (or the next request), not head."""
            room = max(0, max_head - self._head_bytes)
            return b"\r\n\r\n" in self._tail + data[:room]

        # parser callbacks
        def on_message_begin(self) -> None:
            super().on_message_begin()
            self.scope["state"][ON_DISCONNECT] = self._notify_on_lost
            if self._head_timer is None:
                self._start_head_timer()

        def on_headers_complete(self) -> None:
            self._in_head = False
            self._head_bytes = 0
            self._tail = b""
            waiting.pop(self, None)
            self._stop_head_timer()
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self._in_head = True
            super().on_message_complete()

        def on_response_complete(self) -> None:
            self._on_lost = None
            super().on_response_complete()
            if self._in_head and not self.transport.is_closing():
                waiting[self] = None  # idle until its next request (keep-alive)

        # helpers
        def _start_head_timer(self) -> None:
            self._head_timer = self.loop.call_later(head_timeout, self._head_timed_out)

        def _stop_head_timer(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_timed_out(self) -> None:
            self._head_timer = None
            if self._in_head and not self.transport.is_closing():
                self._refuse(too_slow, "header_timeout")

        def _refuse(self, response: bytes, reason: str) -> None:
            self._stop_head_timer()
            began = self._in_head and self._head_bytes > 0  # part of a request head arrived
            self._in_head = False
            waiting.pop(self, None)
            refused(reason)
            if began:
                access_log(
                    request_id=None,
                    method=None,
                    path=None,
                    status=int(response[9:12]),
                    latency_ms=None,
                    error=reason,
                )
            if log.isEnabledFor(logging.DEBUG):
                log.debug("connection from %s refused: %s", self.client, reason)
            if not self.transport.is_closing():
                self.transport.write(response)
                self.transport.close()

    return GuardedProtocol

#!/usr/bin/env python3
"""A minimal, fast fake OpenAI upstream for the benchmark: an asyncio Protocol, HTTP/1.1.

The aiohttp fake in ``coordinator/tests/fakes`` is flexible but costs about as much CPU per
request as the proxy under test, so it would be the bottleneck. This one answers from
pre-built bytes:

- ``GET  /v1/models`` (and ``/health``)   the models ``fake`` and ``fake-slow``
- ``POST /v1/chat/completions``           a fixed completion; with ``"stream": true`` a fixed SSE
  stream (chunked), the first chunk sent together with the headers. If the body names the model
  ``fake-slow``, stream chunks are ``--chunk-delay`` seconds apart (to see that a proxy passes a
  stream through chunk by chunk instead of buffering it).

Stdlib only (uvloop when installed). Not a general HTTP server: no pipelining of partial
requests beyond what keep-alive clients (wrk, aiohttp, httpx) do.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
from typing import cast

__all__ = ["main"]

_MODELS = json.dumps(
    {
        "object": "list",
        "data": [
            {"id": m, "object": "model", "created": 0, "owned_by": "bench"}
            for m in ("fake", "fake-slow")
        ],
    }
).encode()

_COMPLETION = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "fake",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello! How can I help you today?"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 9, "total_tokens": 18},
    },
    separators=(",", ":"),
).encode()


def _sse(delta: dict[str, str], finish: str | None = None) -> bytes:
    payload = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "fake",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


_EVENTS: list[bytes] = [
    _sse({"role": "assistant", "content": ""}),
    *(_sse({"content": word}) for word in ("Hello", "!", " How", " can", " I", " help", "?")),
    _sse({}, "stop"),
    b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,'
    b'"model":"fake","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":7,'
    b'"total_tokens":16}}\n\n',
    b"data: [DONE]\n\n",
]


def _chunked(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _response(status: str, content_type: bytes, body: bytes) -> bytes:
    return (
        b"HTTP/1.1 " + status.encode() + b"\r\ncontent-type: " + content_type
        + b"\r\ncontent-length: " + str(len(body)).encode()
        + b"\r\nconnection: keep-alive\r\n\r\n" + body
    )  # fmt: skip


_STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\nconnection: keep-alive\r\n\r\n"
)
_OK_COMPLETION = _response("200 OK", b"application/json", _COMPLETION)
_OK_MODELS = _response("200 OK", b"application/json", _MODELS)
_OK_HEALTH = _response("200 OK", b"application/json", b'{"status":"healthy"}')
_NOT_FOUND = _response("404 Not Found", b"application/json", b'{"error":"not found"}')
_STREAM_FAST = _STREAM_HEAD + b"".join(_chunked(e) for e in _EVENTS) + b"0\r\n\r\n"
_STREAM_RE = re.compile(rb'"stream"\s*:\s*true')
_SLOW_RE = re.compile(rb'"model"\s*:\s*"fake-slow"')


class _Http(asyncio.Protocol):
    def __init__(self, chunk_delay: float) -> None:
        self.chunk_delay = chunk_delay
        self.transport: asyncio.Transport | None = None
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end]
            length = 0
            lower = head.lower()
            at = lower.find(b"content-length:")
            if at >= 0:
                line_end = lower.find(b"\r\n", at)
                length = int(lower[at + 15 : line_end if line_end > 0 else None])
            total = end + 4 + length
            if len(self.buffer) < total:
                return
            body = self.buffer[end + 4 : total]
            self.buffer = self.buffer[total:]
            self._answer(head, body)

    def _answer(self, head: bytes, body: bytes) -> None:
        assert self.transport is not None
        line = head[: head.find(b"\r\n")] if b"\r\n" in head else head
        method, _, rest = line.partition(b" ")
        path = rest.partition(b" ")[0]
        if method == b"POST" and path.endswith(b"/chat/completions"):
            if not _STREAM_RE.search(body):
                self.transport.write(_OK_COMPLETION)
            elif self.chunk_delay > 0 and _SLOW_RE.search(body):
                asyncio.get_running_loop().create_task(self._slow_stream())
            else:
                self.transport.write(_STREAM_FAST)
        elif method == b"GET" and path.endswith(b"/models"):
            self.transport.write(_OK_MODELS)
        elif method == b"GET" and path == b"/health":
            self.transport.write(_OK_HEALTH)
        else:
            self.transport.write(_NOT_FOUND)

    async def _slow_stream(self) -> None:
        transport = self.transport
        assert transport is not None
        transport.write(_STREAM_HEAD + _chunked(_EVENTS[0]))
        for event in _EVENTS[1:]:
            await asyncio.sleep(self.chunk_delay)
            if transport.is_closing():
                return
            transport.write(_chunked(event))
        transport.write(b"0\r\n\r\n")


async def _serve(host: str, port: int, chunk_delay: float) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Http(chunk_delay), host, port, backlog=1024)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18100)
    parser.add_argument(
        "--chunk-delay", type=float, default=0.02, help="seconds between fake-slow stream chunks"
    )
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.host, args.port, args.chunk_delay))


if __name__ == "__main__":
    main()

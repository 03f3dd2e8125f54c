"""What an upstream answers, checked before the client is answered.

A 200 is only a success when its body is one: a non-streamed answer must be a JSON object of
the endpoint's shape (``choices`` for chat and legacy completions, ``data`` for embeddings); a
stream must be server-sent events whose ``data:`` lines are JSON objects, ending with
``data: [DONE]``. Anything else (garbage, a body cut short, a stream that stops without its
end) is an upstream error: the proxy fails over, the backend's health counts it, and the
router does not learn "ok" from it.

A non-streamed answer is read up to ``limits.max_answer_bytes``; a larger one is passed through
as it arrives (:func:`read_capped`), so one huge answer never sits whole in memory.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from .client import UpstreamResponse

__all__ = ["SseCheck", "parse_answer", "read_capped"]

# the longest line an event may have before its end arrives (a never-ending line is garbage)
_MAX_EVENT_LINE = 4 * 1024 * 1024
_FIELDS = (b"event:", b"id:", b"retry:")


def parse_answer(body: bytes, endpoint: str) -> dict[str, Any] | None:
    """The answer's JSON object when it has the endpoint's shape, else None."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(payload, dict):
        return None
    field = "data" if endpoint == "embeddings" else "choices"
    return payload if isinstance(payload.get(field), list) else None


async def read_capped(
    upstream: UpstreamResponse, limit: int
) -> tuple[bytes, AsyncIterator[bytes] | None]:
    """The whole body when it is at most ``limit`` bytes: ``(body, None)``. Otherwise
    ``(first bytes, the rest as it arrives)``; the caller passes both on and closes the
    upstream when done."""
    chunks = upstream.chunks()
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        parts.append(chunk)
        size += len(chunk)
        if size > limit:
            return b"".join(parts), chunks
    return b"".join(parts), None


class SseCheck:
    """Checks a stream of server-sent events chunk by chunk (an event may span chunks)."""

    __slots__ = ("done", "invalid", "pending")

    def __init__(self) -> None:
        self.pending = b""  # the start of a line whose end has not arrived
        self.done = False  # `data: [DONE]` seen
        self.invalid: str | None = None  # what was wrong, once something was

    def feed(self, chunk: bytes) -> bool:
        """Check ``chunk``; False once the stream is not valid (see :attr:`invalid`)."""
        if self.invalid is not None:
            return False
        data = self.pending + chunk if self.pending else chunk
        lines = data.split(b"\n")
        self.pending = lines.pop()
        if len(self.pending) > _MAX_EVENT_LINE:
            self.invalid = "an event line without end"
            return False
        return all(self._line(line.rstrip(b"\r")) for line in lines)

    def _line(self, line: bytes) -> bool:
        if not line or line.startswith(b":"):
            return True  # an event's end, or a comment (keep-alive)
        if line.startswith(b"data:"):
            payload = line[5:].strip()
            if payload == b"[DONE]":
                self.done = True
                return True
            try:
                event = orjson.loads(payload)
            except orjson.JSONDecodeError:
                self.invalid = "an event that is not JSON"
                return False
            if not isinstance(event, dict):
                self.invalid = "an event that is not a JSON object"
                return False
            return True
        if line.startswith(_FIELDS):
            return True
        self.invalid = "a line that is not a server-sent event"
        return False

    def complete(self) -> bool:
        """Whether the stream ended as a stream should: with ``data: [DONE]``."""
        if self.pending.strip() and self.invalid is None:
            self._line(self.pending.rstrip(b"\r"))
            self.pending = b""
        return self.done and self.invalid is None

"""Exact-match response cache for deterministic, non-streaming chat requests.

A request is eligible when it is not streamed and either asks for ``temperature: 0`` or opts
in with the header ``x-hydra-cache: true`` (``x-hydra-cache: false`` opts out). The key is a
SHA-256 of the API key id and the canonical request body (sorted keys, without ``stream``), so
answers are never shared between API keys and any change of model or parameter is a new entry.
Only whole 200 answers up to ``cache.max_entry_bytes`` are stored, for ``cache.ttl_s``.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from .redis_link import RedisLink, RedisUnavailable

__all__ = [
    "CachedAnswer",
    "MemoryCache",
    "RedisCache",
    "ResponseCache",
    "cache_eligible",
    "cache_key",
    "parse_cache_header",
]

_PREFIX = "hydra:cache:"


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    body: bytes
    content_type: str
    route: str
    backend: str
    model: str

    def dumps(self) -> bytes:
        head = orjson.dumps(
            {
                "content_type": self.content_type,
                "route": self.route,
                "backend": self.backend,
                "model": self.model,
            }
        )
        return head + b"\n" + self.body

    @classmethod
    def loads(cls, data: bytes) -> CachedAnswer | None:
        head, sep, body = data.partition(b"\n")
        if not sep:
            return None
        try:
            meta = orjson.loads(head)
            return cls(
                body,
                str(meta["content_type"]),
                str(meta["route"]),
                str(meta["backend"]),
                str(meta["model"]),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return None


def parse_cache_header(value: str | None) -> bool | None:
    """``x-hydra-cache``: true/false (also 1/0, yes/no, on/off); anything else is no opinion."""
    if value is None:
        return None
    value = value.strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    return None


def cache_eligible(body: dict[str, Any], stream: bool, opt_in: bool | None) -> bool:
    if stream or opt_in is False:
        return False
    if opt_in:
        return True
    temperature = body.get("temperature")
    return (
        isinstance(temperature, int | float)
        and not isinstance(temperature, bool)
        and (temperature == 0)
    )


def cache_key(key_id: str | None, body: dict[str, Any]) -> str:
    canonical = orjson.dumps(
        {k: v for k, v in body.items() if k != "stream"}, option=orjson.OPT_SORT_KEYS
    )
    digest = hashlib.sha256((key_id or "anon").encode() + b"\0" + canonical).hexdigest()
    return _PREFIX + digest


class ResponseCache(Protocol):
    async def get(self, key: str) -> CachedAnswer | None: ...

    async def put(self, key: str, answer: CachedAnswer) -> None: ...


class MemoryCache:
    """In-process LRU with a TTL, bounded by entries and bytes."""

    def __init__(
        self, ttl_s: float, max_entries: int = 1024, max_bytes: int = 64 * 1024 * 1024
    ) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, tuple[float, CachedAnswer]] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def _drop(self, key: str) -> None:
        _, answer = self._entries.pop(key)
        self._bytes -= len(answer.body)

    async def get(self, key: str) -> CachedAnswer | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, answer = entry
        if expires <= time.monotonic():
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return answer

    async def put(self, key: str, answer: CachedAnswer) -> None:
        if key in self._entries:
            self._drop(key)
        self._entries[key] = (time.monotonic() + self.ttl_s, answer)
        self._bytes += len(answer.body)
        while self._entries and (
            len(self._entries) > self.max_entries or self._bytes > self.max_bytes
        ):
            self._drop(next(iter(self._entries)))


class RedisCache:
    """Shared by every replica; the in-process cache stands in while Redis is down."""

    def __init__(self, link: RedisLink, ttl_s: float, fallback: MemoryCache | None = None) -> None:
        self.link = link
        self.ttl_ms = max(1, int(ttl_s * 1000))
        self.fallback = fallback or MemoryCache(ttl_s)

    async def get(self, key: str) -> CachedAnswer | None:
        try:
            data = await self.link.run(lambda r: r.get(key))
        except RedisUnavailable:
            return await self.fallback.get(key)
        return CachedAnswer.loads(data) if isinstance(data, bytes) else None

    async def put(self, key: str, answer: CachedAnswer) -> None:
        data = answer.dumps()
        try:
            await self.link.run(lambda r: r.set(key, data, px=self.ttl_ms))
        except RedisUnavailable:
            await self.fallback.put(key, answer)

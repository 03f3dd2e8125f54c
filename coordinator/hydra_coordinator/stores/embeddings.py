"""Text embeddings: any OpenAI-compatible ``/embeddings`` service, or the built-in embedder.

The built-in embedder needs no download and no service: it hashes words, word pairs and
character trigrams into a fixed number of dimensions (feature hashing) and L2-normalises the
result. It finds near-identical and reworded questions, not deep paraphrases; point
``embeddings.url`` at text-embeddings-inference, Ollama or a cloud API for real semantics.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import math
import re
import time
from typing import Literal, Protocol

import orjson

from ..backends.client import (
    Timeouts,
    UpstreamClient,
    UpstreamConnectError,
    UpstreamTimeout,
    create_client,
)
from ..config import EmbeddingsConfig, read_secret
from ..redaction import redact_url

log = logging.getLogger("hydra_coordinator.stores")

__all__ = ["BuiltinEmbedder", "Embedder", "EmbeddingError", "RemoteEmbedder", "make_embedder"]

State = Literal["healthy", "degraded", "down"]

_WORD = re.compile(r"\w+", re.UNICODE)
_MAX_CHARS = 8192  # text past this adds little to a question's embedding


class EmbeddingError(Exception):
    """The embeddings service failed; the message says how."""


class Embedder(Protocol):
    description: str
    dimensions: int | None  # None until known (a service that was not asked yet)

    async def embed(self, texts: list[str]) -> list[list[float]]: ...

    def status(self) -> State: ...

    async def probe(self, timeout_s: float) -> None:
        """Find out whether the service works now (for /health, without traffic)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def _features(text: str) -> dict[str, float]:
    words = _WORD.findall(text[:_MAX_CHARS].lower())
    features: dict[str, float] = {}

    def add(feature: str, weight: float) -> None:
        features[feature] = features.get(feature, 0.0) + weight

    for word in words:
        add("w:" + word, 1.0)
        padded = f"#{word}#"
        for i in range(len(padded) - 2):
            add("c:" + padded[i : i + 3], 0.25)
    for first, second in itertools.pairwise(words):
        add(f"b:{first} {second}", 0.75)
    return features


def hash_embed(text: str, dimensions: int) -> list[float]:
    vector = [0.0] * dimensions
    for feature, weight in _features(text).items():
        digest = int.from_bytes(hashlib.blake2b(feature.encode(), digest_size=8).digest(), "big")
        index = digest % dimensions
        vector[index] += weight if (digest >> 63) & 1 else -weight
    norm = math.sqrt(sum(v * v for v in vector))
    if norm == 0:
        vector[0] = 1.0  # an empty text still gets a valid (unit) vector
        return vector
    return [v / norm for v in vector]


class BuiltinEmbedder:
    def __init__(self, dimensions: int = 384) -> None:
        self.dimensions: int | None = dimensions
        self._dims = dimensions
        self.description = f"builtin (feature hashing, {dimensions} dimensions)"

    async def embed(self, texts: list[str]) -> list[list[float]]:
        return await asyncio.to_thread(lambda: [hash_embed(t, self._dims) for t in texts])

    def status(self) -> State:
        return "healthy"

    async def probe(self, timeout_s: float) -> None:
        return None  # in process: it cannot go away

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


class RemoteEmbedder:
    """``POST {embeddings.url}/embeddings`` with ``{"model", "input": [...]}``."""

    def __init__(self, config: EmbeddingsConfig, client_kind: str = "aiohttp") -> None:
        assert config.url is not None
        self.config = config
        self.url = f"{config.url}/embeddings"
        self.dimensions = config.dimensions
        self.description = f"{config.url} (model {config.model})"
        self._client_kind = client_kind
        self._client: UpstreamClient | None = None
        self._headers = {"content-type": "application/json"}
        if config.api_key_file:
            key = read_secret(config.api_key_file, "embeddings.api_key_file")
            self._headers["authorization"] = f"Bearer {key}"
        self._ok: bool | None = None  # None until the first call
        self._failed_at = 0.0

    def status(self) -> State:
        return "down" if self._ok is False else "healthy"

    async def probe(self, timeout_s: float) -> None:
        """Embed one word: the service's own endpoint, as real use would call it."""
        try:
            await asyncio.wait_for(self.embed(["health check"]), timeout_s)
        except TimeoutError as exc:
            self._failed(exc)
        except EmbeddingError:
            pass  # embed() recorded it

    async def start(self) -> None:
        self._client = create_client(self._client_kind)

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def embed(self, texts: list[str]) -> list[list[float]]:
        if self._client is None:
            raise EmbeddingError("the embeddings client is not running")
        payload: dict[str, object] = {
            "model": self.config.model,
            "input": [t[:_MAX_CHARS] for t in texts],
        }
        if self.config.dimensions is not None:
            payload["dimensions"] = self.config.dimensions
        timeouts = Timeouts(min(3.0, self.config.timeout_s), self.config.timeout_s)
        try:
            response = await self._client.post(
                self.url, orjson.dumps(payload), self._headers, timeouts
            )
            body = await response.read()
            if response.status != 200:
                raise EmbeddingError(f"{self.url} answered HTTP {response.status}")
            data = orjson.loads(body)["data"]
            vectors = [
                [float(x) for x in item["embedding"]]
                for item in sorted(data, key=lambda d: d.get("index", 0))
            ]
        except (UpstreamConnectError, UpstreamTimeout) as exc:
            self._failed(exc)
            raise EmbeddingError(f"{self.url} is unreachable: {exc}") from exc
        except EmbeddingError as exc:
            self._failed(exc)
            raise
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            self._failed(exc)
            raise EmbeddingError(f"{self.url} answered something that is not embeddings") from exc
        if len(vectors) != len(texts) or not vectors or not vectors[0]:
            self._failed(None)
            raise EmbeddingError(f"{self.url} answered {len(vectors)} embeddings for {len(texts)}")
        if self._ok is False:
            log.warning("embeddings service %s works again", redact_url(self.url))
        self._ok = True
        self.dimensions = len(vectors[0])
        return vectors

    def _failed(self, exc: object) -> None:
        if self._ok is not False:
            why = f"{type(exc).__name__}: {exc}" if exc is not None else "a wrong answer"
            log.warning("embeddings service %s failed (%s)", redact_url(self.url), why)
        self._ok = False
        self._failed_at = time.monotonic()


def make_embedder(config: EmbeddingsConfig, client_kind: str = "aiohttp") -> Embedder:
    if config.url:
        return RemoteEmbedder(config, client_kind)
    return BuiltinEmbedder(config.dimensions or 384)

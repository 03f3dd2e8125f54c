"""The knowledge base: answered questions in Qdrant, found again by similarity.

Each point is one answered question: the question's embedding, and as payload the question, the
answer, the backend that answered, the API key id, the request id and a rating (set later by
feedback). ``search`` filters by key id whenever one is given, so one client never sees another
client's answers.

Qdrant is a server (``qdrant.url``) or embedded (``qdrant.path``, relative to the state
directory; default ``<state dir>/qdrant``). The embedded store is one process's at a time: apps
in one process share it, and a second process finds it locked and keeps its knowledge in memory
(``/health`` shows ``qdrant: degraded``). Calls run in a worker thread so the event loop never
waits for a search. Nothing here fails a request: errors are logged and the base reports
``down`` until a call succeeds again.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

import orjson

from ..config import Settings, read_secret
from ..paths import state_directory
from ..redaction import redact_url
from .embeddings import Embedder, EmbeddingError

__all__ = ["KnowledgeBase", "answer_text", "question_text", "should_store"]

log = logging.getLogger("hydra_coordinator.knowledge")

State = Literal["healthy", "degraded", "down"]
T = TypeVar("T")

_NAMESPACE = uuid.UUID("6d1f2c52-7a0e-4b8e-9d3c-2f5a1c9e8b70")


def should_store(body: dict[str, Any], answer: str) -> bool:
    """Whether an answered request may be kept in the knowledge base.

    Privacy hook: the privacy rules replace this (``runtime.knowledge.should_store``)
    to keep answers with secrets or personal data out. The default keeps everything.
    """
    return True


def question_text(body: dict[str, Any]) -> str:
    """The last user message's text."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return ""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                parts = [
                    str(p.get("text", ""))
                    for p in content
                    if isinstance(p, dict) and p.get("type", "text") == "text"
                ]
                return " ".join(p for p in parts if p)
            return ""
    return ""


def answer_text(response_body: bytes) -> str:
    """The assistant's text in a (non-streamed) chat completion."""
    try:
        payload = orjson.loads(response_body)
        content = payload["choices"][0]["message"]["content"]
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
        return ""
    return content if isinstance(content, str) else ""


class _Store:
    """A Qdrant client and the lock that serialises calls to an embedded one."""

    def __init__(self, client: Any, lock: threading.Lock | None, where: str) -> None:
        self.client = client
        self.lock = lock
        self.where = where
        self.refs = 1


_LOCAL: dict[str, _Store] = {}  # embedded stores open in this process, by path
_LOCAL_LOCK = threading.Lock()


def _locked(lock_file: Path) -> bool:
    """Whether another process holds the embedded store's lock (Qdrant uses flock)."""
    try:
        with open(lock_file, "a+b") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
    except OSError:
        return False
    return False


def _open_local(path: Path) -> tuple[_Store, bool]:
    """The embedded store at ``path`` (shared in this process); (store, False) means another
    process holds it and this one got an in-memory store instead."""
    from qdrant_client import QdrantClient

    key = str(path.resolve())
    with _LOCAL_LOCK:
        store = _LOCAL.get(key)
        if store is not None:
            store.refs += 1
            return store, True
        path.mkdir(parents=True, exist_ok=True)
        try:
            if _locked(path / ".lock"):  # asking Qdrant itself would leak its lock file
                raise RuntimeError("locked by another process")
            client = QdrantClient(path=key)
        except RuntimeError as exc:  # "Storage folder ... is already accessed by another ..."
            log.warning("qdrant store %s is in use (%s); keeping knowledge in memory", key, exc)
            return _Store(QdrantClient(location=":memory:"), threading.Lock(), ":memory:"), False
        store = _Store(client, threading.Lock(), key)
        _LOCAL[key] = store
        return store, True


def _close_local(store: _Store) -> None:
    with _LOCAL_LOCK:
        store.refs -= 1
        if store.refs > 0:
            return
        if _LOCAL.get(store.where) is store:
            del _LOCAL[store.where]
    _close(store)


def _close(store: _Store) -> None:
    """Close the client once no call is running in it (a call cancelled in the event loop
    still runs to its end in its thread)."""
    if store.lock is None:
        store.client.close()
        return
    with store.lock:
        store.client.close()


class KnowledgeBase:
    def __init__(self, settings: Settings, embedder: Embedder) -> None:
        self.settings = settings
        self.config = settings.knowledge
        self.qdrant = settings.qdrant
        self.embedder = embedder
        self.enabled = self.config.enabled
        self.should_store: Callable[[dict[str, Any], str], bool] = should_store
        self.queue: asyncio.Queue[tuple[dict[str, Any], bytes, str, str | None, str]] = (
            asyncio.Queue(self.config.queue_size)
        )
        self.stored = 0
        self.dropped = 0
        # The same answer to the same question (per key) is stored once: a repeat maps to the
        # stored one, so rating the repeat rates it. Bounded; a forgotten repeat is stored again.
        self._stored_pairs: OrderedDict[str, str] = OrderedDict()  # digest -> request id
        self._aliases: OrderedDict[str, str] = OrderedDict()  # repeat's request id -> stored
        # Answers queued and not stored yet, with a rating that came meanwhile (set when stored)
        self._pending: OrderedDict[str, float | None] = OrderedDict()
        self._store: _Store | None = None
        self._shared = True
        self._ok = True
        self._open_lock = asyncio.Lock()
        self._collections: dict[int, str] = {}
        self._worker: asyncio.Task[None] | None = None
        self.on_drop: Callable[[], None] = lambda: None

    @property
    def where(self) -> str:
        if self.qdrant.url:
            return self.qdrant.url
        return str(self._local_path())

    def _local_path(self) -> Path:
        path = Path(self.qdrant.path or "qdrant").expanduser()
        return path if path.is_absolute() else state_directory(self.settings) / path

    # --- life cycle --------------------------------------------------------------------------

    async def start(self) -> None:
        if not self.enabled:
            return
        await self.embedder.start()
        # Qdrant is opened on first use, not here: importing and opening it takes about a
        # second, which would delay the start (and compete with it for the GIL).
        self._open_lock = asyncio.Lock()
        self._worker = asyncio.create_task(self._store_answers(), name="knowledge-store")

    async def probe(self, timeout_s: float) -> None:
        """Keep ``/health`` true without traffic (every ``health.interval_s``): ask a Qdrant
        server whether it works, and open an embedded store again after its open failed (an
        embedded store that is open cannot go away; one never used is not opened for this)."""
        if not self.enabled or not (self.qdrant.url or (self._store is None and not self._ok)):
            return
        try:
            await asyncio.wait_for(self._call(lambda c: c.get_collections()), timeout_s)
        except TimeoutError:
            if self._ok:
                log.warning("qdrant at %s does not answer", redact_url(self.where))
            self._ok = False
        except Exception:
            pass  # _call recorded it

    def _open(self) -> None:
        if self.qdrant.url:
            from qdrant_client import QdrantClient

            api_key = None
            if self.qdrant.api_key_file:
                api_key = read_secret(self.qdrant.api_key_file, "qdrant.api_key_file")
            client = QdrantClient(url=self.qdrant.url, api_key=api_key, timeout=5)
            self._store = _Store(client, None, self.qdrant.url)
        else:
            self._store, self._shared = _open_local(self._local_path())

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        self._worker = None
        store, self._store = self._store, None
        if store is not None:
            shared = store.lock is not None and store.where != ":memory:"
            await asyncio.to_thread(_close_local if shared else _close, store)
        await self.embedder.stop()

    def status(self) -> State:
        if not self._ok:
            return "down"
        if self.enabled and self._store is None:
            # opened on first use; while that runs (about a second) it has not failed: a
            # failed open sets _ok = False
            return "healthy"
        return "healthy" if self._shared else "degraded"

    # --- Qdrant calls, in a thread -------------------------------------------------------------

    async def _ensure_open(self) -> None:
        if self._store is None:
            async with self._open_lock:
                await self._open_once()

    async def _open_once(self) -> None:
        """Open Qdrant unless another task did while this one waited for the lock."""
        if self._store is not None:
            return
        try:
            await asyncio.to_thread(self._open)
        except Exception as exc:
            self._ok = False
            log.warning("qdrant at %s cannot be opened: %s", redact_url(self.where), exc)
            raise ConnectionError(f"qdrant at {redact_url(self.where)} cannot be opened") from exc
        self._ok = True

    async def _call(self, fn: Callable[[Any], T]) -> T:
        await self._ensure_open()
        store = self._store
        if store is None:
            raise ConnectionError("qdrant is not open")

        def run() -> T:
            if store.lock is None:
                return fn(store.client)
            with store.lock:
                return fn(store.client)

        try:
            result = await asyncio.to_thread(run)
        except Exception:
            if self._ok:
                log.warning("qdrant at %s failed", redact_url(self.where), exc_info=True)
            self._ok = False
            raise
        if not self._ok:
            log.warning("qdrant at %s works again", redact_url(self.where))
        self._ok = True
        return result

    async def _collection(self, dimensions: int, create: bool) -> str | None:
        name = self._collections.get(dimensions)
        if name is not None:
            return name
        await self._ensure_open()  # imports qdrant_client in a thread, not on the event loop
        from qdrant_client import models

        base = self.qdrant.collection

        def find(client: Any) -> str | None:
            for candidate in (base, f"{base}_{dimensions}d"):
                if client.collection_exists(candidate):
                    params = client.get_collection(candidate).config.params.vectors
                    if getattr(params, "size", None) == dimensions:
                        return candidate
                    continue  # made with another embedder: keep it, use the next name
                if not create:
                    return None
                client.create_collection(
                    candidate,
                    vectors_config=models.VectorParams(
                        size=dimensions, distance=models.Distance.COSINE
                    ),
                )
                if store_is_server:
                    for field in ("key_id", "request_id"):
                        client.create_payload_index(
                            candidate, field, field_schema=models.PayloadSchemaType.KEYWORD
                        )
                return candidate
            return None

        store_is_server = bool(self.qdrant.url)
        name = await self._call(find)
        if name is not None:
            self._collections[dimensions] = name
        return name

    async def _embed_one(self, text: str) -> list[float]:
        return (await self.embedder.embed([text]))[0]

    # --- the interface -------------------------------------------------------------------------

    async def add(  # noqa: PLR0917 (the interface of the spec)
        self,
        question: str,
        answer: str,
        backend: str,
        key_id: str | None,
        request_id: str,
        rating: float | None = None,
    ) -> None:
        """Store one answered question (the request id makes it idempotent)."""
        await self._add_many([(question, answer, backend, key_id, request_id, rating)])

    async def _add_many(
        self, items: list[tuple[str, str, str, str | None, str, float | None]]
    ) -> None:
        """One embeddings call and one upsert for several answers."""
        if not self.enabled or not items:
            return
        vectors = await self.embedder.embed([item[0] for item in items])
        collection = await self._collection(len(vectors[0]), create=True)
        assert collection is not None
        from qdrant_client import models  # imported by _collection, in a thread

        now = time.time()
        points = [
            models.PointStruct(
                id=str(uuid.uuid5(_NAMESPACE, request_id)),
                vector=vector,
                payload={
                    "question": question,
                    "answer": answer,
                    "backend": backend,
                    "key_id": key_id,
                    "request_id": request_id,
                    "rating": rating,
                    "created_at": now,
                },
            )
            for (question, answer, backend, key_id, request_id, rating), vector in zip(
                items, vectors, strict=True
            )
        ]
        await self._call(lambda c: c.upsert(collection, points=points))

    async def search(
        self, query: str, limit: int = 5, key_id: str | None = None
    ) -> list[dict[str, Any]]:
        """The stored questions most similar to ``query``, best first; only ``key_id``'s
        when given (None searches all: for the operator's tools, never for a client).

        Never raises: when Qdrant or the embeddings service fails, the answer is ``[]`` (the
        failure is logged and shown in ``/health``)."""
        if not self.enabled or limit < 1:
            return []
        try:
            return await self._search(query, limit, key_id)
        except Exception as exc:
            log.debug("knowledge search failed: %s", exc)
            return []

    async def _search(self, query: str, limit: int, key_id: str | None) -> list[dict[str, Any]]:
        vector = await self._embed_one(query)
        collection = await self._collection(len(vector), create=False)
        if collection is None:
            return []
        from qdrant_client import models  # imported by _collection, in a thread

        flt = None
        if key_id is not None:
            flt = models.Filter(
                must=[models.FieldCondition(key="key_id", match=models.MatchValue(value=key_id))]
            )
        result = await self._call(
            lambda c: c.query_points(
                collection, query=vector, limit=limit, query_filter=flt, with_payload=True
            )
        )
        found = []
        for point in result.points:
            payload = point.payload or {}
            found.append(
                {
                    "id": str(point.id),
                    "question": payload.get("question"),
                    "answer": payload.get("answer"),
                    "backend": payload.get("backend"),
                    "rating": payload.get("rating"),
                    "request_id": payload.get("request_id"),
                    "score": float(point.score),
                }
            )
        return found

    async def rate(self, request_id: str, rating: float) -> bool:
        """Set the rating of the answer to ``request_id`` (replacing an earlier one); False when
        it is not stored. An answer still queued for storing gets it when it is stored."""
        if not self.enabled:
            return False
        if request_id in self._pending:
            self._pending[request_id] = rating
            return True
        return await self._set_rating(request_id, rating)

    async def _set_rating(self, request_id: str, rating: float) -> bool:
        point_id = str(uuid.uuid5(_NAMESPACE, self._aliases.get(request_id, request_id)))
        dimensions = self.embedder.dimensions
        if dimensions is None:
            dimensions = len(await self._embed_one("dimensions"))
        collection = await self._collection(dimensions, create=False)
        if collection is None:
            return False

        def update(client: Any) -> bool:
            if not client.retrieve(collection, ids=[point_id], with_payload=False):
                return False
            client.set_payload(collection, payload={"rating": rating}, points=[point_id])
            return True

        return await self._call(update)

    # --- answers of the chat path, stored in the background ----------------------------------

    def submit(
        self,
        body: dict[str, Any],
        response_body: bytes,
        backend: str,
        key_id: str | None,
        request_id: str,
    ) -> None:
        """Queue an answered request for storing; never blocks (a full queue drops it)."""
        if not (self.enabled and self.config.store_answers):
            return
        if len(response_body) > self.config.max_answer_bytes:
            return  # a bound on what is stored (and held in the queue)
        try:
            self.queue.put_nowait((body, response_body, backend, key_id, request_id))
            self._pending[request_id] = None
            _trim(self._pending)
        except asyncio.QueueFull:
            self.dropped += 1
            self.on_drop()
            if self.dropped == 1 or self.dropped % 100 == 0:
                log.warning("knowledge base is behind; %d answer(s) not stored", self.dropped)

    async def _store_answers(self, batch: int = 64) -> None:
        while True:
            queued = [await self.queue.get()]
            while len(queued) < batch and not self.queue.empty():
                queued.append(self.queue.get_nowait())
            stored: dict[str, tuple[str, float | None]] = {}  # request id -> point, rating
            try:
                items: list[tuple[str, str, str, str | None, str, float | None]] = []
                for body, response_body, backend, key_id, request_id in queued:
                    question = question_text(body)
                    answer = answer_text(response_body)
                    if question and answer and self.should_store(body, answer):
                        if self._repeat(key_id, question, answer, request_id):
                            stored[request_id] = (self._aliases[request_id], None)
                            continue
                        rating = self._pending.get(request_id)
                        items.append((question, answer, backend, key_id, request_id, rating))
                        stored[request_id] = (request_id, rating)
                await self._add_many(items)
                self.stored += len(items)
                await self._late_ratings(stored)
            except EmbeddingError as exc:
                log.warning("not stored in the knowledge base: %s", exc)
            except Exception:
                log.debug("not stored in the knowledge base", exc_info=True)
            finally:
                for _body, _answer, _backend, _key, request_id in queued:
                    self._pending.pop(request_id, None)
                    self.queue.task_done()

    async def _late_ratings(self, stored: dict[str, tuple[str, float | None]]) -> None:
        """Ratings that came while their answers were on the way in: set them now."""
        for request_id, (point, rating) in stored.items():
            late = self._pending.pop(request_id, None)
            if late is not None and late != rating:
                await self._set_rating(point, late)

    def _repeat(self, key_id: str | None, question: str, answer: str, request_id: str) -> bool:
        """True (and remember the alias) when this exact pair is already stored for this key."""
        digest = hashlib.sha256(f"{key_id}\0{question}\0{answer}".encode()).hexdigest()
        stored = self._stored_pairs.get(digest)
        if stored is None:
            self._stored_pairs[digest] = request_id
            _trim(self._stored_pairs)
            return False
        self._stored_pairs.move_to_end(digest)
        self._aliases[request_id] = stored
        _trim(self._aliases)
        return True

    async def drain(self) -> None:
        """Wait until the queued answers are stored (for tests)."""
        await self.queue.join()


_REMEMBERED = 10_000


def _trim(mapping: OrderedDict[str, Any]) -> None:
    while len(mapping) > _REMEMBERED:
        mapping.popitem(last=False)

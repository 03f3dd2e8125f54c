"""The knowledge base: Qdrant's embedded mode in a temporary directory, the built-in embedder
and an OpenAI-compatible embeddings service (the fake upstream)."""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from hydra_coordinator.config import settings_from_dict
from hydra_coordinator.paths import state_directory
from hydra_coordinator.stores.embeddings import hash_embed, make_embedder
from hydra_coordinator.stores.knowledge import KnowledgeBase, answer_text, question_text

from .servers import coordinator_settings, running
from .test_stores import health, in_app, post


@asynccontextmanager
async def knowledge(path: Path, **extra: Any) -> AsyncIterator[KnowledgeBase]:
    settings = settings_from_dict({"qdrant": {"path": str(path)}, **extra})
    kb = KnowledgeBase(settings, make_embedder(settings.embeddings))
    await kb.start()
    try:
        yield kb
    finally:
        await kb.stop()


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_builtin_embedder_is_deterministic_normalised_and_similarity_aware():
    a = hash_embed("How do I reset my router password?", 384)
    assert a == hash_embed("How do I reset my router password?", 384)
    assert len(a) == 384 and math.isclose(sum(x * x for x in a), 1.0)
    similar = hash_embed("how can I reset the password of my router", 384)
    unrelated = hash_embed("Best pasta recipe with tomatoes and basil", 384)
    assert cosine(a, similar) > 0.5 > cosine(a, unrelated)
    assert math.isclose(sum(x * x for x in hash_embed("", 384)), 1.0)


def test_question_and_answer_extraction():
    body = {
        "messages": [
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": [{"type": "text", "text": "second"}, {"type": "image"}]},
        ]
    }
    assert question_text(body) == "second"
    assert question_text({"messages": []}) == ""
    answer = {"choices": [{"message": {"role": "assistant", "content": "Paris."}}]}
    assert answer_text(json.dumps(answer).encode()) == "Paris."
    assert answer_text(b"not json") == ""


def test_add_search_isolation_rate_and_persistence(tmp_path):
    path = tmp_path / "qdrant"

    async def run() -> None:
        async with knowledge(path) as kb:
            assert kb.status() == "healthy"
            assert await kb.search("anything") == []  # no collection yet
            await kb.add("How do I reset my router password?", "Hold reset.", "ollama", "a", "r1")
            await kb.add("Best pasta recipe with tomatoes", "Boil...", "openai", "a", "r2")
            await kb.add("How do I reset my router password?", "B's answer", "ollama", "b", "r3")
            found = await kb.search("reset the router password", limit=5, key_id="a")
            assert [f["request_id"] for f in found] == ["r1", "r2"]
            best = found[0]
            assert best["question"] == "How do I reset my router password?"
            assert best["answer"] == "Hold reset." and best["backend"] == "ollama"
            assert best["rating"] is None and best["score"] > found[1]["score"]
            assert set(best) == {
                "id",
                "question",
                "answer",
                "backend",
                "rating",
                "score",
                "request_id",
            }
            assert [f["request_id"] for f in await kb.search("router", key_id="b")] == ["r3"]
            assert await kb.search("router", key_id="nobody") == []
            assert len(await kb.search("router", limit=10)) == 3  # operator view: all keys
            # the request id makes adding idempotent
            await kb.add("How do I reset my router password?", "Hold reset.", "ollama", "a", "r1")
            assert len(await kb.search("router", limit=10, key_id="a")) == 2
            assert await kb.rate("r1", 1.0) is True
            assert await kb.rate("unknown", 1.0) is False
        async with knowledge(path) as kb:  # reopened: still there, with the rating
            found = await kb.search("reset the router password", limit=1, key_id="a")
            assert found[0]["request_id"] == "r1" and found[0]["rating"] == 1.0

    asyncio.run(run())


def test_a_store_locked_by_another_process_degrades_to_memory(tmp_path):
    path = tmp_path / "qdrant"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from qdrant_client import QdrantClient;"
            " c = QdrantClient(path=sys.argv[1]); print('open', flush=True); sys.stdin.read()",
            str(path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"open"

        async def run() -> None:
            async with knowledge(path) as kb:
                assert kb.status() == "healthy"  # opened on first use
                await kb.add("question", "answer", "ollama", None, "r1")
                assert kb.status() == "degraded"  # in memory: the store was locked
                assert (await kb.search("question"))[0]["request_id"] == "r1"

        asyncio.run(run())
    finally:
        holder.communicate(b"")


def test_embeddings_from_an_openai_compatible_service(tmp_path, local_fake):
    extra = {"embeddings": {"url": local_fake.base_url, "model": "nomic-embed-text"}}

    async def run() -> None:
        async with knowledge(tmp_path / "q", **extra) as kb:
            await kb.add("What is the capital of France?", "Paris.", "ollama", "a", "r1")
            found = await kb.search("What is the capital of France?", key_id="a")
            assert found[0]["request_id"] == "r1" and found[0]["score"] > 0.99
            assert kb.embedder.dimensions == 16
            assert kb.embedder.status() == "healthy"

    asyncio.run(run())
    calls = [r for r in local_fake.requests() if r["path"] == "/v1/embeddings"]
    assert len(calls) == 2
    assert calls[0]["body"]["model"] == "nomic-embed-text"
    assert calls[0]["body"]["input"] == ["What is the capital of France?"]


def test_unreachable_embeddings_service_never_fails_requests(tmp_path, local_fake):
    extra = {"embeddings": {"url": "http://127.0.0.1:9/v1", "timeout_s": 1}}
    settings = coordinator_settings(
        [{"name": "ollama", "kind": "local", "base_url": local_fake.base_url}],
        qdrant={"path": str(tmp_path / "q")},
        **extra,
    )
    with running(settings) as server:
        body = {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}
        assert post(server, body)[0] == 200
        kb = server.runtime.knowledge
        in_app(server, kb.drain())
        assert kb.stored == 0
        assert in_app(server, kb.search("hi")) == []  # a failing service: nothing found
        report = health(server)
        assert report["dependencies"]["embeddings"] == "down"
        assert report["status"] == "degraded"
        assert post(server, body)[0] == 200


def test_chat_answers_are_stored_in_the_background(local_fake, tmp_path):
    settings = coordinator_settings(
        [{"name": "ollama", "kind": "local", "base_url": local_fake.base_url}],
        state_dir=str(tmp_path),
    )
    with running(settings) as server:
        report = health(server)
        assert report["dependencies"]["qdrant"] == "healthy"
        assert report["dependencies"]["embeddings"] == "healthy"
        assert report["dependency_details"]["embeddings"].startswith("builtin")
        # embedded in the state directory, whose path /health no longer shows
        assert report["dependency_details"]["qdrant"].startswith("embedded")
        assert str(state_directory(settings)) not in report["dependency_details"]["qdrant"]
        question = [{"role": "user", "content": "Why is the sky blue?"}]
        assert post(server, {"model": "auto", "messages": question})[0] == 200
        # streamed answers are not stored
        assert post(server, {"model": "auto", "messages": question, "stream": True})[0] == 200
        kb = server.runtime.knowledge
        in_app(server, kb.drain())
        assert kb.stored == 1
        found = in_app(server, kb.search("why is the sky blue", key_id=None))
        assert found[0]["question"] == "Why is the sky blue?"
        assert found[0]["answer"] == "local: Why is the sky blue?"
        assert found[0]["backend"] == "ollama"
        assert in_app(server, kb.search("why is the sky blue", key_id="someone")) == []
        # the privacy hook can keep answers out
        kb.should_store = lambda body, answer: False
        assert post(server, {"model": "auto", "messages": question})[0] == 200
        in_app(server, kb.drain())
        assert kb.stored == 1


def test_knowledge_can_be_disabled(local_fake):
    settings = coordinator_settings(
        [{"name": "ollama", "kind": "local", "base_url": local_fake.base_url}],
        knowledge={"enabled": False},
    )
    with running(settings) as server:
        report = health(server)
        assert "qdrant" not in report["dependencies"]
        assert in_app(server, server.runtime.knowledge.search("anything")) == []


def test_requests_a_privacy_rule_decided_are_neither_cached_nor_stored(local_fake, tmp_path):
    settings = coordinator_settings(
        [{"name": "ollama", "kind": "local", "base_url": local_fake.base_url}],
        state_dir=str(tmp_path),
        privacy={
            "rules": [
                {"name": "home", "action": "local_only", "keywords": ["project bluebird"]},
                {"name": "never", "action": "block", "keywords": ["forbidden words"]},
            ]
        },
    )
    with running(settings) as server:
        private = {
            "model": "auto",
            "temperature": 0,
            "messages": [{"role": "user", "content": "Status of project bluebird?"}],
        }
        for _ in range(2):
            status, headers, _ = post(server, private)
            assert status == 200 and "x-hydra-cache" not in headers
        public = {**private, "messages": [{"role": "user", "content": "Why is the sky blue?"}]}
        assert post(server, public)[1]["x-hydra-cache"] == "miss"
        kb = server.runtime.knowledge
        in_app(server, kb.drain())
        assert kb.stored == 1  # the public question only
        assert in_app(server, kb.search("project bluebird", limit=10))[0]["question"] == (
            "Why is the sky blue?"
        )
        # routing (and so privacy) runs before the cache lookup: a block rule still answers 403
        blocked = {**public, "messages": [{"role": "user", "content": "say forbidden words"}]}
        assert post(server, blocked)[0] == 403

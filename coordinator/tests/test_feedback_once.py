"""A rating always lands: a rating sent right after the answer (while the answer is still on its
way into the knowledge base) reaches it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
import pytest

from .servers import FakeUpstream, running
from .test_feedback import post, settings_for
from .test_stores import in_app

QUESTION = "Why is the sky blue?"


@pytest.fixture
def fakes():
    local = FakeUpstream("local", ["llama"]).start()
    cloud = FakeUpstream("cloud", ["gpt-4o"]).start()
    yield local, cloud
    local.kill()
    cloud.kill()


def answer(server, question: str = QUESTION) -> str:
    """One chat completion through the official client; its request id."""
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="local", messages=[{"role": "user", "content": question}]
    )
    return str(raw.headers["x-hydra-request-id"])


def rate(server, request_id: str, rating: Any, comment: str | None = None) -> dict:
    status, body = post(
        server, "/v1/feedback", {"request_id": request_id, "rating": rating, "comment": comment}
    )
    assert status == 200, body
    return body


def knowledge_rating(server, request_id: str, question: str = QUESTION) -> float | None:
    kb = server.runtime.knowledge
    in_app(server, kb.drain())
    found = in_app(server, kb.search(question, 5))
    (mine,) = [f for f in found if f["request_id"] == request_id]
    rating: float | None = mine["rating"]
    return rating


def test_a_rating_right_after_the_answer_reaches_the_knowledge_base(fakes, tmp_path: Path):
    local, cloud = fakes
    embedder = FakeUpstream("embeddings", ["nomic-embed-text"]).start()
    try:
        embeddings = {"url": embedder.base_url, "model": "nomic-embed-text"}
        settings = settings_for(local, cloud, tmp_path, embeddings=embeddings)
        with running(settings) as server:
            warm = answer(server)  # the knowledge base is open and knows its dimensions
            assert knowledge_rating(server, warm) is None
            embedder.control(embeddings_delay_s=0.5)  # storing an answer now takes 0.5 s
            first = answer(server, "How far away is the moon?")
            rate(server, first, "up")  # no wait: the answer is not stored yet
            second = answer(server, "How hot is the sun?")
            rate(server, second, -0.5)
            rate(server, second, "down")  # rated again before it is stored: replaced
            assert knowledge_rating(server, first, "How far away is the moon?") == 1.0
            assert knowledge_rating(server, second, "How hot is the sun?") == -1.0
    finally:
        embedder.kill()

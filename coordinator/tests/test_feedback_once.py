"""A rating counts once and always lands: rating a request again replaces its rating in the
feedback table, in the per-prompt learner and in the knowledge base; a rating sent right after the
answer (while the answer is still on its way into the knowledge base) reaches it."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import openai
import pytest

from .fixtures_pg import PostgresServer, postgres
from .servers import FakeUpstream, running
from .test_feedback import post, settings_for
from .test_stores import in_app

__all__ = ["postgres"]  # the fixture

QUESTION = "Why is the sky blue?"


def answer(server, question: str = QUESTION) -> str:
    """One chat completion through the official client; its request id."""
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0) as client:
        raw = client.chat.completions.with_raw_response.create(
            model="local", messages=[{"role": "user", "content": question}]
        )
        raw.parse()
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


def rate_three_times(server) -> tuple[str, list[dict]]:
    request_id = answer(server)
    answers = [
        rate(server, request_id, "up", "great"),
        rate(server, request_id, "down", "wrong after all"),
        rate(server, request_id, 0.5),
    ]
    return request_id, answers


def check_replaced(server, request_id: str, answers: list[dict]) -> None:
    assert [a["replaced"] for a in answers] == [False, True, True]
    assert [a["learned"] for a in answers] == ["learned", "replaced", "replaced"]
    backend = answers[0]["backend"]
    assert server.runtime.router.prompts.ratings()[backend] == 1  # one vote, not three
    assert knowledge_rating(server, request_id) == 0.5


def test_rating_again_replaces_the_rating(fakes, tmp_path: Path):
    local, cloud = fakes
    with running(settings_for(local, cloud, tmp_path)) as server:
        request_id, answers = rate_three_times(server)
        check_replaced(server, request_id, answers)
    rows = (
        sqlite3.connect(tmp_path / "telemetry.sqlite3")
        .execute("SELECT rating, comment FROM feedback WHERE request_id = ?", (request_id,))
        .fetchall()
    )
    assert rows == [(0.5, None)]


@pytest.mark.needs_server
def test_rating_again_replaces_the_rating_on_postgres(
    fakes, tmp_path: Path, postgres: PostgresServer
):
    local, cloud = fakes
    url = postgres.create_database()
    with running(settings_for(local, cloud, tmp_path, database={"url": url})) as server:
        request_id, answers = rate_three_times(server)
        check_replaced(server, request_id, answers)
    rows = postgres.query(url, "SELECT request_id, rating, comment FROM feedback")
    assert [tuple(r) for r in rows] == [(request_id, 0.5, None)]


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

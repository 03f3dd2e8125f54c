"""Upstreams that answer 200 with something that is not an answer (garbage, a body cut short,
a stream without its end), or a huge one: checked before the client is answered, counted as
the upstream's failure, failed over; huge answers passed through, never cached or stored."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from .servers import CoordinatorServer, FakeUpstream, coordinator_settings, fetch, running

EVENT = 'data: {"id": "x", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": "hi"}}]}\n\n'  # noqa: E501


@pytest.fixture(scope="module")
def first_and_second() -> Iterator[tuple[FakeUpstream, FakeUpstream]]:
    first = FakeUpstream("first", ["shared"]).start()
    second = FakeUpstream("second", ["shared"]).start()
    yield first, second
    first.kill()
    second.kill()


@pytest.fixture
def pair(
    first_and_second: tuple[FakeUpstream, FakeUpstream],
) -> Iterator[tuple[CoordinatorServer, FakeUpstream, FakeUpstream]]:
    first, second = first_and_second
    first.reset()
    second.reset()
    settings = coordinator_settings(
        [
            {"name": "first", "kind": "local", "base_url": first.base_url},
            {"name": "second", "kind": "local", "base_url": second.base_url},
        ],
        limits={"max_answer_bytes": 64 * 1024},
        health={"interval_s": 60, "timeout_s": 5, "failure_threshold": 2, "cooldown_s": 30},
    )
    with running(settings) as server:
        yield server, first, second


def errors_of(server: CoordinatorServer, backend: str, kind: str) -> float:
    metric = f'hydra_upstream_errors_total{{backend="{backend}",kind="{kind}"}}'
    for line in fetch(f"{server.url}/metrics").decode().splitlines():
        if line.startswith(metric):
            return float(line.split()[-1])
    return 0.0


def ask(server: CoordinatorServer, **extra: Any) -> tuple[Any, str]:
    """(the response headers, the answer's text: a stream's deltas joined)."""
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0) as client:
        raw = client.chat.completions.with_raw_response.create(
            model="local", messages=[{"role": "user", "content": "hello"}], **extra
        )
        if extra.get("stream"):
            parts = [c.choices[0].delta.content or "" for c in raw.parse() if c.choices]
            return raw.headers, "".join(parts)
        return raw.headers, raw.parse().choices[0].message.content


@pytest.mark.parametrize(
    "garbage",
    [
        "this is not JSON at all",
        '{"id": "x", "choices": [{"message": {"content": "cut sho',  # truncated
        '{"hello": "a JSON object, but not a chat completion"}',
    ],
)
def test_a_garbage_200_fails_over_and_counts_against_the_backend(
    pair: tuple[CoordinatorServer, FakeUpstream, FakeUpstream], garbage: str
) -> None:
    server, first, _second = pair
    first.control(raw_answer=garbage)
    headers, text = ask(server)
    assert headers["x-hydra-backend"] == "second"
    assert text == "second: hello"
    assert errors_of(server, "first", "invalid") == 1
    # the backend's health counts it (a 200 used to reset its failures)
    health = httpx.get(f"{server.url}/health").json()
    assert health["backends"]["first"] == "degraded"


def test_garbage_from_the_only_backend_is_a_502(
    pair: tuple[CoordinatorServer, FakeUpstream, FakeUpstream],
) -> None:
    server, first, second = pair
    first.control(raw_answer="<html>gateway says hi</html>")
    second.control(raw_answer="<html>gateway says hi</html>")
    with pytest.raises(openai.APIStatusError) as caught:
        ask(server)
    assert caught.value.status_code == 502
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["code"] == "upstream_invalid_answer"


def test_a_garbage_stream_fails_over_before_any_byte_is_sent(
    pair: tuple[CoordinatorServer, FakeUpstream, FakeUpstream],
) -> None:
    server, first, _second = pair
    first.control(raw_stream=["this is no event stream\n\n"])
    headers, text = ask(server, stream=True)
    assert headers["x-hydra-backend"] == "second"
    assert text == "second: hello"
    assert errors_of(server, "first", "invalid") == 1


@pytest.mark.parametrize(
    ("pieces", "code", "kind"),
    [
        ([EVENT, "garbage after a good start\n\n"], "upstream_invalid", "invalid"),
        ([EVENT, EVENT], "upstream_truncated", "truncated"),  # no data: [DONE]
    ],
)
def test_a_stream_broken_midway_ends_with_an_error_event(
    pair: tuple[CoordinatorServer, FakeUpstream, FakeUpstream],
    pieces: list[str],
    code: str,
    kind: str,
) -> None:
    server, first, _second = pair
    first.control(raw_stream=pieces, chunk_delay_s=0.1)
    body = {"model": "local", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    with httpx.stream("POST", f"{server.url}/v1/chat/completions", json=body) as response:
        assert response.headers["x-hydra-backend"] == "first"
        events = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert json.loads(events[0])["choices"][0]["delta"]["content"] == "hi"
    assert json.loads(events[-1])["error"]["code"] == code
    assert errors_of(server, "first", kind) == 1


def test_an_answer_over_the_cap_is_passed_through_and_neither_cached_nor_stored(
    pair: tuple[CoordinatorServer, FakeUpstream, FakeUpstream],
) -> None:
    server, first, _second = pair
    first.control(answer_bytes=3 * 1024 * 1024)  # 3 MiB, the cap is 64 KiB
    answers = [ask(server, temperature=0) for _ in range(2)]
    for headers, text in answers:
        assert headers["x-hydra-backend"] == "first"
        # relayed as it arrived (chunked), not read whole first
        assert "content-length" not in headers
        assert text == "x" * (3 * 1024 * 1024)
        # not cached: the second identical request (temperature 0) is no hit
        assert headers.get("x-hydra-cache") != "hit"
    assert len(first.requests()) == 2
    # a small answer after them is stored; the huge ones are not
    first.control(answer_bytes=0, answer="a small answer")
    ask(server)
    deadline = time.monotonic() + 10
    while server.runtime.knowledge.stored < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    assert server.runtime.knowledge.stored == 1

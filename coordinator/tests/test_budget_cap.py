"""A budget is a hard cap: each cloud request reserves the most it can cost (everything sent
upstream, the longest answer allowed) before the call, and gives back what it did not spend on
every way it ends. Through the official openai client against a fake cloud that bills every
byte it is sent."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import openai
import pytest

from .servers import CoordinatorServer, FakeUpstream, coordinator_settings, running

PRICE = {"input": 2.5, "output": 10.0}  # US$ per million tokens
OUTPUT_CAP = 4000
LONG_ANSWER = "word " * 2000  # 2000 completion tokens: US$ 0.02


@contextmanager
def budgeted(
    local: FakeUpstream,
    cloud: FakeUpstream,
    daily_usd: float,
    health: dict[str, Any] | None = None,
    **cloud_extra: Any,
) -> Iterator[CoordinatorServer]:
    settings = coordinator_settings(
        [
            {"name": "ollama", "kind": "local", "base_url": local.base_url},
            {
                "name": "openai",
                "kind": "cloud",
                "base_url": cloud.base_url,
                "models": ["gpt-4o"],
                "price_per_mtok": PRICE,
                "max_output_tokens": OUTPUT_CAP,
                **cloud_extra,
            },
        ],
        budgets={"daily_usd": daily_usd, "on_exhausted": "reject"},
        **({"health": health} if health else {}),
    )
    with running(settings) as server:
        yield server


def cost(usage: Any) -> float:
    tokens = usage.prompt_tokens * PRICE["input"] + usage.completion_tokens * PRICE["output"]
    return float(tokens) / 1e6


async def fire(
    server: CoordinatorServer, count: int, done: list[Any] | None = None, **request: Any
) -> list[Any]:
    """``count`` concurrent requests; each result is also appended to ``done`` as it comes."""
    # generous timeouts: on a loaded machine 100 connections to a server that shares this
    # process's GIL can take longer than the client's default 5 s to connect
    client = openai.AsyncOpenAI(
        base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=120
    )
    async with client:

        async def one(index: int) -> Any:
            try:
                result: Any = await client.chat.completions.create(
                    model="cloud",
                    messages=[{"role": "user", "content": f"question {index}"}],
                    **request,
                )
            except openai.APIStatusError as error:
                result = error
            if done is not None:
                done.append(result)
            return result

        return await asyncio.gather(*(one(i) for i in range(count)))


async def released(server: CoordinatorServer) -> None:
    """Until every reservation is given back (it is, in a task of its own): nothing spent."""
    deadline = time.monotonic() + 60
    while any(abs(v) > 1e-12 for v in server.runtime.budgets.memory.spent.values()):
        assert time.monotonic() < deadline, server.runtime.budgets.memory.spent
        await asyncio.sleep(0.02)


def split(results: list[Any]) -> tuple[list[Any], list[openai.APIStatusError]]:
    answers = [r for r in results if not isinstance(r, openai.APIStatusError)]
    refused = [r for r in results if isinstance(r, openai.APIStatusError)]
    for error in refused:
        assert error.status_code == 429, error
        assert isinstance(error.body, dict)
        assert error.body["code"] == "budget_exhausted"
    return answers, refused


async def test_concurrent_requests_cannot_overshoot_the_last_requests_worth(
    local_fake: FakeUpstream, cloud_fake: FakeUpstream
) -> None:
    """No max_tokens: each request may answer up to the backend's cap (4000 tokens, US$ 0.04),
    so with one such request's worth left exactly one of 100 concurrent requests is sent."""
    # the cloud holds its answers until each request is refused or has reached it: one that
    # finished early would give back what it did not spend, and a later one could be sent
    cloud_fake.control(answer=LONG_ANSWER, hold=True)
    worst = (OUTPUT_CAP * PRICE["output"] + 300 * PRICE["input"]) / 1e6
    budget = 1.5 * worst
    with budgeted(local_fake, cloud_fake, budget) as server:
        done: list[Any] = []
        results = asyncio.ensure_future(fire(server, 100, done))
        deadline = time.monotonic() + 120
        while not results.done():
            held = len(await asyncio.to_thread(cloud_fake.requests))
            if len(done) + held >= 100:
                break
            assert time.monotonic() < deadline, f"{len(done)} answered, {held} held"
            await asyncio.sleep(0.05)
        await asyncio.to_thread(cloud_fake.control, hold=False)
        answers, refused = split(await results)
    assert len(answers) == 1
    assert len(refused) == 99
    assert sum(cost(a.usage) for a in answers) <= budget
    assert len(cloud_fake.requests()) == 1


async def test_unmetered_fields_count_tools_included(
    local_fake: FakeUpstream, cloud_fake: FakeUpstream
) -> None:
    """The issue's case: 100 concurrent requests with a 100 KB `tools` list and max_tokens 1
    against a US$ 0.0045 budget. Each costs ~US$ 0.06 at the provider (it bills the tools), so
    none may be sent."""
    cloud_fake.control(bill_whole_body=True)
    tool = {
        "type": "function",
        "function": {
            "name": "lookup",
            "description": "x " * 50_000,  # 100 KB
            "parameters": {"type": "object", "properties": {}},
        },
    }
    with budgeted(local_fake, cloud_fake, 0.0045) as server:
        answers, refused = split(await fire(server, 100, tools=[tool], max_tokens=1))
    assert sum(cost(a.usage) for a in answers) <= 0.0045
    assert answers == []
    assert len(refused) == 100
    assert cloud_fake.requests() == []


async def test_what_fits_is_still_sent(local_fake: FakeUpstream, cloud_fake: FakeUpstream) -> None:
    with budgeted(local_fake, cloud_fake, 1.0) as server:
        answers, refused = split(await fire(server, 5, max_tokens=50))
    assert len(answers) == 5 and refused == []


async def test_a_stalled_cloud_call_gives_its_reservation_back(
    local_fake: FakeUpstream, cloud_fake: FakeUpstream
) -> None:
    worst = (100 * PRICE["output"] + 300 * PRICE["input"]) / 1e6
    cloud_fake.control(delay_s=2.0)
    # timeouts must not open the breaker (a 503 then): three in a row are the point here
    never_down = {"interval_s": 60, "timeout_s": 5, "failure_threshold": 100, "cooldown_s": 1}
    with budgeted(local_fake, cloud_fake, 1.5 * worst, never_down, timeout_s=0.3) as server:
        for _ in range(3):
            (stalled,) = await fire(server, 1, max_tokens=100)
            assert isinstance(stalled, openai.APIStatusError)
            assert stalled.status_code == 504
            await released(server)
        cloud_fake.control(delay_s=0.0)
        (after,) = await fire(server, 1, max_tokens=100)
    # not "budget exhausted for the rest of the day": the next request is sent
    assert not isinstance(after, openai.APIStatusError), after
    assert after.choices[0].message.content.startswith("cloud:")


async def test_a_refused_connection_gives_its_reservation_back(
    local_fake: FakeUpstream, cloud_fake: FakeUpstream
) -> None:
    worst = (100 * PRICE["output"] + 300 * PRICE["input"]) / 1e6
    dead = FakeUpstream("dead", ["gpt-4o"])  # never started: connection refused
    settings = coordinator_settings(
        [
            {"name": "ollama", "kind": "local", "base_url": local_fake.base_url},
            {
                "name": "gone",
                "kind": "cloud",
                "base_url": dead.base_url,
                "models": ["gpt-4o"],
                "price_per_mtok": PRICE,
                "max_output_tokens": OUTPUT_CAP,
            },
        ],
        budgets={"daily_usd": 1.5 * worst, "on_exhausted": "reject"},
        health={"interval_s": 60, "timeout_s": 1, "failure_threshold": 100, "cooldown_s": 1},
    )
    with running(settings) as server:
        for _ in range(3):
            (result,) = await fire(server, 1, max_tokens=100)
            # unreachable each time, never "budget exhausted"
            assert isinstance(result, openai.APIStatusError)
            assert result.status_code in (502, 503), result
            await asyncio.sleep(0.2)


@pytest.mark.parametrize("n", [3])
async def test_n_choices_reserve_n_answers(
    local_fake: FakeUpstream, cloud_fake: FakeUpstream, n: int
) -> None:
    one = (100 * PRICE["output"] + 300 * PRICE["input"]) / 1e6
    with budgeted(local_fake, cloud_fake, 1.5 * one) as server:
        (single,) = await fire(server, 1, max_tokens=100)
        (several,) = await fire(server, 1, max_tokens=100, n=n)
    assert not isinstance(single, openai.APIStatusError)
    assert isinstance(several, openai.APIStatusError)  # 3 answers of 100 tokens do not fit

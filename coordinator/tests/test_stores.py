"""Response cache, rate limits and usage counters: in process, and shared through a real
Redis (started by the test) that may die and come back."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from hydra_coordinator.config import (
    ConfigError,
    RateLimitsConfig,
    check_secrets,
    redacted,
    settings_from_dict,
)
from hydra_coordinator.stores.cache import cache_eligible, cache_key, parse_cache_header
from hydra_coordinator.stores.limiter import MemoryLimiter, bucket_for

from .fixtures_redis import RedisServer
from .servers import CoordinatorServer, FakeUpstream, coordinator_settings, running

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


# --- pure logic --------------------------------------------------------------------------------


def test_cache_eligibility_and_header():
    assert cache_eligible({"temperature": 0}, False, None)
    assert cache_eligible({"temperature": 0.0}, False, None)
    assert not cache_eligible({"temperature": 0}, True, None)  # streams are never cached
    assert not cache_eligible({}, False, None)  # default temperature is not deterministic
    assert not cache_eligible({"temperature": 0.7}, False, None)
    assert cache_eligible({"temperature": 0.7}, False, True)
    assert not cache_eligible({"temperature": 0}, False, False)
    assert not cache_eligible({"temperature": False}, False, None)
    assert parse_cache_header("True") is True
    assert parse_cache_header(" false ") is False
    assert parse_cache_header("maybe") is None
    assert parse_cache_header(None) is None


def test_cache_key_covers_key_model_and_parameters_but_not_stream():
    body = {"model": "auto", "messages": QUESTION, "temperature": 0}
    assert cache_key("a", body) == cache_key("a", {**body, "stream": False})
    assert cache_key("a", body) == cache_key("a", dict(reversed(list(body.items()))))
    assert cache_key("a", body) != cache_key("b", body)
    assert cache_key(None, body) != cache_key("b", body)
    assert cache_key("a", body) != cache_key("a", {**body, "model": "gpt-4o"})
    assert cache_key("a", body) != cache_key("a", {**body, "max_tokens": 5})


def test_store_settings_are_checked(tmp_path):
    with pytest.raises(ConfigError, match=r"redis\.url: must start with redis://"):
        settings_from_dict({"redis": {"url": "http://localhost:6379"}})
    with pytest.raises(ConfigError, match=r"rate_limits\.keys\.k\.burst"):
        settings_from_dict({"rate_limits": {"keys": {"k": {"burst": 0}}}})
    with pytest.raises(ConfigError, match=r"cache\.ttl: unknown key"):
        settings_from_dict({"cache": {"ttl": 5}})
    settings = settings_from_dict({"redis": {"url": "redis://:hunter2@db:6379/1"}})
    assert redacted(settings)["redis"]["url"] == "redis://:***@db:6379/1"
    settings = settings_from_dict({"redis": {"password_file": str(tmp_path / "nope")}})
    with pytest.raises(ConfigError, match=r"redis\.password_file: cannot read secret file"):
        check_secrets(settings)


def test_bucket_defaults_and_overrides():
    config = RateLimitsConfig.model_validate(
        {
            "requests_per_minute": 60,
            "keys": {"vip": {"burst": 10}, "slow": {"requests_per_minute": 6}},
        }
    )
    assert bucket_for(RateLimitsConfig(), "anon") is None
    assert bucket_for(config, "anon") == bucket_for(config, "other")
    default = bucket_for(config, "anon")
    assert default is not None and default.rate == 1.0 and default.capacity == 60
    vip = bucket_for(config, "vip")
    assert vip is not None and vip.capacity == 10 and vip.rate == 1.0
    slow = bucket_for(config, "slow")
    assert slow is not None and slow.rate == pytest.approx(0.1) and slow.capacity == 6


def test_memory_limiter_refills():
    limiter = MemoryLimiter(RateLimitsConfig(requests_per_minute=600, burst=2))  # 10/s

    async def run() -> list[float | None]:
        first = [await limiter.acquire(None) for _ in range(3)]
        await asyncio.sleep(0.15)
        return [*first, await limiter.acquire(None), await limiter.acquire("other")]

    results = asyncio.run(run())
    assert results[:2] == [None, None]
    assert results[2] is not None and 0 < results[2] <= 0.1
    assert results[3] is None  # refilled
    assert results[4] is None  # another key has its own bucket


# --- over HTTP, with and without Redis ---------------------------------------------------------


def post(
    server: CoordinatorServer, body: dict[str, Any], headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(
        f"{server.url}/v1/chat/completions",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return (
                response.status,
                {k.lower(): v for k, v in response.headers.items()},
                (response.read()),
            )
    except urllib.error.HTTPError as err:
        return err.code, {k.lower(): v for k, v in err.headers.items()}, err.read()


def health(server: CoordinatorServer) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"{server.url}/health", timeout=5) as response:
            result: dict[str, Any] = json.loads(response.read())
    except urllib.error.HTTPError as err:
        result = json.loads(err.read())
    return result


def metric(server: CoordinatorServer, name: str, **labels: str) -> float:
    with urllib.request.urlopen(f"{server.url}/metrics", timeout=5) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def in_app(server: CoordinatorServer, coro: Any, timeout: float = 10.0) -> Any:
    """Run ``coro`` on the server's event loop (where its Redis and Qdrant clients live)."""
    task = server.runtime.stores.usage_sink._task
    assert task is not None
    return asyncio.run_coroutine_threadsafe(coro, task.get_loop()).result(timeout)


def wait_for(predicate: Any, timeout: float = 10.0, message: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{message} not reached in {timeout}s")
        time.sleep(0.05)


def chat_requests(fake: FakeUpstream) -> int:
    return sum(1 for r in fake.requests() if r["path"] == "/v1/chat/completions")


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.needs_server)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Extra settings: in-process stores, or a fresh redis-server."""
    if request.param == "memory":
        yield {}
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        yield {"redis": {"url": server.url, "retry_s": 0.3}}


def settings_for(fake: FakeUpstream, **extra: Any) -> Any:
    backend = {
        "name": "ollama",
        "kind": "local",
        "base_url": fake.base_url,
        "price_per_mtok": {"input": 1.0, "output": 2.0},
    }
    extra.setdefault("knowledge", {"enabled": False})
    return coordinator_settings([backend], **extra)


def test_deterministic_request_is_served_from_the_cache(local_fake, store):
    body = {"model": "auto", "messages": QUESTION, "temperature": 0}
    with running(settings_for(local_fake, **store)) as server:
        records: list[Any] = []
        server.runtime.recorder.sinks.append(SimpleNamespace(emit=records.append))
        status, headers, first = post(server, body)
        assert status == 200 and headers["x-hydra-cache"] == "miss"
        wait_for(lambda: metric(server, "hydra_cache_requests_total", result="miss") == 1)
        deadline = time.monotonic() + 5
        answers = [first]  # what was answered on a miss: one of them is cached
        while True:  # the answer is cached in the background
            status, headers, second = post(server, body)
            if headers.get("x-hydra-cache") == "hit" or time.monotonic() > deadline:
                break
            answers.append(second)  # a miss, while the first answer was being cached
            time.sleep(0.05)
        assert status == 200 and headers["x-hydra-cache"] == "hit"
        assert second in answers  # each carries its own "created" second
        assert headers["x-hydra-backend"] == "ollama" and headers["x-hydra-route"] == "local"
        assert len(headers["x-hydra-request-id"]) == 24
        assert metric(server, "hydra_cache_requests_total", result="hit") == 1
        hit = next(r for r in records if r.request_id == headers["x-hydra-request-id"])
        assert hit.cache_hit and hit.backend == "ollama" and hit.status == 200
        assert not any(r.cache_hit for r in records if r is not hit)
        misses = metric(server, "hydra_cache_requests_total", result="miss")
        assert chat_requests(local_fake) == misses  # every hit spared the upstream a call
        # streaming requests are never cached
        status, headers, _ = post(server, {**body, "stream": True})
        assert status == 200 and "x-hydra-cache" not in headers


def test_cache_opt_in_opt_out_and_ttl(local_fake, store):
    hot = {"model": "auto", "messages": QUESTION, "temperature": 0.9}
    with running(settings_for(local_fake, cache={"ttl_s": 0.6}, **store)) as server:
        # temperature > 0 is not cached unless the client asks
        assert "x-hydra-cache" not in post(server, hot)[1]
        assert "x-hydra-cache" not in post(server, hot)[1]
        assert chat_requests(local_fake) == 2
        opt_in = {"x-hydra-cache": "true"}
        assert post(server, hot, opt_in)[1]["x-hydra-cache"] == "miss"
        wait_for(lambda: post(server, hot, opt_in)[1]["x-hydra-cache"] == "hit", 3, "a hit")
        # x-hydra-cache: false bypasses the cache even for temperature 0
        cold = {**hot, "temperature": 0}
        post(server, cold)
        before = chat_requests(local_fake)
        status, headers, _ = post(server, cold, {"x-hydra-cache": "false"})
        assert status == 200 and "x-hydra-cache" not in headers
        assert chat_requests(local_fake) == before + 1
        # entries expire after the TTL
        time.sleep(0.7)
        assert post(server, hot, opt_in)[1]["x-hydra-cache"] == "miss"


def test_api_keys_never_share_cached_answers(local_fake, store, tmp_path):
    files = []
    for name in ("alice", "bob"):
        path = tmp_path / name
        path.write_text(f"key-of-{name}\n")
        files.append(str(path))
    settings = settings_for(local_fake, auth={"api_key_files": files}, **store)
    body = {"model": "auto", "messages": QUESTION, "temperature": 0}
    alice = {"authorization": "Bearer key-of-alice"}
    bob = {"authorization": "Bearer key-of-bob"}
    with running(settings) as server:
        assert post(server, body, alice)[1]["x-hydra-cache"] == "miss"
        wait_for(lambda: post(server, body, alice)[1]["x-hydra-cache"] == "hit", 3, "a hit")
        assert post(server, body, bob)[1]["x-hydra-cache"] == "miss"


def test_rate_limit_answers_429_with_retry_after(local_fake, store):
    limits = {"requests_per_minute": 6, "burst": 2, "keys": {"anon": {"burst": 3}}}
    with running(settings_for(local_fake, rate_limits=limits, **store)) as server:
        body = {"model": "auto", "messages": QUESTION}
        statuses = [post(server, body)[0] for _ in range(3)]
        assert statuses == [200, 200, 200]  # the per-key override: a burst of 3
        status, headers, raw = post(server, body)
        assert status == 429
        assert 1 <= int(headers["retry-after"]) <= 10
        error = json.loads(raw)["error"]
        assert error["type"] == "rate_limit_error" and error["code"] == "rate_limit_exceeded"
        assert chat_requests(local_fake) == 3


def test_usage_counters_count_requests_tokens_and_spend(local_fake, store):
    with running(settings_for(local_fake, **store)) as server:
        for _ in range(3):
            assert post(server, {"model": "auto", "messages": QUESTION})[0] == 200
        usage = server.runtime.usage

        def counted() -> bool:
            return bool(in_app(server, usage.usage("global", "daily")).requests == 3)

        wait_for(counted, message="3 requests counted")
        # the fake counts words: 6 prompt and 7 completion tokens; at 1 and 2 $/Mtok
        day = in_app(server, usage.usage("global", "daily"))
        assert day.tokens == 3 * 13
        assert day.cost_usd == pytest.approx(3 * (6 * 1.0 + 7 * 2.0) / 1e6)
        assert in_app(server, usage.spend("anon", "monthly")) == pytest.approx(day.cost_usd)
        assert in_app(server, usage.spend("someone-else", "daily")) == 0.0


# --- several replicas and a Redis that dies ---------------------------------------------------


@pytest.mark.needs_server
def test_two_replicas_share_one_rate_limit_and_counters(local_fake, redis_server):
    extra = {"redis": {"url": redis_server.url}, "rate_limits": {"requests_per_minute": 5}}
    with ExitStack() as stack:
        a = stack.enter_context(running(settings_for(local_fake, **extra)))
        b = stack.enter_context(running(settings_for(local_fake, **extra)))
        body = {"model": "auto", "messages": QUESTION}
        statuses = [post(server, body)[0] for server in (a, b) * 5]
        assert sorted(statuses) == [200] * 5 + [429] * 5
        assert chat_requests(local_fake) == 5

        def both_see_five() -> bool:
            return all(
                in_app(s, s.runtime.usage.usage("global", "daily")).requests == 5 for s in (a, b)
            )

        wait_for(both_see_five, message="both replicas count 5 requests")
        spend_a = in_app(a, a.runtime.usage.spend("anon", "daily"))
        assert spend_a > 0 and spend_a == in_app(b, b.runtime.usage.spend("anon", "daily"))


@pytest.mark.needs_server
def test_redis_killed_mid_run_keeps_requests_flowing(local_fake, redis_server):
    extra = {"redis": {"url": redis_server.url, "retry_s": 0.3, "timeout_s": 0.2}}
    body = {"model": "auto", "messages": QUESTION, "temperature": 0}
    with running(settings_for(local_fake, **extra)) as server:
        assert health(server)["dependencies"]["redis"] == "healthy"
        assert metric(server, "hydra_dependency_up", dependency="redis") == 1
        results: list[int] = []
        durations: list[float] = []
        stop = threading.Event()

        def loop() -> None:
            n = 0
            while not stop.is_set() and n < 400:
                n += 1
                question = [{"role": "user", "content": f"question {n % 7}"}]
                started = time.monotonic()
                status = post(server, {**body, "messages": question})[0]
                durations.append(time.monotonic() - started)
                results.append(status)

        worker = threading.Thread(target=loop)
        worker.start()
        wait_for(lambda: len(results) >= 10, message="10 requests")
        redis_server.kill()
        wait_for(lambda: health(server)["dependencies"]["redis"] == "down", 5, "redis down")
        report = health(server)
        assert report["status"] == "degraded"
        assert metric(server, "hydra_dependency_up", dependency="redis") == 0
        seen = len(results)
        wait_for(lambda: len(results) >= seen + 10, message="10 requests without Redis")
        redis_server.start()  # the same port
        wait_for(lambda: health(server)["status"] == "healthy", 10, "recovery")
        seen = len(results)
        wait_for(lambda: len(results) >= seen + 5, message="5 requests after recovery")
        stop.set()
        worker.join(timeout=30)
        assert results and set(results) == {200}
        assert max(durations) < 2  # a dead Redis never stalls a request
        # the cache works again, through Redis
        fresh = {**body, "messages": [{"role": "user", "content": "after the restart"}]}
        assert post(server, fresh)[1]["x-hydra-cache"] == "miss"
        wait_for(lambda: post(server, fresh)[1]["x-hydra-cache"] == "hit", 3, "a hit")
        assert b"hydra:cache:" in redis_server.command("KEYS", "hydra:cache:*")


@pytest.mark.needs_server
def test_usage_counted_while_redis_was_down_is_added_when_it_is_back(tmp_path):
    from hydra_coordinator.config import RedisConfig
    from hydra_coordinator.stores.redis_link import RedisLink
    from hydra_coordinator.stores.usage import RedisUsage

    server = RedisServer(tmp_path / "redis")  # not started yet
    link = RedisLink(RedisConfig(url=server.url, retry_s=0.05, timeout_s=0.2))
    usage = RedisUsage(link)

    async def run() -> None:
        await usage.add("k", 10, 0.5)  # Redis is down: kept in process
        assert link.status() == "down"
        assert await usage.spend("k", "daily") == 0.5
        server.start()
        try:
            await asyncio.sleep(0.1)
            assert await link.ping()  # back: the pending counts are flushed
            await usage.add("k", 5, 0.25)
            assert usage.pending.drain() == {}
            day = await usage.usage("k", "daily")
            assert (day.requests, day.tokens) == (2, 15)
            assert day.cost_usd == pytest.approx(0.75)
            assert await usage.spend("global", "monthly") == pytest.approx(0.75)
        finally:
            await link.stop()
            server.stop()

    asyncio.run(run())


@pytest.mark.needs_server
def test_redis_over_a_unix_socket(local_fake, tmp_path):
    """What the NixOS module's redis.createLocally configures."""
    server = RedisServer(tmp_path / "redis", unix_socket=True).start()
    try:
        body = {"model": "auto", "messages": QUESTION, "temperature": 0}
        with running(settings_for(local_fake, redis={"url": server.url})) as coordinator:
            assert health(coordinator)["dependencies"]["redis"] == "healthy"
            assert post(coordinator, body)[1]["x-hydra-cache"] == "miss"
            wait_for(lambda: post(coordinator, body)[1]["x-hydra-cache"] == "hit", 3, "a hit")
    finally:
        server.stop()

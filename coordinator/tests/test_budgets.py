"""Cloud budgets: enforced atomically, per key and globally, across replicas sharing Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import openai
import pytest

from hydra_coordinator.routing.budgets import reset_time

from .fixtures_redis import redis_server  # noqa: F401  (a fixture)
from .servers import (
    FakeUpstream,
    coordinator_settings,
    fetch,
    free_port,
    local_and_cloud_backends,
    running,
    wait_http,
)

# Each cloud answer is "a b": 2 completion tokens at $1 each; prompts are free. Requests ask for
# max_tokens=2, so the expected cost the coordinator reserves is $2 as well.
PRICE = {"input": 0.0, "output": 1_000_000.0}
MSG = [{"role": "user", "content": "hello"}]


@pytest.fixture
def fakes():
    local = FakeUpstream("local", ["llama"]).start()
    cloud = FakeUpstream("cloud", ["gpt-4o"]).start()
    cloud.control(answer="a b")
    yield local, cloud
    local.kill()
    cloud.kill()


def backends(local, cloud):
    return local_and_cloud_backends(local, cloud, PRICE)


def ask(url: str, key: str = "x", model: str = "cloud"):
    with openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0) as client:
        raw = client.chat.completions.with_raw_response.create(
            model=model, messages=MSG, max_tokens=2
        )
    return raw.headers["x-hydra-route"]


def settled(server, expected: float) -> None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        spent = server.runtime.budgets.memory.spent
        if spent and abs(max(spent.values()) - expected) < 1e-9:
            return
        time.sleep(0.02)


def test_exhausted_budget_routes_local(fakes, tmp_path):
    local, cloud = fakes
    settings = coordinator_settings(
        backends(local, cloud), state_dir=str(tmp_path), budgets={"daily_usd": 5}
    )
    with running(settings) as server:
        assert [ask(server.url) for _ in range(2)] == ["cloud", "cloud"]
        settled(server, 4.0)
        assert ask(server.url) == "local"  # $4 spent + $2 expected > $5
        assert len(cloud.requests()) == 2
        request = urllib.request.Request(
            f"{server.url}/route",
            data=json.dumps({"query": "hi", "context": {"model": "cloud"}}).encode(),
        )
        decision = json.loads(fetch(request))
        assert decision["route"] == "local"
        assert any("daily cloud budget (global) of $5" in r for r in decision["reasons"])
        metrics = fetch(f"{server.url}/metrics").decode()
        assert 'hydra_budget_limit_usd{period="daily",scope="global"} 5.0' in metrics
        assert 'hydra_budget_spent_usd{period="daily",scope="global"} 4.0' in metrics
        deadline = time.monotonic() + 10  # telemetry is written in the background
        while True:
            budgets = server.run(server.runtime.telemetry.stats(3600))["budgets"]
            if (budgets and budgets[0]["spent_usd"] == 4.0) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert budgets == [
            {
                "scope": "global",
                "period": "daily",
                "limit_usd": 5.0,
                "spent_usd": 4.0,
                "remaining_usd": 1.0,
                "resets_at": time.strftime(
                    "%Y-%m-%dT%H:%M:%SZ", time.gmtime(reset_time("daily", time.time()))
                ),
            }
        ]


def test_reject_policy_answers_429_with_the_budget_and_reset(fakes, tmp_path):
    local, cloud = fakes
    settings = coordinator_settings(
        backends(local, cloud),
        state_dir=str(tmp_path),
        budgets={"monthly_usd": 3, "on_exhausted": "reject"},
    )
    with running(settings) as server:
        assert ask(server.url) == "cloud"
        with pytest.raises(openai.RateLimitError) as caught:
            ask(server.url)
        body = caught.value.body
        assert isinstance(body, dict)
        message = body["message"]
        assert "monthly cloud budget (global) of $3 is exhausted" in message
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(reset_time("monthly", time.time())))
        assert stamp in message
        assert int(caught.value.response.headers["retry-after"]) > 0
        assert caught.value.code == "budget_exhausted"
        assert ask(server.url, model="local") == "local"  # local requests are not limited


def test_per_key_budgets(fakes, tmp_path):
    local, cloud = fakes
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "a").write_text("key-a")
    (keys / "b").write_text("key-b")
    settings = coordinator_settings(
        backends(local, cloud),
        state_dir=str(tmp_path),
        auth={"api_key_files": [str(keys / "a"), str(keys / "b")]},
        budgets={"per_key": {"daily_usd": 3}},
    )
    with running(settings) as server:
        assert ask(server.url, "key-a") == "cloud"
        settled(server, 2.0)
        assert ask(server.url, "key-a") == "local"  # key a's $3 would be exceeded
        assert ask(server.url, "key-b") == "cloud"  # key b has its own budget


def _serve(config: dict, tmp_path, name: str) -> tuple[subprocess.Popen[bytes], str]:
    path = tmp_path / f"{name}.json"
    port = free_port()
    path.write_text(
        json.dumps(
            {
                **config,
                "listen": {"host": "127.0.0.1", "port": port},
                "state_dir": str(tmp_path / name),
            }
        )
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "hydra_coordinator", "serve", "--config", str(path)],
        env={**os.environ},
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/health", process=process)
    return process, url


@pytest.mark.needs_server
def test_two_processes_sharing_redis_enforce_one_budget(fakes, redis_server, tmp_path):  # noqa: F811
    local, cloud = fakes
    config = {
        "backends": backends(local, cloud),
        # generous for a loaded machine: a Redis command that timed out (0.25 s by default) would
        # fall back to the process's own counter, and a privacy scan past its CPU budget
        # (10 ms) would keep the request local
        "redis": {"url": redis_server.url, "timeout_s": 10},
        "privacy": {"scan_cpu_ms": 1000},
        "budgets": {"daily_usd": 5, "on_exhausted": "reject"},
        "health": {"interval_s": 0.5, "timeout_s": 30},
        "log": {"level": "warning", "access": False},
    }
    a, url_a = _serve(config, tmp_path, "a")
    b, url_b = _serve(config, tmp_path, "b")
    try:
        assert ask(url_a) == "cloud"  # $2
        assert ask(url_b) == "cloud"  # $4, seen by both through Redis
        for url in (url_a, url_b):
            with pytest.raises(openai.RateLimitError):
                ask(url)  # $4 + $2 > $5, whichever replica is asked
        assert len(cloud.requests()) == 2
        day = time.strftime("%Y-%m-%d", time.gmtime())
        reply = redis_server.command("GET", f"hydra:budget:daily:{day}:global")  # RESP bulk
        spent = float(reply.split(b"\r\n")[1])
        assert spent == pytest.approx(4.0)
    finally:
        for process in (a, b):
            process.terminate()
            process.wait(timeout=15)

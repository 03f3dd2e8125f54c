"""The knowledge base on the request path: the semantic cache and neighbours for routing."""

from __future__ import annotations

import json
import time
import urllib.request

import openai
import pytest

from .servers import FakeUpstream, coordinator_settings, fetch, running

QUESTION = "What is the boiling point of water at sea level?"


@pytest.fixture
def local():
    fake = FakeUpstream("local", ["llama"]).start()
    yield fake
    fake.kill()


def keyed_settings(local, tmp_path, **extra):
    keys = tmp_path / "keys"
    keys.mkdir(exist_ok=True)
    (keys / "a").write_text("key-a")
    (keys / "b").write_text("key-b")
    return coordinator_settings(
        [{"name": "ollama", "kind": "local", "base_url": local.base_url}],
        state_dir=str(tmp_path / "state"),
        auth={"api_key_files": [str(keys / "a"), str(keys / "b")]},
        **extra,
    )


def ask(server, key: str, text: str = QUESTION):
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0) as client:
        return client.chat.completions.with_raw_response.create(
            model="auto", messages=[{"role": "user", "content": text}]
        )


def rate(server, key: str, request_id: str, rating: float) -> None:
    request = urllib.request.Request(
        f"{server.url}/v1/feedback",
        data=json.dumps({"request_id": request_id, "rating": rating}).encode(),
        headers={"authorization": f"Bearer {key}", "content-type": "application/json"},
    )
    fetch(request)


def wait_stored(server, key_id: str, rated: bool) -> None:
    """Until the answer is in the knowledge base (stored in the background), rated or not."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        found = server.run(server.runtime.knowledge.search(QUESTION, 5, key_id))
        if any((f["rating"] is not None) == rated for f in found):
            return
        time.sleep(0.1)
    raise AssertionError("the answer did not reach the knowledge base")


def key_id(key: str) -> str:
    from hydra_coordinator.auth import key_id as digest

    return digest(key)


def test_semantic_cache_serves_a_rated_near_duplicate(local, tmp_path):
    settings = keyed_settings(local, tmp_path, cache={"semantic": {"enabled": True}})
    with running(settings) as server:
        first = ask(server, "key-a")
        assert first.headers.get("x-hydra-cache") != "semantic"
        wait_stored(server, key_id("key-a"), rated=False)
        again = ask(server, "key-a")  # stored but not rated yet: not served from the KB
        assert again.headers.get("x-hydra-cache") != "semantic"
        rate(server, "key-a", first.headers["x-hydra-request-id"], 1)
        wait_stored(server, key_id("key-a"), rated=True)
        hit = ask(server, "key-a")
        assert hit.headers["x-hydra-cache"] == "semantic"
        assert float(hit.headers["x-hydra-similarity"]) >= 0.95
        assert hit.parse().choices[0].message.content == f"local: {QUESTION}"
        assert len(local.requests()) == 2  # the hit never reached the upstream
        other = ask(server, "key-b")  # never across API keys
        assert other.headers.get("x-hydra-cache") != "semantic"
        assert len(local.requests()) == 3


def test_semantic_cache_is_off_by_default(local, tmp_path):
    with running(keyed_settings(local, tmp_path)) as server:
        first = ask(server, "key-a")
        wait_stored(server, key_id("key-a"), rated=False)
        rate(server, "key-a", first.headers["x-hydra-request-id"], 1)
        wait_stored(server, key_id("key-a"), rated=True)
        assert ask(server, "key-a").headers.get("x-hydra-cache") != "semantic"
        assert len(local.requests()) == 2


def test_rated_neighbours_weigh_in_on_learned_routing(local, tmp_path):
    settings = keyed_settings(
        local, tmp_path, routing={"knowledge_neighbours": True, "knowledge_timeout_s": 2}
    )
    with running(settings) as server:
        first = ask(server, "key-a")
        wait_stored(server, key_id("key-a"), rated=False)
        rate(server, "key-a", first.headers["x-hydra-request-id"], 1)
        wait_stored(server, key_id("key-a"), rated=True)
        request = urllib.request.Request(
            f"{server.url}/route",
            data=json.dumps({"query": QUESTION}).encode(),
            headers={"authorization": "Bearer key-a", "content-type": "application/json"},
        )
        reasons = json.loads(fetch(request))["reasons"]
        assert any("similar past queries: 'ollama' +" in r for r in reasons), reasons


def test_a_repeated_answer_is_stored_once_and_rating_the_repeat_rates_it(local, tmp_path):
    with running(keyed_settings(local, tmp_path)) as server:
        ask(server, "key-a")
        repeat = ask(server, "key-a")
        server.run(server.runtime.knowledge.drain())
        found = server.run(server.runtime.knowledge.search(QUESTION, 5, key_id("key-a")))
        assert len(found) == 1
        rate(server, "key-a", repeat.headers["x-hydra-request-id"], 1)
        wait_stored(server, key_id("key-a"), rated=True)
        ask(server, "key-b")  # another key: its own entry
        server.run(server.runtime.knowledge.drain())
        assert len(server.run(server.runtime.knowledge.search(QUESTION, 5, None))) == 2

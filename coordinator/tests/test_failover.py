"""Failover: a dead or failing upstream is skipped before the first byte; a mid-stream death
ends the stream with an error event; the breaker opens and closes again."""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest

from .servers import FakeUpstream, coordinator_settings, fetch, running

MSG = [{"role": "user", "content": "hello"}]


@pytest.fixture
def pair():
    a = FakeUpstream("local-a", ["shared"]).start()
    b = FakeUpstream("cloud-b", ["shared"]).start()
    settings = coordinator_settings(
        [
            {"name": "a", "kind": "local", "base_url": a.base_url},
            {"name": "b", "kind": "cloud", "base_url": b.base_url},
        ]
    )
    with running(settings) as server:
        yield server, a, b
    a.kill()
    b.kill()


@pytest.fixture
def api(pair):
    """The official client of the pair's coordinator, closed after the test (an unclosed
    connection pool is a ResourceWarning in whichever test runs when it is collected)."""
    with openai.OpenAI(base_url=f"{pair[0].url}/v1", api_key="x", max_retries=0) as client:
        yield client


def test_killed_upstream_fails_over(pair, api):
    server, a, _b = pair
    assert (
        api.chat.completions.with_raw_response.create(model="auto", messages=MSG).headers[
            "x-hydra-backend"
        ]
        == "a"
    )
    a.kill()
    for _ in range(3):  # before and after the health prober notices
        raw = api.chat.completions.with_raw_response.create(model="auto", messages=MSG)
        assert raw.headers["x-hydra-backend"] == "b"
        assert raw.parse().choices[0].message.content == "cloud-b: hello"
    server.wait_backend("a", "down")
    health = json.loads(fetch(f"{server.url}/health"))
    assert health["status"] == "degraded"
    assert health["backends"] == {"a": "down", "b": "healthy"}
    metrics = fetch(f"{server.url}/metrics").decode()
    assert 'hydra_backend_up{backend="a"} 0.0' in metrics
    assert 'hydra_upstream_errors_total{backend="a",kind="connect"}' in metrics


def test_recovery_after_restart(pair, api):
    server, a, _ = pair
    port = a.port
    a.kill()
    server.wait_backend("a", "down")
    a.port = port
    a.start()
    server.wait_backend("a", "healthy")
    raw = api.chat.completions.with_raw_response.create(model="auto", messages=MSG)
    assert raw.headers["x-hydra-backend"] == "a"


def test_5xx_before_first_byte_retries_next(pair, api):
    _server, a, b = pair
    a.control(fail_status=500)
    raw = api.chat.completions.with_raw_response.create(model="auto", messages=MSG)
    assert raw.headers["x-hydra-backend"] == "b"
    assert len(a.requests()) == 1 and len(b.requests()) == 1


def test_streaming_failover_before_first_byte(pair, api):
    _server, a, _ = pair
    a.control(fail_status=503)
    chunks = list(api.chat.completions.create(model="auto", messages=MSG, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "cloud-b: hello"


def test_death_mid_stream_ends_with_error_event(pair, api):
    _server, a, _ = pair
    a.control(chunks=6, die_after_chunks=2, answer="one two three four five six")
    received = []
    with pytest.raises(openai.APIError) as caught:  # the client sees the error event
        for chunk in api.chat.completions.create(model="local", messages=MSG, stream=True):
            received.append(chunk)
    assert received, "chunks before the failure were passed through"
    assert "mid-stream" in str(caught.value)


def test_all_failing_passes_the_last_upstream_error(pair, api):
    _server, a, b = pair
    a.control(fail_status=502)
    b.control(fail_status=500)
    with pytest.raises(openai.InternalServerError) as caught:
        api.chat.completions.create(model="auto", messages=MSG)
    assert caught.value.status_code == 500
    assert "cloud-b failing on purpose" in str(caught.value)


def test_a_client_leaving_mid_stream_frees_the_backend(pair):
    server, a, _ = pair
    a.control(chunks=20, chunk_delay_s=0.2, answer=" ".join(["word"] * 20))
    body = {"model": "local", "stream": True, "messages": MSG}
    with (
        httpx.Client(timeout=10) as http,
        http.stream("POST", f"{server.url}/v1/chat/completions", json=body) as response,
    ):
        chunks = response.iter_bytes()  # kept: dropping the iterator closes the response
        assert next(chunks)  # the stream has started
        assert server.runtime.pool["a"].in_flight == 1
    deadline = time.monotonic() + 3  # well before the upstream's 4 s of chunks end
    while server.runtime.pool["a"].in_flight and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.runtime.pool["a"].in_flight == 0

"""The HTTP API through the official openai client, against fake upstreams on loopback."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.error
import urllib.request

import openai
from prometheus_client.parser import text_string_to_metric_families

from .servers import CoordinatorServer, fetch

SIMPLE = [{"role": "user", "content": "What is the capital of France?"}]
HARD = [
    {
        "role": "user",
        "content": (
            "Design the architecture for a multi-region database, compare the trade-offs of "
            "consensus protocols step by step and prove the invariants:\n"
            "```python\ndef commit(): ...\n```"
        ),
    }
]


def client(server: CoordinatorServer) -> openai.OpenAI:
    return server.client()


def async_client(server: CoordinatorServer) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


def post(
    url: str, data: bytes, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(
        url, data=data, headers={"content-type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, dict(err.headers), err.read()


def test_simple_request_goes_local(coordinator, local_fake, cloud_fake):
    raw = client(coordinator).chat.completions.with_raw_response.create(
        model="auto", messages=SIMPLE
    )
    completion = raw.parse()
    assert raw.headers["x-hydra-route"] == "local"
    assert raw.headers["x-hydra-backend"] == "ollama"
    assert len(raw.headers["x-hydra-request-id"]) == 24
    assert completion.choices[0].message.content == "local: What is the capital of France?"
    # the virtual model is replaced by one the backend serves (discovered from its /models)
    assert local_fake.requests()[-1]["body"]["model"] == "llama-3.1-8b"
    assert cloud_fake.requests() == []


def test_hard_request_goes_to_cloud(coordinator, cloud_fake):
    raw = client(coordinator).chat.completions.with_raw_response.create(model="auto", messages=HARD)
    assert raw.headers["x-hydra-route"] == "cloud"
    assert raw.parse().choices[0].message.content.startswith("cloud: Design")
    assert cloud_fake.requests()[-1]["body"]["model"] == "gpt-4o"


def test_upstream_body_comes_back_unchanged(coordinator, local_fake):
    status, _, body = post(
        f"{coordinator.url}/v1/chat/completions",
        json.dumps({"model": "llama-3.1-8b", "messages": SIMPLE}).encode(),
    )
    assert status == 200
    direct = fetch(
        urllib.request.Request(
            f"{local_fake.base_url}/chat/completions",
            data=json.dumps({"model": "llama-3.1-8b", "messages": SIMPLE}).encode(),
            headers={"content-type": "application/json"},
        )
    )
    strip = lambda b: {k: v for k, v in json.loads(b).items() if k != "created"}  # noqa: E731
    assert strip(body) == strip(direct)
    assert body.startswith(b'{"id": "chatcmpl-fake"')  # the upstream's own serialisation


def test_forced_classes_and_concrete_models(coordinator):
    c = client(coordinator)
    assert (
        c.chat.completions.with_raw_response.create(model="cloud", messages=SIMPLE).headers[
            "x-hydra-backend"
        ]
        == "openai"
    )
    assert (
        c.chat.completions.with_raw_response.create(model="local", messages=HARD).headers[
            "x-hydra-backend"
        ]
        == "ollama"
    )
    raw = c.chat.completions.with_raw_response.create(model="gpt-4o", messages=SIMPLE)
    assert raw.headers["x-hydra-route"] == "cloud"
    assert raw.parse().model == "gpt-4o"


def test_streaming_sync(coordinator, local_fake):
    local_fake.control(chunks=5)
    with client(coordinator).chat.completions.with_streaming_response.create(
        model="local", messages=SIMPLE, stream=True
    ) as response:
        assert response.headers["x-hydra-backend"] == "ollama"
        pieces = [
            chunk.choices[0].delta.content or "" for chunk in response.parse() if chunk.choices
        ]
    assert "".join(pieces) == "local: What is the capital of France?"
    assert len(pieces) >= 5


async def test_streaming_and_plain_async(coordinator):
    c = async_client(coordinator)
    stream = await c.chat.completions.create(
        model="auto", messages=SIMPLE, stream=True, stream_options={"include_usage": True}
    )
    text, usage = "", None
    async for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
        if chunk.usage:
            usage = chunk.usage
    assert text == "local: What is the capital of France?"
    assert usage is not None and usage.prompt_tokens > 0
    completion = await c.chat.completions.create(model="auto", messages=SIMPLE)
    assert completion.choices[0].message.content.startswith("local:")
    await c.close()


def test_stream_chunks_are_not_buffered(coordinator, local_fake):
    # The upstream sends its first piece, then stops until told to go on. A relay that buffered
    # would hand over nothing before the end: the client would wait for its read timeout.
    local_fake.control(chunks=4, pause_after_chunks=1)
    patient = openai.OpenAI(
        base_url=f"{coordinator.url}/v1", api_key="unused", max_retries=0, timeout=60
    )
    with (
        patient,
        patient.chat.completions.create(model="local", messages=SIMPLE, stream=True) as stream,
    ):
        chunks = iter(stream)
        assert next(chunks).choices[0].delta.role == "assistant"
        first = next(chunks).choices[0].delta.content
        local_fake.control(pause_after_chunks=-1)  # the rest, only now
        rest = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert first and first.startswith("local: ")
    assert first + rest == "local: What is the capital of France?"


def test_models_lists_virtual_and_backend_models(coordinator):
    ids = [m.id for m in client(coordinator).models.list()]
    assert ids[:3] == ["auto", "local", "cloud"]
    assert {"llama-3.1-8b", "qwen2.5-coder", "gpt-4o"} <= set(ids)


def test_route_endpoint_calls_no_model(coordinator, local_fake, cloud_fake):
    status, _, body = post(
        f"{coordinator.url}/route", json.dumps({"query": "hello", "context": {}}).encode()
    )
    decision = json.loads(body)
    assert status == 200
    assert decision["route"] == "local" and decision["backend"] == "ollama"
    assert 0 <= decision["confidence"] <= 1 and decision["reasons"]
    hard = json.loads(
        post(f"{coordinator.url}/route", json.dumps({"query": HARD[0]["content"]}).encode())[2]
    )
    assert hard["route"] == "cloud" and hard["local_confidence"] < 0.7
    assert hard["confidence"] > 0.5  # the confidence in the route it took
    assert any("code" in r for r in hard["reasons"])
    assert local_fake.requests() == [] and cloud_fake.requests() == []


def test_health(coordinator):
    with urllib.request.urlopen(f"{coordinator.url}/health") as response:
        report = json.loads(response.read())
    assert report["status"] == "healthy"
    assert report["service"] == "hybrid-coordinator"
    assert report["backends"] == {"ollama": "healthy", "openai": "healthy"}
    assert isinstance(report["dependencies"], dict)


def test_metrics_after_traffic(coordinator):
    client(coordinator).chat.completions.create(model="gpt-4o", messages=SIMPLE)
    text = fetch(f"{coordinator.url}/metrics").decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name in (
        "hydra_requests",
        "hydra_request_duration_seconds",
        "hydra_time_to_first_token_seconds",
        "hydra_upstream_errors",
        "hydra_backend_queue_depth",
        "hydra_backend_in_flight",
        "hydra_backend_up",
        "hydra_tokens",
        "hydra_cost_usd",
        "hydra_route_decisions",
    ):
        assert name in families, name
    requests = {
        tuple(sorted(s.labels.items())): s.value
        for s in families["hydra_requests"].samples
        if s.name == "hydra_requests_total"
    }
    assert requests[(("backend", "openai"), ("route", "cloud"), ("status", "200"))] >= 1
    cost = [
        s.value
        for s in families["hydra_cost_usd"].samples
        if s.name == "hydra_cost_usd_total" and s.labels["backend"] == "openai"
    ]
    assert cost and cost[0] > 0
    up = {s.labels["backend"]: s.value for s in families["hydra_backend_up"].samples}
    assert up == {"ollama": 1.0, "openai": 1.0}


def test_metrics_include_the_process(coordinator):
    text = fetch(f"{coordinator.url}/metrics").decode()
    samples = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}
    assert samples["process_resident_memory_bytes"] > 0
    assert samples["process_open_fds"] > 0
    assert "process_cpu_seconds_total" in samples


def test_metrics_pass_promtool(coordinator):
    assert shutil.which("promtool"), "promtool is needed (tests/run installs Debian's prometheus)"
    client(coordinator).chat.completions.create(model="auto", messages=SIMPLE)
    text = fetch(f"{coordinator.url}/metrics")
    result = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, check=False
    )
    assert result.returncode == 0, result.stderr.decode() + result.stdout.decode()

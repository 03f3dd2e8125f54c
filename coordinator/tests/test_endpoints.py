"""The OpenAI endpoints besides chat, through the official openai client: /v1/embeddings,
/v1/completions (legacy), a clear 404 for what is not served, and each backend's default model."""

from __future__ import annotations

import json
import sqlite3
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from openai import OpenAI

from hydra_coordinator.config import ConfigError, settings_from_dict

from .servers import CoordinatorServer, FakeUpstream, coordinator_settings, fetch, running

AWS = "AKIA2E0A8F3B244C9986"  # the shape of an AWS access key id
KEY = "sk-hydra-endpoints-test"


@pytest.fixture(scope="module")
def ollama() -> Iterator[FakeUpstream]:
    fake = FakeUpstream("ollama", ["llama3.2", "qwen3:8b", "nomic-embed-text"]).start()
    yield fake
    fake.kill()


@pytest.fixture(scope="module")
def tei() -> Iterator[FakeUpstream]:
    """An embeddings-only server: no /v1/models, health at /info (text-embeddings-inference)."""
    fake = FakeUpstream("tei", ["BAAI/bge-small-en-v1.5"]).start()
    yield fake
    fake.kill()


@pytest.fixture(scope="module")
def openai_fake() -> Iterator[FakeUpstream]:
    fake = FakeUpstream("cloud", ["gpt-4o", "text-embedding-3-small"]).start()
    yield fake
    fake.kill()


def backends(ollama: FakeUpstream, tei: FakeUpstream, cloud: FakeUpstream) -> list[dict[str, Any]]:
    return [
        {
            "name": "ollama",
            "kind": "local",
            "base_url": ollama.base_url,
            "default_model": "qwen3:8b",
            "embedding_models": ["nomic-embed-text"],
        },
        {
            "name": "tei",
            "kind": "local",
            "base_url": f"{tei.url}/v1",
            "probe_url": f"{tei.url}/info",
            "embedding_models": ["BAAI/bge-small-en-v1.5"],
        },
        {
            "name": "openai",
            "kind": "cloud",
            "base_url": cloud.base_url,
            "models": ["gpt-4o"],
            "embedding_models": ["text-embedding-3-small"],
            "price_per_mtok": {"input": 0.02, "output": 0},
        },
    ]


@pytest.fixture(scope="module")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("keys") / "client-keys"
    path.write_text(KEY + "\n")
    return path


@pytest.fixture(scope="module")
def coordinator(
    ollama: FakeUpstream, tei: FakeUpstream, openai_fake: FakeUpstream, key_file: Path
) -> Iterator[CoordinatorServer]:
    settings = coordinator_settings(
        backends(ollama, tei, openai_fake),
        auth={"api_key_files": [str(key_file)]},
        telemetry={"flush_interval_s": 0.1},
    )
    with running(settings) as server:
        yield server


@pytest.fixture(autouse=True)
def _clean(ollama: FakeUpstream, tei: FakeUpstream, openai_fake: FakeUpstream) -> None:
    for fake in (ollama, tei, openai_fake):
        if fake.process is not None:
            fake.reset()


def client(server: CoordinatorServer, key: str = KEY) -> OpenAI:
    return server.client(key)


def sent(fake: FakeUpstream, path: str) -> list[dict[str, Any]]:
    return [r for r in fake.requests() if r["path"] == path]


# --- /v1/embeddings ----------------------------------------------------------------------------


def test_embeddings_auto_go_to_the_first_local_embedding_model(
    coordinator: CoordinatorServer, ollama: FakeUpstream, openai_fake: FakeUpstream
) -> None:
    response = client(coordinator).embeddings.with_raw_response.create(
        model="auto", input=["first text", "second text"]
    )
    result = response.parse()
    assert [d.index for d in result.data] == [0, 1]
    assert len(result.data[0].embedding) == 16
    assert response.headers["x-hydra-backend"] == "ollama"
    assert response.headers["x-hydra-route"] == "local"
    [request] = sent(ollama, "/v1/embeddings")
    assert request["body"]["model"] == "nomic-embed-text"
    assert request["body"]["input"] == ["first text", "second text"]
    assert sent(openai_fake, "/v1/embeddings") == []


def test_embeddings_by_model_name_and_class(
    coordinator: CoordinatorServer, tei: FakeUpstream, openai_fake: FakeUpstream
) -> None:
    api = client(coordinator)
    by_name = api.embeddings.with_raw_response.create(model="BAAI/bge-small-en-v1.5", input="hi")
    assert by_name.headers["x-hydra-backend"] == "tei"
    assert sent(tei, "/v1/embeddings")[0]["body"]["model"] == "BAAI/bge-small-en-v1.5"
    cloud = api.embeddings.with_raw_response.create(model="cloud", input="hello there")
    assert cloud.headers["x-hydra-backend"] == "openai"
    [request] = sent(openai_fake, "/v1/embeddings")
    assert request["body"]["model"] == "text-embedding-3-small"


def test_an_embedding_request_with_a_secret_never_goes_to_the_cloud(
    coordinator: CoordinatorServer, ollama: FakeUpstream, openai_fake: FakeUpstream
) -> None:
    api = client(coordinator)
    for model in ("cloud", "text-embedding-3-small"):
        response = api.embeddings.with_raw_response.create(
            model=model, input=["harmless", f"aws_access_key_id = {AWS}"]
        )
        assert response.headers["x-hydra-route"] == "local", model
    assert sent(openai_fake, "/v1/embeddings") == []
    assert len(sent(ollama, "/v1/embeddings")) == 2


def test_embeddings_share_auth_and_errors(coordinator: CoordinatorServer) -> None:
    with pytest.raises(openai.AuthenticationError):
        client(coordinator, key="wrong").embeddings.create(model="auto", input="x")
    with pytest.raises(openai.NotFoundError, match="does not exist on any backend"):
        client(coordinator).embeddings.create(model="no-such-model", input="x")
    with pytest.raises(openai.BadRequestError, match="'input' must be"):
        client(coordinator).embeddings.create(model="auto", input=[])


def test_embeddings_are_counted_and_recorded(coordinator: CoordinatorServer) -> None:
    client(coordinator).embeddings.create(model="auto", input="count me")
    metrics = fetch(f"{coordinator.url}/metrics").decode()
    assert 'hydra_requests_total{backend="ollama",route="local",status="200"}' in metrics
    rows = telemetry_rows(coordinator, "embeddings")
    assert rows and rows[-1][:2] == ("ollama", "nomic-embed-text")


def telemetry_rows(server: CoordinatorServer, endpoint: str) -> list[tuple[Any, ...]]:
    database = Path(server.settings.state_dir or "") / "telemetry.sqlite3"
    deadline = time.monotonic() + 10
    while True:
        with sqlite3.connect(database) as db:
            rows = db.execute(
                "SELECT backend, model, prompt_tokens FROM telemetry "
                "WHERE endpoint = ? AND status = 200",
                (endpoint,),
            ).fetchall()
        if rows or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


# --- /v1/completions (legacy) ------------------------------------------------------------------


def test_legacy_completions_are_routed_like_chat(
    coordinator: CoordinatorServer, ollama: FakeUpstream
) -> None:
    response = client(coordinator).completions.with_raw_response.create(
        model="auto", prompt="Say hello"
    )
    assert response.parse().choices[0].text == "ollama: Say hello"
    assert response.headers["x-hydra-route"] == "local"
    [request] = sent(ollama, "/v1/completions")
    assert request["body"]["model"] == "qwen3:8b"  # the backend's default_model
    assert telemetry_rows(coordinator, "completions")


def test_legacy_completions_stream(coordinator: CoordinatorServer) -> None:
    stream = client(coordinator).completions.create(
        model="local", prompt="one two three", stream=True
    )
    assert "".join(chunk.choices[0].text for chunk in stream) == "ollama: one two three"


def test_a_legacy_completion_with_a_secret_stays_local(
    coordinator: CoordinatorServer, openai_fake: FakeUpstream
) -> None:
    response = client(coordinator).completions.with_raw_response.create(
        model="cloud", prompt=f"debug this: AWS_ACCESS_KEY_ID={AWS}"
    )
    assert response.headers["x-hydra-route"] == "local"
    assert openai_fake.requests() == []


# --- unsupported endpoints ---------------------------------------------------------------------


def test_unsupported_endpoints_say_so(coordinator: CoordinatorServer) -> None:
    api = client(coordinator)
    with pytest.raises(openai.NotFoundError) as responses:
        api.responses.create(model="auto", input="hi")
    assert "POST /v1/responses (the Responses API) is not supported" in str(responses.value)
    assert responses.value.code == "unsupported_endpoint"
    with pytest.raises(openai.NotFoundError, match=r"/v1/images/generations \(image generation"):
        api.images.generate(prompt="a cat")
    with pytest.raises(openai.NotFoundError, match="/v1/audio/speech"):
        api.audio.speech.create(model="tts-1", voice="alloy", input="hi")


def test_unsupported_endpoints_still_need_a_key(coordinator: CoordinatorServer) -> None:
    with pytest.raises(openai.AuthenticationError):
        client(coordinator, key="wrong").responses.create(model="auto", input="hi")


# --- which model a backend is asked for ------------------------------------------------------


def test_default_model_and_the_first_model(
    coordinator: CoordinatorServer, ollama: FakeUpstream, openai_fake: FakeUpstream
) -> None:
    api = client(coordinator)
    api.chat.completions.create(model="local", messages=[{"role": "user", "content": "hi"}])
    [local] = sent(ollama, "/v1/chat/completions")
    assert local["body"]["model"] == "qwen3:8b"  # default_model, not the first listed
    api.chat.completions.create(model="cloud", messages=[{"role": "user", "content": "hi"}])
    [cloud] = sent(openai_fake, "/v1/chat/completions")
    assert cloud["body"]["model"] == "gpt-4o"  # no default_model: the first chat model


def test_an_embeddings_only_backend_takes_no_chat(
    coordinator: CoordinatorServer, tei: FakeUpstream
) -> None:
    coordinator.wait_backend("tei", "healthy")  # probed at /info: it has no /v1/models
    api = client(coordinator)
    for _ in range(5):
        api.chat.completions.create(model="local", messages=[{"role": "user", "content": "x"}])
    assert sent(tei, "/v1/chat/completions") == []
    ids = [m.id for m in api.models.list()]
    assert {"nomic-embed-text", "BAAI/bge-small-en-v1.5", "text-embedding-3-small"} <= set(ids)
    route = urllib.request.Request(
        f"{coordinator.url}/route",
        data=json.dumps({"query": "hi", "context": {}}).encode(),
        headers={"authorization": f"Bearer {KEY}", "content-type": "application/json"},
    )
    assert "tei" not in json.loads(fetch(route))["candidates"]


@pytest.mark.parametrize(
    ("backend", "message"),
    [
        ({"models": ["a", "b"], "default_model": "c"}, "default_model 'c' is not one of models"),
        ({"embedding_models": ["e"], "default_model": "e"}, "is one of embedding_models"),
        ({"probe_url": "ftp://x"}, "probe_url"),
    ],
)
def test_bad_model_settings_are_rejected(backend: dict[str, Any], message: str) -> None:
    data = {"backends": [{"name": "b", "kind": "local", "base_url": "http://x/v1", **backend}]}
    with pytest.raises(ConfigError, match=message):
        settings_from_dict(data)

"""Every error case answers OpenAI-style JSON with the right status, and nothing crashes."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import openai
import pytest

from .servers import CoordinatorServer, FakeUpstream, coordinator_settings, running

KEY = "sk-hydra-test-key-0123456789"
KEY2 = "sk-hydra-second-key-987654321"
MSG = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def slow_fake() -> Iterator[FakeUpstream]:
    fake = FakeUpstream("slow", ["slow-model"]).start()
    yield fake
    fake.kill()


@pytest.fixture(scope="module")
def guarded(tmp_path_factory, local_fake, slow_fake) -> Iterator[CoordinatorServer]:
    keys = tmp_path_factory.mktemp("keys")
    # one key per line; blank lines and comments are ignored
    (keys / "client-key").write_text(f"# alice\n{KEY}\n\n  # bob\n{KEY2}\n")
    settings = coordinator_settings(
        [
            {
                "name": "ollama",
                "kind": "local",
                "base_url": local_fake.base_url,
                "max_concurrency": 1,
                "max_queue": 1,
            },
            {
                "name": "slow",
                "kind": "cloud",
                "base_url": slow_fake.base_url,
                "timeout_s": 0.5,
                "models": ["slow-model"],
            },
        ],
        auth={"api_key_files": [str(keys / "client-key")]},
        limits={"max_body_bytes": 2048},
    )
    with running(settings) as server:
        yield server


def call(
    server: CoordinatorServer,
    body: bytes,
    key: str | None = KEY,
    path: str = "/v1/chat/completions",
) -> tuple[int, dict[str, str], dict]:
    headers = {"content-type": "application/json"}
    if key:
        headers["authorization"] = f"Bearer {key}"
    request = urllib.request.Request(f"{server.url}{path}", data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as err:
        with err:
            return err.code, dict(err.headers), json.loads(err.read())


def assert_openai_error(payload: dict, type_: str) -> None:
    assert set(payload) == {"error"}
    assert set(payload["error"]) == {"message", "type", "code"}
    assert payload["error"]["type"] == type_
    assert payload["error"]["message"]


def test_malformed_json_is_400(guarded):
    status, _, payload = call(guarded, b'{"model": "auto", "messages": [')
    assert status == 400
    assert_openai_error(payload, "invalid_request_error")
    assert payload["error"]["code"] == "invalid_json"


@pytest.mark.parametrize(
    "body",
    [
        {"model": "auto"},
        {"model": "auto", "messages": []},
        {"model": "auto", "messages": ["hi"]},
        {"model": 42, "messages": MSG},
        {"model": "auto", "messages": MSG, "stream": "yes"},
        [1, 2, 3],
    ],
)
def test_invalid_request_is_400(guarded, body):
    status, _, payload = call(guarded, json.dumps(body).encode())
    assert status == 400
    assert_openai_error(payload, "invalid_request_error")


def test_unknown_model_is_404_through_the_openai_client(guarded):
    client = guarded.client(KEY)
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="no-such-model", messages=MSG)
    assert caught.value.code == "model_not_found"


def test_missing_or_wrong_key_is_401(guarded):
    for key in (None, "sk-wrong"):
        status, headers, payload = call(guarded, json.dumps({"messages": MSG}).encode(), key=key)
        assert status == 401
        assert headers["www-authenticate"] == "Bearer"
        assert_openai_error(payload, "authentication_error")
    client = guarded.client("sk-wrong")
    with pytest.raises(openai.AuthenticationError):
        client.models.list()


def test_every_key_of_the_key_file_is_accepted(guarded):
    for key in (KEY, KEY2):
        client = guarded.client(key)
        assert client.models.list().data
    for line in ("# alice", "# bob", ""):
        status, _, _ = call(guarded, json.dumps({"model": "auto", "messages": MSG}).encode(), line)
        assert status == 401


def test_a_body_without_model_is_400_as_in_openai(guarded, local_fake):
    status, _, payload = call(guarded, json.dumps({"messages": MSG}).encode())
    assert status == 400
    assert_openai_error(payload, "invalid_request_error")
    assert payload["error"]["code"] == "missing_model" and "model" in payload["error"]["message"]
    assert local_fake.requests() == []


def test_every_error_code_is_a_string(guarded):
    for path, body in (
        ("/nowhere", b"{}"),
        ("/v1/chat/completions", b"[1]"),
        ("/health", b"{}"),  # POST on a GET route: 405
    ):
        status, _, payload = call(guarded, body, path=path)
        assert status >= 400, path
        assert_openai_error(payload, payload["error"]["type"])
        assert isinstance(payload["error"]["code"], str), (path, payload)


def test_health_stays_open_with_auth(guarded):
    with urllib.request.urlopen(f"{guarded.url}/health") as response:
        assert json.loads(response.read())["service"] == "hybrid-coordinator"


def test_body_over_limit_is_413(guarded):
    big = json.dumps({"model": "auto", "messages": [{"role": "user", "content": "x" * 5000}]})
    status, _, payload = call(guarded, big.encode())
    assert status == 413
    assert_openai_error(payload, "invalid_request_error")


def test_full_queue_is_429_with_retry_after(guarded, local_fake):
    local_fake.control(delay_s=1.0)
    results: list[int] = []

    def one() -> None:
        results.append(call(guarded, json.dumps({"model": "local", "messages": MSG}).encode())[0])

    # one in flight, one waiting: the queue (max_queue=1) is then full
    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
        time.sleep(0.15)
    status, headers, payload = call(
        guarded, json.dumps({"model": "local", "messages": MSG}).encode()
    )
    for t in threads:
        t.join()
    assert status == 429
    assert int(headers["retry-after"]) >= 1
    assert_openai_error(payload, "rate_limit_error")
    assert payload["error"]["code"] == "backend_busy"  # not the key's rate limit
    assert headers["x-hydra-request-id"]
    assert results == [200, 200]


def test_upstream_timeout_is_504(guarded, slow_fake):
    slow_fake.control(delay_s=2.0)
    status, _, payload = call(
        guarded, json.dumps({"model": "slow-model", "messages": MSG}).encode()
    )
    assert status == 504
    assert_openai_error(payload, "timeout_error")
    slow_fake.control(delay_s=0)


def test_unknown_path_is_openai_style_404(guarded):
    status, _, payload = call(guarded, b"{}", path="/v1/nothing-here")
    assert status == 404
    assert "error" in payload


def test_no_healthy_backend_is_503(tmp_path):
    dead = FakeUpstream("dead", ["m"])  # never started: nothing listens on its port
    settings = coordinator_settings([{"name": "dead", "kind": "local", "base_url": dead.base_url}])
    with running(settings) as server:
        server.wait_backend("dead", "down")
        body = {"model": "auto", "messages": MSG}
        status, _, payload = call(server, json.dumps(body).encode(), key=None)
        assert status == 503
        assert_openai_error(payload, "service_unavailable")
        request = urllib.request.Request(f"{server.url}/health")
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request)
        assert caught.value.code == 503
        assert json.loads(caught.value.read())["status"] == "unhealthy"
        caught.value.close()

"""Bodies built to hurt: JSON nested hundreds deep is a clear 400 (never a 500 with a traceback)
on every JSON endpoint, /mcp included; a client that leaves mid-upload is not an error."""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from .servers import CoordinatorServer, FakeUpstream, coordinator_settings, running


@pytest.fixture(scope="module")
def coordinator_for_bodies(local_fake: FakeUpstream) -> Iterator[CoordinatorServer]:
    settings = coordinator_settings(
        [{"name": "ollama", "kind": "local", "base_url": local_fake.base_url}]
    )
    with running(settings) as server:
        yield server


def nested(depth: int) -> Any:
    value: Any = "deep"
    for level in range(depth):
        value = [value] if level % 2 else {"a": value}
    return value


def chat_with(extra: Any) -> dict[str, Any]:
    return {
        "model": "auto",
        "messages": [{"role": "user", "content": "hello"}],
        "metadata_blob": extra,
    }


def errors_logged(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


@pytest.mark.parametrize("depth", [300, 600, 900])
def test_deep_json_is_a_clear_400_everywhere(
    coordinator_for_bodies: CoordinatorServer,
    local_fake: FakeUpstream,
    caplog: pytest.LogCaptureFixture,
    depth: int,
) -> None:
    caplog.set_level(logging.INFO)
    url = coordinator_for_bodies.url
    bodies = {
        "/v1/chat/completions": chat_with(nested(depth)),
        "/route": {"query": "hi", "context": {"tools": nested(depth)}},
        "/v1/feedback": {"request_id": "x", "rating": nested(depth)},
    }
    for path, body in bodies.items():
        response = httpx.post(f"{url}{path}", content=json.dumps(body), timeout=10)
        assert response.status_code == 400, (path, response.text[:200])
        error = response.json()["error"]
        assert error["code"] == "json_too_deep", path
        assert "limits.max_json_depth" in error["message"]
    mcp = httpx.post(
        f"{url}/mcp",
        content=json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping", "params": nested(depth)}),
        headers={
            "content-type": "application/json",
            "accept": "application/json, text/event-stream",
        },
        timeout=10,
    )
    assert mcp.status_code == 400
    assert mcp.json()["error"]["code"] == "json_too_deep"
    assert local_fake.requests() == []
    assert errors_logged(caplog) == []


def test_reasonable_nesting_is_served(coordinator_for_bodies: CoordinatorServer) -> None:
    tool = {
        "type": "function",
        "function": {"name": "f", "parameters": nested(40)},
    }
    body = {**chat_with(nested(20)), "tools": [tool]}
    response = httpx.post(
        f"{coordinator_for_bodies.url}/v1/chat/completions", json=body, timeout=10
    )
    assert response.status_code == 200, response.text[:300]


def test_a_client_leaving_mid_upload_is_not_an_error(
    coordinator_for_bodies: CoordinatorServer,
    local_fake: FakeUpstream,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    port = coordinator_for_bodies.settings.listen.port
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(
                b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\n"
                b"content-type: application/json\r\ncontent-length: 100000\r\n\r\n"
                b'{"model": "auto", "messages": [{"role": "user", "content": "'
            )
            time.sleep(0.1)
    time.sleep(0.3)  # the server notices the disconnect
    assert errors_logged(caplog) == [], [r.getMessage() for r in errors_logged(caplog)]
    assert local_fake.requests() == []
    assert httpx.get(f"{coordinator_for_bodies.url}/health").status_code == 200

"""Every answered chat request is accounted for, whatever its status: one access line, one
``hydra_requests_total`` count with its status, one telemetry row with its error class, and the
request id on the answer. ``hydra-coordinator serve`` in a subprocess, the official openai client
and raw HTTP, the log read from its stderr, the rows from its SQLite file, ``stats`` as a command.
"""

from __future__ import annotations

import json
import re
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from hydra_coordinator.auth import key_id

from .servers import (
    FakeUpstream,
    env_without_proxies,
    fetch,
    free_port,
    serving,
)
from .test_logging import log_lines

KEY = "sk-accounting-alice-0123456789"
LIMITED = "sk-accounting-bob-0123456789"  # one request a minute
BROKE = "sk-accounting-carol-0123456789"  # a cloud budget of 0
MSG = [{"role": "user", "content": "hi"}]


class Lab:
    def __init__(self, url: str, config: Path, state: Path) -> None:
        self.url, self.config, self.state = url, config, state
        self.expected: dict[str, tuple[int, str | None]] = {}  # request id -> status, class

    def client(self, key: str = KEY) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=key, max_retries=0)

    def post(
        self, body: bytes, key: str | None = KEY, path: str = "/v1/chat/completions"
    ) -> tuple[int, dict[str, str], Any]:
        headers = {"content-type": "application/json"}
        if key:
            headers["authorization"] = f"Bearer {key}"
        request = urllib.request.Request(f"{self.url}{path}", data=body, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=20) as response:
                return response.status, dict(response.headers), json.loads(response.read())
        except urllib.error.HTTPError as err:
            with err:
                return err.code, dict(err.headers), json.loads(err.read())

    def expect(self, headers: Any, status: int, error_class: str | None) -> None:
        request_id = headers["x-hydra-request-id"]
        assert request_id not in self.expected
        self.expected[request_id] = (status, error_class)

    def fails(
        self, kind: type[openai.APIStatusError], status: int, error_class: str, **create: Any
    ) -> openai.APIStatusError:
        key = create.pop("key", KEY)
        with self.client(key) as client, pytest.raises(kind) as caught:
            client.chat.completions.create(**{"model": "auto", "messages": MSG, **create})
        assert caught.value.status_code == status
        assert caught.value.code == error_class, caught.value.body
        self.expect(caught.value.response.headers, status, error_class)
        return caught.value


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, Any]]:
    home = tmp_path_factory.mktemp("accounting")
    local = FakeUpstream("local", ["llama"]).start()
    slow = FakeUpstream("slow", ["slow-model"]).start()
    picky = FakeUpstream("picky", ["picky-model"], api_key="the-right-key").start()
    forbidding = FakeUpstream("forbidding", ["forbidden-model"]).start()
    slow.control(delay_s=3)
    forbidding.control(fail_status=403)  # its upstream refuses the coordinator: HTTP 403
    (home / "client-keys").write_text(f"{KEY}\n{LIMITED}\n{BROKE}\n")
    (home / "picky-key").write_text("a-wrong-key\n")
    port = free_port()
    config = home / "hydra.json"
    config.write_text(
        json.dumps(
            {
                "listen": {"port": port},
                "log": {"level": "info", "access": True},
                "auth": {"api_key_files": ["client-keys"]},  # next to the config file
                "limits": {"max_body_bytes": 2048},
                "health": {"interval_s": 60, "failure_threshold": 5},
                "telemetry": {"flush_interval_s": 0.2},
                "rate_limits": {"keys": {key_id(LIMITED): {"requests_per_minute": 1}}},
                "budgets": {"keys": {key_id(BROKE): {"daily_usd": 0}}, "on_exhausted": "reject"},
                "privacy": {
                    "rules": [{"name": "no-codenames", "action": "block", "keywords": ["zeta"]}]
                },
                "backends": [
                    {"name": "local", "kind": "local", "base_url": local.base_url},
                    {"name": "slow", "kind": "local", "base_url": slow.base_url, "timeout_s": 0.5},
                    {
                        "name": "dead",
                        "kind": "local",
                        "base_url": f"http://127.0.0.1:{free_port()}/v1",  # nothing listens
                        "models": ["dead-model"],
                    },
                    {
                        "name": "picky",
                        "kind": "cloud",
                        "base_url": picky.base_url,
                        "api_key_file": "picky-key",
                        "models": ["picky-model"],
                    },
                    {
                        "name": "forbidding",
                        "kind": "cloud",
                        "base_url": forbidding.base_url,
                        "models": ["forbidden-model"],
                    },
                ],
            }
        )
    )
    try:
        with serving(config, state=home / "state") as served:
            yield Lab(f"http://127.0.0.1:{port}", config, home / "state"), served
    finally:
        for fake in (local, slow, picky, forbidding):
            fake.kill()


def requests_total(url: str, status: int) -> float:
    """hydra_requests_total summed over routes and backends, for one status."""
    text = fetch(f"{url}/metrics").decode()
    found = re.findall(
        rf'^hydra_requests_total{{[^}}]*status="{status}"[^}}]*}} (\S+)$', text, re.M
    )
    return sum(float(value) for value in found)


def rows(state: Path) -> dict[str, tuple[Any, ...]]:
    path = state / "telemetry.sqlite3"
    if not path.exists():
        return {}
    with sqlite3.connect(path) as conn:
        try:
            found = conn.execute(
                "SELECT request_id, status, error_class, route, backend, endpoint FROM telemetry"
            ).fetchall()
        except sqlite3.OperationalError:
            return {}
    return {r[0]: tuple(r[1:]) for r in found}


def send_one_of_each(lab: Lab) -> None:
    """A request answered with each status, its request id kept with what it should say."""
    # refused before any backend
    status, headers, payload = lab.post(b'{"model": "auto", "messages": [')
    assert (status, payload["error"]["code"]) == (400, "invalid_json")
    lab.expect(headers, 400, "invalid_json")
    status, headers, payload = lab.post(json.dumps({"messages": MSG}).encode())
    assert (status, payload["error"]["code"]) == (400, "missing_model")
    lab.expect(headers, 400, "missing_model")
    big = {"model": "auto", "messages": [{"role": "user", "content": "x" * 5000}]}
    status, headers, payload = lab.post(json.dumps(big).encode())
    assert (status, payload["error"]["code"]) == (413, "request_too_large")
    lab.expect(headers, 413, "request_too_large")
    lab.fails(openai.AuthenticationError, 401, "invalid_api_key", key="sk-not-a-key")
    # the other model endpoints too
    status, headers, payload = lab.post(b'{"model": "auto"}', path="/v1/completions")
    assert (status, payload["error"]["code"]) == (400, "invalid_prompt")
    lab.expect(headers, 400, "invalid_prompt")
    status, headers, payload = lab.post(b'{"input": "x"}', path="/v1/embeddings")
    assert (status, payload["error"]["code"]) == (400, "missing_model")
    lab.expect(headers, 400, "missing_model")
    lab.fails(
        openai.PermissionDeniedError,
        403,
        "blocked_by_policy",
        messages=[{"role": "user", "content": "status of project zeta?"}],
    )
    lab.fails(openai.NotFoundError, 404, "model_not_found", model="no-such-model")
    with lab.client(LIMITED) as client:
        answer = client.chat.completions.with_raw_response.create(model="llama", messages=MSG)
    lab.expect(answer.headers, 200, None)
    lab.fails(openai.RateLimitError, 429, "rate_limit_exceeded", key=LIMITED, model="llama")
    lab.fails(openai.RateLimitError, 429, "budget_exhausted", key=BROKE, model="cloud")
    # a backend tried and failed
    refused = lab.fails(
        openai.InternalServerError, 502, "upstream_auth_failed", model="picky-model"
    )
    assert "'picky'" in refused.message and "refused the coordinator's API key" in refused.message
    assert "HTTP 401" in refused.message
    forbidden = lab.fails(
        openai.InternalServerError, 502, "upstream_auth_failed", model="forbidden-model"
    )
    assert "'forbidding'" in forbidden.message and "HTTP 403" in forbidden.message
    lab.fails(openai.InternalServerError, 502, "upstream_unavailable", model="dead-model")
    lab.fails(openai.InternalServerError, 504, "upstream_timeout", model="slow-model")


def test_every_answered_request_is_logged_counted_and_recorded(lab):
    lab, served = lab
    send_one_of_each(lab)
    # one telemetry row each, with its error class
    deadline = time.monotonic() + 15
    while len(rows(lab.state)) < len(lab.expected) and time.monotonic() < deadline:
        time.sleep(0.1)
    recorded = rows(lab.state)
    assert {rid: r[:2] for rid, r in recorded.items()} == lab.expected
    first = next(iter(lab.expected))
    assert recorded[first][2:] == ("none", "none", "chat")  # refused before routing
    by_class: dict[str, list[tuple[Any, ...]]] = {}
    for r in recorded.values():
        by_class.setdefault(r[1], []).append(r[2:])
    assert by_class["upstream_timeout"] == [("local", "slow", "chat")]
    assert sorted(by_class["upstream_auth_failed"]) == [
        ("cloud", "forbidding", "chat"),
        ("cloud", "picky", "chat"),
    ]
    assert by_class["upstream_unavailable"] == [("local", "dead", "chat")]
    assert by_class["invalid_prompt"] == [("none", "none", "completions")]

    # one count each, by status
    statuses = Counter(status for status, _ in lab.expected.values())
    for status, count in statuses.items():
        counted = requests_total(lab.url, status)
        assert counted == count, (status, counted)

    # stats counts the errors, by class
    stats = stats_of(lab.config, lab.state)
    assert stats["requests"] == len(lab.expected)
    assert stats["errors"] == len(lab.expected) - 1
    assert stats["error_classes"] == dict(
        Counter(error_class for _, error_class in lab.expected.values() if error_class)
    )

    # one access line each, with its status
    log = served.stop()
    _, access = log_lines(log)
    lines = Counter(a["request_id"] for a in access if a["request_id"] in lab.expected)
    assert set(lines) == set(lab.expected) and set(lines.values()) == {1}
    logged = {a["request_id"]: a["status"] for a in access if a["request_id"] in lab.expected}
    assert logged == {rid: status for rid, (status, _) in lab.expected.items()}


def test_other_paths_get_an_access_line_and_errors_a_request_id(tmp_path):
    port = free_port()
    config = tmp_path / "hydra.json"
    (tmp_path / "keys").write_text(KEY + "\n")
    config.write_text(
        json.dumps(
            {
                "listen": {"port": port},
                "auth": {"api_key_files": ["keys"]},
                "backends": [{"name": "o", "kind": "local", "base_url": "http://127.0.0.1:9/v1"}],
            }
        )
    )
    url = f"http://127.0.0.1:{port}"
    with serving(config, state=tmp_path / "state") as served:
        with (
            openai.OpenAI(base_url=f"{url}/v1", api_key="wrong", max_retries=0) as client,
            pytest.raises(openai.AuthenticationError) as caught,
        ):
            client.models.list()
        request_id = caught.value.response.headers["x-hydra-request-id"]
        with openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0) as client:
            client.models.list()
        fetch(f"{url}/health")
    _, access = log_lines(served.stderr)
    assert [(a["path"], a["status"]) for a in access] == [("/v1/models", 401), ("/v1/models", 200)]
    assert access[0]["request_id"] == request_id and access[0]["error"] == "invalid_api_key"


def stats_of(config: Path, state: Path) -> dict[str, Any]:
    """``hydra-coordinator stats --json`` as a command, on the state directory ``serve`` used."""
    result = subprocess.run(
        [sys.executable, "-m", "hydra_coordinator", "stats", "--json", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**env_without_proxies(), "STATE_DIRECTORY": str(state)},
    )
    assert result.returncode == 0, result.stderr
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


def health_of(url: str) -> dict[str, Any]:
    try:
        return dict(json.loads(fetch(f"{url}/health")))
    except urllib.error.HTTPError as err:  # 503 when every backend is down
        with err:
            return dict(json.loads(err.read()))


def test_no_model_known_and_no_backend_are_503s_accounted_for(tmp_path):
    """A 503 is accounted for like any error: the answer names the backend and the `models`
    key (``auto`` is never sent upstream), and it has its access line, its count, its row."""
    bare = FakeUpstream("bare", []).start()  # lists no model
    port = free_port()
    config = tmp_path / "hydra.json"
    config.write_text(
        json.dumps(
            {
                "listen": {"port": port},
                "log": {"level": "info", "access": True},
                "health": {"interval_s": 0.2, "failure_threshold": 1},
                "telemetry": {"flush_interval_s": 0.2},
                "backends": [
                    {"name": "bare", "kind": "local", "base_url": bare.base_url},
                    {
                        "name": "dead",
                        "kind": "cloud",
                        "base_url": f"http://127.0.0.1:{free_port()}/v1",  # nothing listens
                        "models": ["dead-model"],
                    },
                ],
            }
        )
    )
    state = tmp_path / "state"
    lab = Lab(f"http://127.0.0.1:{port}", config, state)
    try:
        with serving(config, state=state) as served:
            deadline = time.monotonic() + 10
            while health_of(lab.url)["backends"]["dead"] != "down":
                assert time.monotonic() < deadline, health_of(lab.url)
                time.sleep(0.1)
            unknown = lab.fails(openai.InternalServerError, 503, "no_model_known", key="none")
            assert "'bare'" in unknown.message and "`models`" in unknown.message
            assert bare.requests() == []  # "auto" never went upstream
            lab.fails(
                openai.InternalServerError,
                503,
                "no_backend_available",
                key="none",
                model="dead-model",
            )
            deadline = time.monotonic() + 15
            while len(rows(state)) < 2 and time.monotonic() < deadline:
                time.sleep(0.1)
            recorded = rows(state)
            assert {rid: r[:2] for rid, r in recorded.items()} == lab.expected
            assert requests_total(lab.url, 503) == 2
            stats = stats_of(config, state)
            assert (stats["requests"], stats["errors"]) == (2, 2)
            assert stats["error_classes"] == {"no_backend_available": 1, "no_model_known": 1}
            log = served.stop()
    finally:
        bare.kill()
    _, access = log_lines(log)
    logged = [(a["request_id"], a["status"], a["error"]) for a in access if "route" in a]
    assert sorted(logged) == sorted((rid, s, e) for rid, (s, e) in lab.expected.items())


def test_a_refused_request_head_gets_an_access_line(tmp_path):
    """A head over limits.max_header_bytes (431) or one that stalls (408) is answered before
    the app sees a request: it gets an access line (no request id: none began); a connection
    that sent nothing and is closed is only counted."""
    port = free_port()
    config = tmp_path / "hydra.json"
    config.write_text(
        json.dumps(
            {
                "listen": {"port": port},
                "log": {"level": "info", "access": True},
                "limits": {"max_header_bytes": 4096, "header_timeout_s": 0.5},
                "backends": [{"name": "o", "kind": "local", "base_url": "http://127.0.0.1:9/v1"}],
            }
        )
    )

    def answer_to(data: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            if data:
                sock.sendall(data)
            received = b""
            while chunk := sock.recv(65536):
                received += chunk
            return received

    with serving(config, state=tmp_path / "state") as served:
        huge = answer_to(b"GET /v1/models HTTP/1.1\r\nx-big: " + b"a" * 10_000)
        stalled = answer_to(b"GET /v1/models HTTP/1.1\r\nhost: 127.0.0.1\r\n")  # no blank line
        silent = answer_to(b"")
        fetch(f"http://127.0.0.1:{port}/v1/models")
        metrics = fetch(f"http://127.0.0.1:{port}/metrics").decode()
        log = served.stop()
    assert huge.startswith(b"HTTP/1.1 431 ") and stalled.startswith(b"HTTP/1.1 408 ")
    assert silent.startswith(b"HTTP/1.1 408 ")
    assert 'hydra_connections_refused_total{reason="header_timeout"} 2.0' in metrics
    _, access = log_lines(log)
    assert [(a["path"], a["status"], a["error"]) for a in access] == [
        (None, 431, "header_too_large"),
        (None, 408, "header_timeout"),
        ("/v1/models", 200, None),
    ]
    assert access[0]["request_id"] is None

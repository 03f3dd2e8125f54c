"""A client that leaves frees what it held, on every path, and every request has a deadline:
real HTTP on loopback against fake upstreams that stall or drip."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from .servers import CoordinatorServer, FakeUpstream, coordinator_settings, fetch, running
from .telemetry_helpers import wait_for

CHAT = {"model": "local", "messages": [{"role": "user", "content": "hello"}]}


@pytest.fixture(scope="module")
def narrow(local_fake: FakeUpstream) -> Iterator[CoordinatorServer]:
    """One backend that serves one request at a time; requests get 3 s in all."""
    settings = coordinator_settings(
        [
            {
                "name": "ollama",
                "kind": "local",
                "base_url": local_fake.base_url,
                "max_concurrency": 1,
                "max_queue": 16,
            }
        ],
        limits={"request_timeout_s": 3},
    )
    with running(settings) as server:
        yield server


def gauge(server: CoordinatorServer, name: str) -> float:
    for line in fetch(f"{server.url}/metrics").decode().splitlines():
        if line.startswith(f'{name}{{backend="ollama"}}'):
            return float(line.split()[-1])
    raise AssertionError(f"{name} missing")


def wait_idle(server: CoordinatorServer, within: float = 2.0) -> float:
    """Seconds until the backend has nothing in flight and nothing queued."""
    started = time.monotonic()
    while gauge(server, "hydra_backend_in_flight") or gauge(server, "hydra_backend_queue_depth"):
        if time.monotonic() - started > within:
            raise AssertionError(
                f"backend still busy after {within} s: "
                f"{gauge(server, 'hydra_backend_in_flight')} in flight, "
                f"{gauge(server, 'hydra_backend_queue_depth')} queued"
            )
        time.sleep(0.05)
    return time.monotonic() - started


def post(server: CoordinatorServer, body: dict[str, Any], timeout: float) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=timeout)


def test_a_stalled_stream_is_released_when_its_client_leaves(
    narrow: CoordinatorServer, local_fake: FakeUpstream
) -> None:
    local_fake.control(chunks=3, chunk_delay_s=30)  # the first chunk, then nothing for 30 s
    with httpx.stream(
        "POST", f"{narrow.url}/v1/chat/completions", json={**CHAT, "stream": True}, timeout=10
    ) as response:
        assert response.status_code == 200
        next(response.iter_raw())  # the first chunk arrived; then the client gives up
    wait_idle(narrow)


def test_a_dripping_answer_is_not_read_for_a_client_that_left(
    narrow: CoordinatorServer, local_fake: FakeUpstream
) -> None:
    local_fake.control(drip_s=0.05)  # a ~300-byte body over ~15 s
    with pytest.raises(httpx.ReadTimeout):
        post(narrow, CHAT, timeout=0.5)
    wait_idle(narrow)


def test_queued_requests_whose_clients_left_are_never_sent(
    narrow: CoordinatorServer, local_fake: FakeUpstream
) -> None:
    local_fake.control(drip_s=0.05)  # the slot's holder drips until its 3 s deadline
    with ThreadPoolExecutor(1) as pool:
        holder = pool.submit(post, narrow, CHAT, 30)
        time.sleep(0.3)
        for _ in range(5):  # these wait in the queue behind it, then give up
            with pytest.raises(httpx.ReadTimeout):
                post(narrow, CHAT, timeout=0.3)
        assert holder.result().status_code == 504
    wait_idle(narrow)
    time.sleep(0.3)
    assert len(local_fake.requests()) == 1  # only the holder ever reached the upstream


def test_queued_legacy_completions_whose_clients_left_are_never_sent(
    narrow: CoordinatorServer, local_fake: FakeUpstream
) -> None:
    local_fake.control(drip_s=0.05)  # a chat request holds the only slot until its deadline
    completion = {"model": "local", "prompt": "hello"}
    with ThreadPoolExecutor(1) as pool:
        holder = pool.submit(post, narrow, CHAT, 30)
        time.sleep(0.3)
        for _ in range(3):
            with pytest.raises(httpx.ReadTimeout):
                httpx.post(f"{narrow.url}/v1/completions", json=completion, timeout=0.3)
        assert holder.result().status_code == 504
    wait_idle(narrow)
    time.sleep(0.3)
    assert [r["path"] for r in local_fake.requests()] == ["/v1/chat/completions"]


def test_a_dripping_upstream_meets_the_deadline(
    narrow: CoordinatorServer, local_fake: FakeUpstream
) -> None:
    local_fake.control(drip_s=0.05)
    started = time.monotonic()
    response = post(narrow, CHAT, timeout=30)
    elapsed = time.monotonic() - started
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "request_timeout"
    assert "limits.request_timeout_s" in response.json()["error"]["message"]
    assert elapsed < 15  # not the ~15 s the drip takes
    wait_idle(narrow)


def test_a_stream_past_its_deadline_ends_with_an_error_event(
    narrow: CoordinatorServer, local_fake: FakeUpstream
) -> None:
    # 20 words, one per chunk, 0.5 s apart: 10 s of answer
    local_fake.control(answer=" ".join(["word"] * 20), chunks=20, chunk_delay_s=0.5)
    events = []
    with httpx.stream(
        "POST", f"{narrow.url}/v1/chat/completions", json={**CHAT, "stream": True}, timeout=30
    ) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(line[6:])
    assert events[-1] != "[DONE]"
    error = json.loads(events[-1])["error"]
    assert error["code"] == "request_timeout"
    wait_idle(narrow)


def recorded(server: CoordinatorServer, request_id: str) -> tuple[int, str | None] | None:
    path = f"{server.settings.state_dir}/telemetry.sqlite3"
    try:
        with sqlite3.connect(path) as conn:
            row = conn.execute(
                "SELECT status, error_class FROM telemetry WHERE request_id = ?", (request_id,)
            ).fetchone()
    except sqlite3.OperationalError:
        return None
    return None if row is None else (row[0], row[1])


def test_a_stream_its_client_left_is_recorded_as_such(
    narrow: CoordinatorServer, local_fake: FakeUpstream
) -> None:
    """A stream the client gave up on is not an "ok" answer: its row says the client left (it
    says nothing about the backend, so nothing learns from it as a success or as an error)."""
    local_fake.control(answer="one two three four", chunks=4, chunk_delay_s=0.3)
    with httpx.stream(
        "POST", f"{narrow.url}/v1/chat/completions", json={**CHAT, "stream": True}, timeout=10
    ) as response:
        whole = response.read()  # a client that reads to the end
        finished = response.headers["x-hydra-request-id"]
    assert b"[DONE]" in whole
    row = wait_for(lambda: recorded(narrow, finished), what="the finished stream's row")
    assert row == (200, None)
    with httpx.stream(
        "POST", f"{narrow.url}/v1/chat/completions", json={**CHAT, "stream": True}, timeout=10
    ) as response:
        next(response.iter_raw())  # the first chunk, then the client gives up
        left = response.headers["x-hydra-request-id"]
    wait_idle(narrow)
    row = wait_for(lambda: recorded(narrow, left), what="the abandoned stream's row")
    assert row == (200, "client_closed_request")

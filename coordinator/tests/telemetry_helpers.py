"""Helpers shared by the telemetry tests."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson

from .servers import FakeUpstream, coordinator_settings

__all__ = [
    "chat",
    "events",
    "metric",
    "seed_spool_with_malformed_lines",
    "telemetry_settings",
    "wait_for",
]


def telemetry_settings(fake: FakeUpstream, **extra: Any) -> Any:
    telemetry = {"flush_interval_s": 0.05, **extra.pop("telemetry", {})}
    return coordinator_settings(
        [{"name": "ollama", "kind": "local", "base_url": fake.base_url}],
        telemetry=telemetry,
        **extra,
    )


_local = threading.local()


def _client() -> httpx.Client:
    """One client per thread: making an httpx client (its TLS context) costs milliseconds."""
    client = getattr(_local, "client", None)
    if client is None:
        client = _local.client = httpx.Client(trust_env=False)
    return client


def chat(url: str, text: str = "hello", *, stream: bool = False, timeout: float = 10) -> str:
    """One chat request; the request id of a complete 200 answer (raises otherwise)."""
    body: dict[str, Any] = {
        "model": "auto",
        "messages": [{"role": "user", "content": text}],
        "stream": stream,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    with _client().stream("POST", f"{url}/v1/chat/completions", json=body, timeout=timeout) as r:
        data = r.read()
        assert r.status_code == 200, data
        if stream:
            assert b"data: [DONE]" in data, data
        return r.headers["x-hydra-request-id"]


def metric(url: str, name: str, **labels: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=5).text
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.escape(name) + (r"\{" + re.escape(wanted) + r"\}" if labels else "") + r" (\S+)"
    match = re.search(r"^" + pattern + r"$", text, re.MULTILINE)
    assert match, f"{name}{labels} not in /metrics"
    return float(match.group(1))


def events(url: str, outcome: str) -> float:
    return metric(url, "hydra_telemetry_events_total", outcome=outcome)


def wait_for(check: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)


def seed_spool_with_malformed_lines(state_dir: Path) -> set[str]:
    """A spool left by an earlier run: two good events among malformed lines (a power loss can
    leave garbage mid-file). The request ids of the good ones."""
    from hydra_coordinator.telemetry.record import RequestRecord

    def good(request_id: str) -> bytes:
        record = RequestRecord(request_id, "k", "local", "ollama", "llama", 200, False, 0.5)
        return orjson.dumps(record)  # as TelemetryStore.emit spools it

    spool = state_dir / "telemetry-spool"
    spool.mkdir(parents=True)
    lines = [
        good("seeded-1"),
        b'{"request_id": "bad-timestamp", "timestamp": "soon"}',
        b"\x00\x00\x00 garbage",
        b'{"request_id": "no-route", "timestamp": 1.0}',
        b'{"request_id": "torn in the mid',
        good("seeded-2"),
    ]
    (spool / f"{1:016d}.spool").write_bytes(b"\n".join(lines) + b"\n")
    return {"seeded-1", "seeded-2"}

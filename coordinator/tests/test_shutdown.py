"""SIGTERM with a request still running: `serve` gives it `limits.shutdown_timeout_s`, cuts it,
writes the telemetry, and exits well within systemd's stop timeout (the module sets
TimeoutStopSec from the same key). Through the real command in a subprocess."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from .servers import FakeUpstream, free_port, wait_http

SHUTDOWN_S = 2


def test_sigterm_with_a_dripping_stream_stops_in_time_and_keeps_its_record(
    tmp_path: Path,
) -> None:
    fake = FakeUpstream("local", ["m"]).start()
    # ten words, five seconds apart: fifty seconds of answer
    fake.control(answer=" ".join(["word"] * 10), chunks=10, chunk_delay_s=5)
    port = free_port()
    state = tmp_path / "state"
    config = tmp_path / "hydra.json"
    config.write_text(
        json.dumps(
            {
                "listen": {"port": port},
                "backends": [{"name": "ollama", "kind": "local", "base_url": fake.base_url}],
                "limits": {"shutdown_timeout_s": SHUTDOWN_S},
                "telemetry": {"flush_interval_s": 0.2},
                "state_dir": str(state),
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if k != "STATE_DIRECTORY"}
    process = subprocess.Popen(
        [sys.executable, "-m", "hydra_coordinator", "serve", "--config", str(config)],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    request_ids: list[str] = []

    def stream() -> None:
        body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
        try:
            with httpx.stream(
                "POST", f"http://127.0.0.1:{port}/v1/chat/completions", json=body, timeout=120
            ) as response:
                request_ids.append(response.headers["x-hydra-request-id"])
                for _ in response.iter_bytes():
                    pass
        except httpx.HTTPError:
            pass  # the server cut the stream: expected

    client = threading.Thread(target=stream)
    try:
        wait_http(f"http://127.0.0.1:{port}/health")
        client.start()
        deadline = time.monotonic() + 10
        while not request_ids and time.monotonic() < deadline:
            time.sleep(0.05)
        assert request_ids, "the stream did not start"
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=40)
        stopped_in = time.monotonic() - started
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        client.join(timeout=10)
        fake.kill()
    assert process.returncode in (0, -15), stderr
    # the graceful period plus the telemetry flush, not the fifty seconds the stream needs
    assert stopped_in < SHUTDOWN_S + 15, stopped_in
    assert "hydra-coordinator stopped" in stderr
    with sqlite3.connect(state / "telemetry.sqlite3") as db:
        rows = db.execute(
            "SELECT status, error_class FROM telemetry WHERE request_id = ?", (request_ids[0],)
        ).fetchall()
    assert rows == [(200, "stream_timeout")]

"""What `serve` says when it starts: where it listens, the URL for clients, each backend's first
probe with what to check; a port already in use is an error naming the key, before serving."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .servers import FakeUpstream, free_port


def serve(config: Path, tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "hydra_coordinator", "serve", "--config", str(config), *args],
        env={**os.environ, "STATE_DIRECTORY": str(tmp_path / "state")},
        stderr=subprocess.PIPE,
        text=True,
    )


def lines_until(process: subprocess.Popen[str], last: str, timeout: float = 90) -> list[str]:
    """stderr's lines up to the first containing ``last``."""
    assert process.stderr is not None
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        seen.append(line.rstrip("\n"))
        if last in line:
            return seen
    raise AssertionError(f"no line with {last!r} in:\n" + "\n".join(seen))


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    fake = FakeUpstream("ollama", ["llama3.2", "qwen3:8b"]).start()
    yield fake
    fake.kill()


def test_serve_says_where_it_listens_and_how_each_backend_answered(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    port, dead = free_port(), free_port()
    config = tmp_path / "hydra.toml"
    config.write_text(
        f"[listen]\nport = {port}\n"
        f'[[backends]]\nname = "ollama"\nkind = "local"\nbase_url = "{upstream.base_url}"\n'
        f'[[backends]]\nname = "gone"\nkind = "local"\nbase_url = "http://127.0.0.1:{dead}/v1"\n'
        f'[[backends]]\nname = "no-v1"\nkind = "cloud"\nbase_url = "{upstream.url}"\n'
        'models = ["gpt-4o"]\n'
    )
    process = serve(config, tmp_path)
    try:
        lines = lines_until(process, "hydra_coordinator: backend no-v1")
    finally:
        process.terminate()
        process.communicate(timeout=10)
    text = "\n".join(lines)
    assert f"serving on http://127.0.0.1:{port}" in text
    assert f"OpenAI base URL for clients: http://127.0.0.1:{port}/v1" in text
    ollama = next(line for line in lines if "hydra_coordinator: backend ollama" in line)
    assert "INFO" in ollama and "answered; models: llama3.2, qwen3:8b" in ollama
    gone = next(line for line in lines if "hydra_coordinator: backend gone" in line)
    assert "WARNING" in gone and "did not answer its first probe" in gone
    assert "is the server running and listening on that address and port" in gone
    no_v1 = next(line for line in lines if "hydra_coordinator: backend no-v1" in line)
    assert "HTTP 404" in no_v1 and "ending in /v1" in no_v1


def test_a_port_in_use_is_reported_before_serving(tmp_path: Path) -> None:
    config = tmp_path / "hydra.toml"
    config.write_text('[[backends]]\nname = "o"\nkind = "local"\nbase_url = "http://x:1/v1"\n')
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = serve(config, tmp_path, "--port", str(port))
        _, stderr = process.communicate(timeout=90)
    assert process.returncode == 1
    assert f"port {port} is already in use" in stderr
    assert "listen.port" in stderr and "--port" in stderr
    assert "serving on" not in stderr
    assert "Traceback" not in stderr


def test_a_backend_without_models_says_what_to_do(tmp_path: Path) -> None:
    empty = FakeUpstream("ollama", []).start()
    config = tmp_path / "hydra.toml"
    config.write_text(
        f"[listen]\nport = {free_port()}\n"
        f'[[backends]]\nname = "ollama"\nkind = "local"\nbase_url = "{empty.base_url}"\n'
    )
    process = serve(config, tmp_path)
    try:
        line = lines_until(process, "hydra_coordinator: backend ollama")[-1]
    finally:
        process.terminate()
        process.communicate(timeout=10)
        empty.kill()
    assert "lists no models" in line and "ollama pull" in line

"""Real servers for tests: fake upstreams in subprocesses, the coordinator in a thread."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import uvicorn

from hydra_coordinator.app import create_app
from hydra_coordinator.config import Settings, settings_from_dict
from hydra_coordinator.server import uvicorn_config

FAKE = Path(__file__).parent / "fakes" / "fake_openai.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except urllib.error.HTTPError:
            return  # it answers (e.g. 401 where /metrics needs a key)
        except Exception:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not come up") from None
            time.sleep(0.05)


def fetch(target: str | urllib.request.Request, timeout: float = 10) -> bytes:
    """GET a URL (or send a Request) and return the body, closing the connection."""
    with urllib.request.urlopen(target, timeout=timeout) as response:
        body: bytes = response.read()
        return body


def http_json(url: str, body: dict[str, Any] | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


class FakeUpstream:
    """A fake OpenAI-compatible server in its own process, so a test can kill it."""

    def __init__(self, name: str, models: list[str], api_key: str | None = None) -> None:
        self.name = name
        self.models = models
        self.api_key = api_key  # answer 401 to requests without it, as a cloud API does
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def start(self) -> FakeUpstream:
        self.process = subprocess.Popen(
            [
                sys.executable,
                str(FAKE),
                "--port",
                str(self.port),
                "--name",
                self.name,
                "--models",
                ",".join(self.models),
                *(["--api-key", self.api_key] if self.api_key else []),
            ],
        )
        wait_http(f"{self.url}/_requests")
        return self

    def kill(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
            self.process = None

    def control(self, **changes: Any) -> Any:
        return http_json(f"{self.url}/_control", changes)

    def reset(self) -> None:
        self.control(reset=True)

    def requests(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = http_json(f"{self.url}/_requests")
        return result


class CoordinatorServer:
    """The real app on a real uvicorn server, in a thread with its own event loop."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app = create_app(settings)
        # the configuration `serve` runs with: the same connection limits and timeouts
        self.server = uvicorn.Server(uvicorn_config(settings, self.app))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.listen.port}"

    def __enter__(self) -> CoordinatorServer:
        self.thread.start()
        wait_http(f"{self.url}/metrics")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def run(self, coro: Any, timeout: float = 30) -> Any:
        """Run a coroutine on the server's own event loop (where its stores live)."""
        loop = self.server.servers[0].get_loop()
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)

    @property
    def runtime(self) -> Any:
        return self.app.state.runtime

    def wait_backend(self, name: str, status: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.runtime.pool[name].status != status:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"backend {name} is {self.runtime.pool[name].status}, not {status}"
                )
            time.sleep(0.02)


def coordinator_settings(backends: list[dict[str, Any]], **extra: Any) -> Settings:
    data: dict[str, Any] = {
        "listen": {"host": "127.0.0.1", "port": free_port()},
        "backends": backends,
        "health": {"interval_s": 0.2, "timeout_s": 5.0, "failure_threshold": 2, "cooldown_s": 1.0},
        "log": {"level": "warning", "access": False},
        # telemetry's SQLite file and spool: never in the home directory
        "state_dir": tempfile.mkdtemp(prefix="hydra-state-"),
    }
    data.update(extra)
    return settings_from_dict(data)


@contextmanager
def running(settings: Settings) -> Iterator[CoordinatorServer]:
    with CoordinatorServer(settings) as server:
        for backend in settings.backends:
            # some tests start with a backend that is down on purpose
            with suppress(TimeoutError):
                server.wait_backend(backend.name, "healthy", timeout=5)
        yield server


def run_async(coro: Any) -> Any:
    return asyncio.run(coro)


def env_without_proxies() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}


class ServeProcess:
    """``hydra-coordinator serve`` in a subprocess: its stderr (the log) is kept for the test."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: str | None = None) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "hydra_coordinator", "serve", *args],
            env={**env_without_proxies(), **env},
            cwd=cwd,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.stderr = ""

    def stop(self) -> str:
        """SIGTERM, wait, and return the whole log."""
        if self.process.poll() is None:
            self.process.terminate()
        _, self.stderr = self.process.communicate(timeout=20)
        return self.stderr


@contextmanager
def serving(
    config: Path, *, state: Path, env: dict[str, str] | None = None, cwd: str | None = None
) -> Iterator[ServeProcess]:
    """Run ``serve --config config`` until the block ends; it must answer /health first."""
    data = json.loads(config.read_text()) if config.suffix == ".json" else {}
    port = data.get("listen", {}).get("port", 8092)
    served = ServeProcess(
        ["--config", str(config)], {"STATE_DIRECTORY": str(state), **(env or {})}, cwd
    )
    try:
        try:
            wait_http(f"http://127.0.0.1:{port}/health")
        except TimeoutError:
            raise AssertionError(f"serve did not start:\n{served.stop()}") from None
        yield served
    finally:
        served.stop()

"""Real servers for tests: fake upstreams in subprocesses, the coordinator in a thread."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import random
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
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import openai
import uvicorn

from hydra_coordinator.app import create_app
from hydra_coordinator.config import Settings, settings_from_dict
from hydra_coordinator.server import uvicorn_config

FAKE = Path(__file__).parent / "fakes" / "fake_openai.py"


class _PortBlock:
    """Ports for this process's servers: a block of its own, below the kernel's ephemeral range.

    A port from ``bind(("127.0.0.1", 0))`` is free only until the socket closes: before the
    server that is to listen on it binds it (a subprocess, seconds later on a loaded machine),
    the kernel may hand it out again as the local port of any outgoing connection, or to
    another test run on the same machine asking for a free port. Ports below the ephemeral
    range are never handed out by the kernel, and a block of them is this process's alone
    while it holds the block's lock file (released when the process exits, however it ends).
    """

    SIZE = 200
    FIRST = 10_000

    def __init__(self) -> None:
        self.start = 0
        self.next = 0

    @staticmethod
    def _ephemeral_start() -> int:
        try:
            return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return 32768  # Linux's default

    def _claim(self) -> None:
        directory = Path(tempfile.gettempdir()) / "hydra-test-ports"
        directory.mkdir(exist_ok=True)
        starts = list(range(self.FIRST, self._ephemeral_start() - self.SIZE + 1, self.SIZE))
        random.shuffle(starts)  # concurrent runs rarely try the same block first
        for start in starts:
            if start == self.start:
                continue
            fd = os.open(directory / f"{start}.lock", os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue
            # kept open (not inherited by subprocesses) until this process exits
            self.start, self.next = start, 0
            return
        raise RuntimeError(f"no free block of {self.SIZE} ports (lock files in {directory})")

    def take(self) -> int:
        """A port of the block that nothing listens on or lingers on now (round robin)."""
        if not self.start:
            self._claim()
        for _ in range(2 * self.SIZE):
            port = self.start + self.next % self.SIZE
            self.next += 1
            if _bindable(port):
                return port
            if self.next % self.SIZE == 0:  # a whole round without one: another block
                self._claim()
        raise RuntimeError("no free port")


def _bindable(port: int) -> bool:
    # without SO_REUSEADDR: a port with a connection in TIME_WAIT on it is skipped too
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


_PORTS = _PortBlock()


def free_port() -> int:
    """A loopback port for a server a test is about to start (see :class:`_PortBlock`)."""
    if sys.platform == "linux":
        try:
            return _PORTS.take()
        except (OSError, RuntimeError):  # no lock directory, every block taken: as before
            pass
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(
    url: str, timeout: float = 60.0, process: subprocess.Popen[Any] | None = None
) -> None:
    """Until ``url`` answers. ``timeout`` only bounds a failure (a loaded machine can take many
    seconds to start a Python process); a ``process`` that exits fails at once."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except urllib.error.HTTPError as error:
            error.close()  # its connection: else a ResourceWarning when it is collected
            return  # it answers (e.g. 401 where /metrics needs a key)
        except Exception:
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"{url}: exited with {process.returncode}") from None
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
        wait_http(f"{self.url}/_requests", process=self.process)
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
        self.clients: list[openai.OpenAI] = []

    def client(self, api_key: str = "unused") -> openai.OpenAI:
        """An official client of this server, closed when the server stops: a client left
        to the garbage collector closes its connections with a ResourceWarning, an error in
        whichever test happens to run then."""
        made = openai.OpenAI(base_url=f"{self.url}/v1", api_key=api_key, max_retries=0)
        self.clients.append(made)
        return made

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.listen.port}"

    def __enter__(self) -> CoordinatorServer:
        self.thread.start()
        wait_http(f"{self.url}/metrics")
        return self

    def __exit__(self, *exc: object) -> None:
        for made in self.clients:
            made.close()
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def run(self, coro: Any, timeout: float = 30) -> Any:
        """Run a coroutine on the server's own event loop (where its stores live)."""
        loop = self.server.servers[0].get_loop()
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)

    @property
    def runtime(self) -> Any:
        return self.app.state.runtime

    def wait_probed(self, timeout: float = 120.0) -> None:
        """Until each backend's first health probe has answered, whatever it said (a probe
        ends within health.timeout_s: answered, refused or timed out)."""
        deadline = time.monotonic() + timeout
        while not all(backend.probed for backend in self.runtime.pool):
            if time.monotonic() > deadline:
                raise TimeoutError("the first health probes did not end")
            time.sleep(0.02)

    def wait_backend(self, name: str, status: str, timeout: float = 30.0) -> None:
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
        # quick to notice a killed upstream (refused at once), slow to give up on a slow answer:
        # on a loaded machine a probe's answer (or SQLite's) can take seconds
        "health": {
            "interval_s": 0.2,
            "timeout_s": 30.0,
            "failure_threshold": 2,
            "cooldown_s": 1.0,
        },
        "log": {"level": "warning", "access": False},
        # telemetry's SQLite file and spool: never in the home directory
        "state_dir": tempfile.mkdtemp(prefix="hydra-state-"),
    }
    data.update(extra)
    # the privacy scan's CPU budget (10 ms by default) fails closed, keeping a request local:
    # a test process's GC pause or a loaded machine can exceed it on a 77-byte request. Tests
    # of the budget set their own.
    data["privacy"] = {"scan_cpu_ms": 1000.0, **data.get("privacy", {})}
    return settings_from_dict(data)


def local_and_cloud_backends(
    local: FakeUpstream, cloud: FakeUpstream, price: dict[str, float] | None = None
) -> list[dict[str, Any]]:
    """A local backend ``ollama`` on ``local`` and a priced cloud backend ``openai`` on
    ``cloud`` (``price``: US$ per million input and output tokens, default 2.5 and 10), as
    configuration."""
    return [
        {"name": "ollama", "kind": "local", "base_url": local.base_url},
        {
            "name": "openai",
            "kind": "cloud",
            "base_url": cloud.base_url,
            "models": ["gpt-4o"],
            "price_per_mtok": price or {"input": 2.5, "output": 10},
        },
    ]


def local_and_cloud_settings(
    local: FakeUpstream, cloud: FakeUpstream, state_dir: Path | str, **extra: Any
) -> Settings:
    """Settings with :func:`local_and_cloud_backends`."""
    return coordinator_settings(
        local_and_cloud_backends(local, cloud), state_dir=str(state_dir), **extra
    )


@contextmanager
def running(settings: Settings) -> Iterator[CoordinatorServer]:
    with CoordinatorServer(settings) as server:
        # each backend as its first probe found it (some tests start with one down on purpose)
        server.wait_probed()
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

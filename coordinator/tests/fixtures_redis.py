"""A real redis-server for tests, on a free port in a temporary directory.

``RedisServer(tmp).start()``, ``.kill()`` (SIGKILL: what a crash looks like), ``.stop()``,
``.restart()`` (same port) and the ``redis_server`` fixture (fails when redis-server is not
installed; ``tests/run`` installs it).
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .servers import free_port

__all__ = ["RedisServer", "redis_server"]


class RedisServer:
    def __init__(self, directory: Path, port: int | None = None, unix_socket: bool = False) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.unix_socket = unix_socket  # also listen on <directory>/redis.sock (as on NixOS)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        if self.unix_socket:
            return f"unix://{self.directory / 'redis.sock'}?db=0"
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise FileNotFoundError("redis-server is not installed")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--dir",
                str(self.directory),
                "--loglevel",
                "warning",
                *(
                    ["--unixsocket", str(self.directory / "redis.sock"), "--unixsocketperm", "700"]
                    if self.unix_socket
                    else []
                ),
            ],
            cwd=self.directory,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while not self.ping():
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}")
            if time.monotonic() > deadline:
                raise TimeoutError("redis-server did not come up")
            time.sleep(0.02)
        return self

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def command(self, *args: str) -> bytes:
        """One command in the inline protocol; the raw reply (for simple checks)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as conn:
            conn.sendall(" ".join(args).encode() + b"\r\n")
            return conn.recv(65536)

    def kill(self) -> None:
        """SIGKILL: no goodbye to the clients."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None

    def restart(self) -> RedisServer:
        self.kill()
        return self.start()

    def flush(self) -> None:
        self.command("FLUSHALL")


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.fail(
            "redis-server is not installed; tests/run installs it (apt-get install redis-server)"
        )
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()

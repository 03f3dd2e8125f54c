#!/usr/bin/env python3
"""What hostile clients and upstreams cost the coordinator: figures for docs/security.md.

Each scenario runs ``hydra-coordinator serve`` (from the coordinator's venv, or the source
tree given with ``--source``, to measure another version the same way) against the test
suite's fake upstream, and reports:

- ``header``: a request head with one 100 MB header line, sent as fast as loopback takes it:
  the server's CPU seconds until it answers or hangs up, how much of it was read, and the
  latency of ``/health`` meanwhile;
- ``idle``: 1,100 connections that send nothing, then a normal request: answered or not
  (systemd's default of 1,024 descriptors), and how long the idle ones stay open;
- ``answer``: one non-streamed answer of 200 MB: the server's peak RSS (VmHWM) and the
  knowledge base's size on disk afterwards;
- ``shutdown``: SIGTERM while one request reads an upstream that drips a byte a second:
  seconds until the process exits.

Usage: ``.venv/bin/python bench/hostile.py [--source DIR] [--only NAME ...]``. Results are
printed as a markdown table. Figures only; nothing here is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FAKE = ROOT / "coordinator" / "tests" / "fakes" / "fake_openai.py"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except Exception:
            time.sleep(0.05)
    raise TimeoutError(url)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def directory_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


@contextmanager
def fake_upstream() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(FAKE), "--port", str(port), "--name", "local", "--models", "m"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/v1/models")
        yield url
    finally:
        process.kill()
        process.wait()


def control(upstream: str, **changes: Any) -> None:
    request = urllib.request.Request(
        f"{upstream}/_control",
        data=json.dumps(changes).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10):
        pass


@contextmanager
def coordinator(
    upstream: str, source: str | None, workdir: Path, **extra: Any
) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    port = free_port()
    state = workdir / f"state-{port}"
    config = {
        "listen": {"host": "127.0.0.1", "port": port},
        "backends": [{"name": "local", "kind": "local", "base_url": f"{upstream}/v1"}],
        "state_dir": str(state),
        "log": {"level": "warning", "access": False},
        **extra,
    }
    path = workdir / f"hydra-{port}.json"
    path.write_text(json.dumps(config))
    env = {k: v for k, v in os.environ.items() if k != "STATE_DIRECTORY"}
    if source:
        env["PYTHONPATH"] = str(Path(source) / "coordinator")

    # what systemd gives a unit without LimitNOFILE: 1024 soft, 524288 hard (inherited)
    limits = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, limits[1]))
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "hydra_coordinator", "serve", "--config", str(path)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, limits)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/health")
        yield process, url, state
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def health_latency(url: str) -> float | None:
    started = time.monotonic()
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=60):
            return time.monotonic() - started
    except Exception:
        return None


def scenario_header(upstream: str, source: str | None, workdir: Path) -> dict[str, Any]:
    size = 100 * 1024 * 1024
    with coordinator(upstream, source, workdir) as (process, url, _):
        port = int(url.rsplit(":", 1)[1])
        before = cpu_seconds(process.pid)
        health: list[float | None] = []
        prober = threading.Timer(0.5, lambda: health.append(health_latency(url)))
        started = time.monotonic()
        sent = 0
        answer = b""
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nhost: 127.0.0.1\r\nx-big: ")
            prober.start()
            chunk = b"a" * (1 << 20)
            with suppress(OSError):
                while sent < size:
                    sock.sendall(chunk)
                    sent += len(chunk)
                sock.sendall(b"\r\n\r\n")
            sock.settimeout(120)
            with suppress(OSError):
                answer = sock.recv(200)
        elapsed = time.monotonic() - started
        prober.join()
        time.sleep(0.5)
        return {
            "server CPU (s)": round(cpu_seconds(process.pid) - before, 2),
            "wall (s)": round(elapsed, 2),
            "header bytes sent before the server hung up (MB)": round(sent / 1e6, 1),
            "answer": answer.split(b"\r\n", 1)[0].decode(errors="replace") or "(closed)",
            "/health meanwhile (s)": None
            if not health or health[0] is None
            else round(health[0], 3),
        }


def scenario_idle(upstream: str, source: str | None, workdir: Path) -> dict[str, Any]:
    count = 1100
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))  # our end
    with coordinator(upstream, source, workdir) as (_process, url, _):
        port = int(url.rsplit(":", 1)[1])
        held = []
        with suppress(OSError):
            for _ in range(count):
                held.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        time.sleep(0.5)
        answered = health_latency(url)
        # when the server hangs up each idle connection (end of file), within 30 s
        started = time.monotonic()
        deadline = started + 30
        still_open = 0
        last_closed = 0.0
        for sock in held:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                while sock.recv(65536):
                    pass
                last_closed = time.monotonic() - started
            except OSError:
                still_open += 1
        for sock in held:
            sock.close()
        after = health_latency(url)
        return {
            "idle connections opened": len(held),
            "a request meanwhile": "no answer in 60 s" if answered is None else "answered",
            "idle ones the server closed within 30 s": len(held) - still_open,
            "the last one closed after (s)": round(last_closed, 1),
            "a request afterwards": "answered" if after is not None else "no answer",
        }


def scenario_answer(upstream: str, source: str | None, workdir: Path) -> dict[str, Any]:
    size = 200 * 1024 * 1024
    control(upstream, reset=True)
    control(upstream, answer_bytes=size)
    with coordinator(upstream, source, workdir) as (process, url, state):
        before = peak_rss_mb(process.pid)
        request = urllib.request.Request(
            f"{url}/v1/chat/completions",
            data=json.dumps(
                {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
            ).encode(),
            headers={"content-type": "application/json"},
        )
        started = time.monotonic()
        with urllib.request.urlopen(request, timeout=300) as response:
            received = len(response.read())
        elapsed = time.monotonic() - started
        time.sleep(5)  # the knowledge base stores in the background
        peak = peak_rss_mb(process.pid)
        qdrant = state / "qdrant"
        stored = directory_mb(qdrant) if qdrant.exists() else 0.0
    control(upstream, reset=True)
    return {
        "answer (MB)": round(received / 1e6, 1),
        "wall (s)": round(elapsed, 1),
        "peak RSS before (MB)": round(before, 1),
        "peak RSS after (MB)": round(peak, 1),
        "knowledge base on disk (MB)": round(stored, 1),
    }


def scenario_shutdown(upstream: str, source: str | None, workdir: Path) -> dict[str, Any]:
    control(upstream, reset=True)
    control(upstream, drip_s=1.0)
    with coordinator(upstream, source, workdir) as (process, url, _):
        body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]})

        def request() -> None:
            with suppress(Exception):
                urllib.request.urlopen(
                    urllib.request.Request(
                        f"{url}/v1/chat/completions",
                        data=body.encode(),
                        headers={"content-type": "application/json"},
                    ),
                    timeout=600,
                ).read()

        client = threading.Thread(target=request, daemon=True)
        client.start()
        time.sleep(2)
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=150)
            stopped: float | str = round(time.monotonic() - started, 1)
        except subprocess.TimeoutExpired:
            stopped = "more than 150"
    control(upstream, reset=True)
    return {"SIGTERM to exit (s)": stopped}


SCENARIOS: dict[str, Callable[[str, str | None, Path], dict[str, Any]]] = {
    "header": scenario_header,
    "idle": scenario_idle,
    "answer": scenario_answer,
    "shutdown": scenario_shutdown,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", help="a checkout of the project to run instead of the venv's")
    parser.add_argument("--only", nargs="*", choices=sorted(SCENARIOS), default=list(SCENARIOS))
    args = parser.parse_args()
    label = args.source or "this tree"
    with tempfile.TemporaryDirectory(prefix="hydra-hostile-") as tmp, fake_upstream() as upstream:
        print(f"| scenario | figure | {label} |\n|---|---|---|")
        for name in args.only:
            result = SCENARIOS[name](upstream, args.source, Path(tmp))
            for figure, value in result.items():
                print(f"| {name} | {figure} | {value} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

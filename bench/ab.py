#!/usr/bin/env python3
"""Compare two versions of the coordinator on the hot path, alternating them (ABAB...).

On a shared machine a single run says little: other load moves latency by milliseconds. This
runs version A and version B (two checkouts, ``--a DIR --b DIR``; a missing one means this
tree) against the same fast fake upstream (``bench/fast_upstream.py``), ``--rounds`` times
each in turn, and reports per version the medians over rounds of: the coordinator's CPU time
per request and the p50 latency of sequential requests (one keep-alive connection, like wrk at
one connection), minus the same request sent to the upstream directly in the same round.

Usage: ``.venv/bin/python bench/ab.py --a /tmp/old --b . [--rounds 5] [--requests 2000]``
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from run import cpu_seconds, free_port, stop, wait_ready

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
BODY = json.dumps(
    {"model": "fake", "messages": [{"role": "user", "content": "Say hello in one sentence."}]}
).encode()


def latencies(port: int, count: int) -> list[float]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    found = []
    try:
        for _ in range(count):
            started = time.perf_counter()
            connection.request(
                "POST", "/v1/chat/completions", BODY, {"content-type": "application/json"}
            )
            response = connection.getresponse()
            response.read()
            found.append(time.perf_counter() - started)
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status}")
    finally:
        connection.close()
    return found


def one_round(source: Path, upstream: int, requests: int, workdir: Path) -> tuple[float, float]:
    """(CPU ms per request, p50 ms added over the direct call) for one version."""
    port = free_port()
    config = {
        "listen": {"host": "127.0.0.1", "port": port},
        "backends": [
            {
                "name": "fake",
                "kind": "local",
                "base_url": f"http://127.0.0.1:{upstream}/v1",
                "models": ["fake"],
            }
        ],
        "state_dir": str(workdir / f"state-{port}"),
        "log": {"level": "warning", "access": True},
    }
    path = workdir / f"hydra-{port}.json"
    path.write_text(json.dumps(config))
    env = {**os.environ, "PYTHONPATH": str(source / "coordinator")}
    with (workdir / "serve.log").open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "hydra_coordinator", "serve", "--config", str(path)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_ready(f"http://127.0.0.1:{port}/health", process, lambda s, _: s == 200)
        latencies(port, 200)  # warm up
        direct = statistics.median(latencies(upstream, requests))
        before = cpu_seconds([process.pid])
        through = latencies(port, requests)
        cpu = (cpu_seconds([process.pid]) - before) / requests
    finally:
        stop(process)
    return cpu * 1000, (statistics.median(through) - direct) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", type=Path, default=ROOT, help="checkout A (default: this tree)")
    parser.add_argument("--b", type=Path, default=ROOT, help="checkout B (default: this tree)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    upstream = free_port()
    fake = subprocess.Popen(
        [sys.executable, str(BENCH / "fast_upstream.py"), "--port", str(upstream)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    results: dict[str, list[tuple[float, float]]] = {"A": [], "B": []}
    try:
        wait_ready(f"http://127.0.0.1:{upstream}/v1/models", fake, lambda s, _: s == 200)
        with tempfile.TemporaryDirectory(prefix="hydra-ab-") as tmp:
            for _ in range(args.rounds):
                for name, source in (("A", args.a), ("B", args.b)):
                    results[name].append(one_round(source, upstream, args.requests, Path(tmp)))
    finally:
        stop(fake)
    print("| version | source | CPU per request (ms) | added p50 (ms) | rounds |")
    print("|---|---|---:|---:|---:|")
    for name, source in (("A", args.a), ("B", args.b)):
        cpu = statistics.median(r[0] for r in results[name])
        added = statistics.median(r[1] for r in results[name])
        print(f"| {name} | {source} | {cpu:.3f} | {added:.3f} | {len(results[name])} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Benchmark the coordinator's telemetry.

1. Sustained telemetry events/s into PostgreSQL: records emitted as fast as the event loop
   allows into a ``TelemetryStore`` (spool append + fsync'd group commits + batched inserts),
   timed until every one is in the table.
2. Request throughput (wrk, non-streaming chat completions through ``bench/fast_upstream.py``)
   with telemetry on (PostgreSQL) and off, in rounds ordered off, on, on, off, ...; the cost is
   the median (and quartiles) of each "on" round against the "off" round next to it.

The coordinator runs on CPU 0; wrk, the fake upstream and the PostgreSQL this script starts
(``coordinator/tests/fixtures_pg.py``, fsync on; ``--pg-cpu any`` leaves it unpinned) on CPU 1.
``--database-url`` uses another server instead. Results: a markdown table on stdout.

Usage: ``.venv/bin/python bench/telemetry_bench.py [--events N] [--duration S] [--rounds R]
[--pg-cpu CPU|any]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "coordinator"))  # hydra_coordinator and its tests' helpers

# the benchmark's fast fake upstream: the tests' aiohttp fake costs about as much CPU per request
# as the coordinator, and sharing CPU 1 with wrk and PostgreSQL it would be the bottleneck
FAKE = ROOT / "bench" / "fast_upstream.py"
LUA = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model": "auto", "messages": [{"role": "user", "content": "Hello there"}]}'
"""


def record(i: int) -> Any:
    from hydra_coordinator.telemetry.record import RequestRecord

    return RequestRecord(
        request_id=f"bench-{os.getpid()}-{i}",
        key_id="k1",
        route="local",
        backend="ollama",
        model="llama-3.1-8b",
        status=200,
        stream=bool(i % 2),
        latency_s=0.1234,
        ttft_s=0.012,
        confidence=0.85,
        reasons=("short prompt (+0.00)", "no code (+0.00)"),
        prompt_tokens=42,
        completion_tokens=128,
        cost_usd=0.0,
    )


async def events_per_second(url: str, count: int, state: Path) -> dict[str, float]:
    from hydra_coordinator.config import settings_from_dict
    from hydra_coordinator.metrics import Metrics
    from hydra_coordinator.telemetry.store import TelemetryStore

    settings = settings_from_dict(
        {"state_dir": str(state), "database": {"url": url}, "log": {"level": "warning"}}
    )
    store = TelemetryStore(settings, Metrics([]))
    await store.db.migrate()
    await store.start()
    written = store.metrics.telemetry_events.labels("written")
    replayed = store.metrics.telemetry_events.labels("replayed")
    started = time.perf_counter()
    emit_time = 0.0
    for i in range(count):
        t = time.perf_counter()
        store.emit(record(i))
        emit_time += time.perf_counter() - t
        if i % 500 == 499:
            await asyncio.sleep(0)  # let the writer run, as requests would
    emitted = time.perf_counter() - started
    for _ in range(100_000):  # until every event is in the table
        if written._value.get() + replayed._value.get() >= count:
            break
        await asyncio.sleep(0.01)
    total = time.perf_counter() - started
    await store.stop()
    return {
        "events": count,
        "events_per_s": count / total,
        "emit_us": emit_time / count * 1e6,
        "emit_phase_s": emitted,
    }


def pinned(command: list[str], cpu: int) -> list[str]:
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        return ["taskset", "-c", str(cpu), *command]
    return command


def pin_postgres(server: Any, cpu: str) -> None:
    """Move a started PostgreSQL (the postmaster and every process it forks) to ``cpu``."""
    if cpu == "any" or not shutil.which("taskset"):
        return
    postmaster = (server.data / "postmaster.pid").read_text().split()[0]
    subprocess.run(["taskset", "-a", "-p", "-c", cpu, postmaster], check=True, capture_output=True)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(url: str, duration: float, connections: int, lua: Path) -> tuple[float, int]:
    """Requests/s and the number of requests."""
    result = subprocess.run(
        pinned(
            [
                "wrk",
                "-t1",
                f"-c{connections}",
                f"-d{round(duration)}s",
                "-s",
                str(lua),
                f"{url}/v1/chat/completions",
            ],
            1,
        ),
        capture_output=True,
        text=True,
        check=True,
    )
    match = re.search(r"Requests/sec:\s+([\d.]+)", result.stdout)
    count = re.search(r"(\d+) requests in", result.stdout)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", result.stdout)
    if not match or not count or errors:
        raise RuntimeError(f"wrk failed:\n{result.stdout}\n{result.stderr}")
    return float(match.group(1)), int(count.group(1))


def serve(config: dict[str, Any], state: Path) -> subprocess.Popen[bytes]:
    from tests.servers import wait_http

    path = state / "config.json"
    path.write_text(json.dumps(config))
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["STATE_DIRECTORY"] = str(state)
    process = subprocess.Popen(
        pinned(
            [sys.executable, "-m", "hydra_coordinator", "serve", "--config", str(path)],
            0,
        ),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    port = config["listen"]["port"]
    wait_http(f"http://127.0.0.1:{port}/health")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the backend probe has to pass first
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health") as response:
            if json.loads(response.read())["backends"]["ollama"] == "healthy":
                break
        time.sleep(0.05)
    return process


def throughput(
    url: str, rounds: int, duration: float, connections: int, tmp: Path
) -> dict[str, Any]:
    from tests.servers import free_port, wait_http

    fake_port = free_port()
    fake = subprocess.Popen(
        pinned(
            [
                sys.executable,
                str(FAKE),
                "--port",
                str(fake_port),
            ],
            1,
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    lua = tmp / "post.lua"
    lua.write_text(LUA)
    results: dict[str, list[float]] = {"off": [], "on": []}
    cpu_us: dict[str, list[float]] = {"off": [], "on": []}
    try:
        wait_http(f"http://127.0.0.1:{fake_port}/v1/models")
        # off, on, on, off, off, on, ...: each mode runs first in a pair as often as second,
        # which cancels the edge the first run of a pair was seen to have
        for index in range(rounds * 2):
            mode = ("off", "on", "on", "off")[index % 4]
            port = free_port()
            state = tmp / f"state-{index}"
            state.mkdir()
            config = {
                "listen": {"port": port},
                "backends": [
                    {
                        "name": "ollama",
                        "kind": "local",
                        "base_url": f"http://127.0.0.1:{fake_port}/v1",
                        "models": ["fake"],
                        "max_concurrency": 256,
                        "max_queue": 1024,
                    }
                ],
                "log": {"level": "warning", "access": False},
                "database": {"url": url},
                "telemetry": {"enabled": mode == "on"},
            }
            process = serve(config, state)
            try:
                base = f"http://127.0.0.1:{port}"
                wrk(base, 2, connections, lua)  # warm-up
                before = cpu_seconds(process.pid)
                rate, count = wrk(base, duration, connections, lua)
                time.sleep(0.5)  # the writer's last batch
                cpu_us[mode].append((cpu_seconds(process.pid) - before) / count * 1e6)
                results[mode].append(rate)
            finally:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=30)
    finally:
        fake.kill()
        fake.wait()
    off, on = statistics.median(results["off"]), statistics.median(results["on"])
    cpu_off, cpu_on = statistics.median(cpu_us["off"]), statistics.median(cpu_us["on"])
    # the machine's speed drifts between rounds by more than telemetry costs: compare each
    # "on" round with the "off" round next to it, and take the median of those costs
    paired = sorted((a - b) / a * 100 for a, b in zip(results["off"], results["on"], strict=True))
    quartiles = statistics.quantiles(paired, n=4) if len(paired) > 1 else paired * 3
    return {
        "off": off,
        "on": on,
        "cost_pct": statistics.median(paired),
        "cost_quartiles": (quartiles[0], quartiles[-1]),
        "cpu_off_us": cpu_off,
        "cpu_on_us": cpu_on,
        "cpu_cost_pct": (cpu_on - cpu_off) / cpu_off * 100,
        "rounds": results,
        "cpu_rounds": cpu_us,
    }


def main() -> None:
    from tests.fixtures_pg import PostgresServer, find_bindir

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help="PostgreSQL to use (default: start one)")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--pg-cpu",
        default="1",
        help="the CPU the started PostgreSQL runs on, beside wrk and the fake upstream, away "
        "from the coordinator's CPU 0 (in the lab it runs on another host); 'any' to not pin",
    )
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="hydra-telemetry-bench-"))
    server = None
    url = args.database_url
    try:
        if url is None:
            bindir = find_bindir()
            if bindir is None:
                sys.exit("no PostgreSQL server binaries; pass --database-url")
            server = PostgresServer(bindir).init()
            server.start(durable=True)
            pin_postgres(server, args.pg_cpu)
            url = server.create_database()
        events = asyncio.run(events_per_second(url, args.events, tmp / "events"))
        requests = throughput(url, args.rounds, args.duration, args.connections, tmp)
    finally:
        if server is not None:
            server.destroy()
        shutil.rmtree(tmp, ignore_errors=True)
    print("| measurement | result |")
    print("|---|---|")
    print(
        f"| telemetry events into PostgreSQL (sustained, {events['events']} events) "
        f"| {events['events_per_s']:,.0f} events/s |"
    )
    print(f"| `emit()` on the request path (spool append) | {events['emit_us']:.1f} µs/event |")
    print(
        f"| chat requests/s, telemetry off (wrk -c{args.connections}, median of {args.rounds}) "
        f"| {requests['off']:,.0f} |"
    )
    print(f"| chat requests/s, telemetry on (PostgreSQL) | {requests['on']:,.0f} |")
    low, high = requests["cost_quartiles"]
    print(
        f"| throughput cost of telemetry (median of the {args.rounds} paired rounds; "
        f"quartiles) | {requests['cost_pct']:.1f} % ({low:.1f} to {high:.1f} %) |"
    )
    print(
        f"| coordinator CPU per request, off / on | {requests['cpu_off_us']:.0f} µs / "
        f"{requests['cpu_on_us']:.0f} µs ({requests['cpu_cost_pct']:+.1f} %) |"
    )
    where = "any CPU" if args.database_url or args.pg_cpu == "any" else f"CPU {args.pg_cpu}"
    print(f"\nCoordinator on CPU 0; wrk and the fake upstream on CPU 1; PostgreSQL on {where}.")
    print(f"requests/s by round: {requests['rounds']}")
    print(f"CPU µs per request by round: {requests['cpu_rounds']}")


if __name__ == "__main__":
    main()

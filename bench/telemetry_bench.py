#!/usr/bin/env python3
"""Benchmark the coordinator's telemetry.

1. Sustained telemetry events/s into PostgreSQL: records emitted as fast as the event loop
   allows into a ``TelemetryStore`` (spool append + fsync'd group commits + batched inserts),
   timed until every one is in the table.
2. Request throughput (wrk, non-streaming chat completions through ``bench/fast_upstream.py``)
   with telemetry off and on (PostgreSQL), in paired rounds; the cost is the median (and
   quartiles) of each round's "on" against its "off", in requests/s and in CPU per request.
   ``--mode together`` (the default): an off and an on coordinator run at the same time on
   CPU 0, each driven by its own wrk, so whatever the machine does during a round (a VM's speed
   was seen to drift by 20-50 % within minutes) it does to both. ``--mode in-turn``: one
   coordinator at a time, started afresh each round, in off, on, on, off, ... order.
   ``--mode control``: as together, but with telemetry off in both, so the "cost" it reports is
   the method's own noise.

The coordinators run on CPU 0; wrk, the fake upstream and the PostgreSQL this script starts
(``coordinator/tests/fixtures_pg.py``, fsync on; ``--pg-cpu any`` leaves it unpinned) on CPU 1.
``--database-url`` uses another server instead. Results: a markdown table on stdout.

Usage: ``.venv/bin/python bench/telemetry_bench.py [--events N] [--duration S] [--rounds R]
[--mode together|in-turn|control] [--pg-cpu CPU|any]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
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
sys.path.insert(0, str(ROOT / "bench"))

from run import cpu_seconds, parse_wrk  # noqa: E402  (bench/run.py, the proxy benchmark)

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
    counts = store.metrics.telemetry_events
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
        if counts["written"] + counts["replayed"] >= count:
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


def wrk_command(url: str, duration: float, connections: int, lua: Path) -> list[str]:
    return pinned(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{round(duration)}s",
            "--latency",  # parse_wrk reads the latency lines too
            "-s",
            str(lua),
            f"{url}/v1/chat/completions",
        ],
        1,
    )


def wrk_result(stdout: str, stderr: str = "") -> tuple[float, int]:
    """Requests/s and the number of requests from wrk's report (read by bench/run.py's parser);
    any failed request fails the benchmark."""
    result = parse_wrk(stdout, 0)
    if result.errors:
        raise RuntimeError(f"wrk saw {result.errors} failed requests:\n{stdout}\n{stderr}")
    return result.rps, result.requests


def wrk(url: str, duration: float, connections: int, lua: Path) -> tuple[float, int]:
    """Requests/s and the number of requests."""
    result = subprocess.run(
        wrk_command(url, duration, connections, lua), capture_output=True, text=True, check=True
    )
    return wrk_result(result.stdout, result.stderr)


def wrk_together(urls: list[str], duration: float, connections: int, lua: Path) -> list[Any]:
    """One wrk per URL, all at once: each URL's requests/s and number of requests."""
    runs = [
        subprocess.Popen(
            wrk_command(url, duration, connections, lua),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for url in urls
    ]
    return [wrk_result(*run.communicate()) for run in runs]


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


class Coordinators:
    """Coordinators with telemetry off or on (PostgreSQL at ``url``) behind one fake upstream."""

    def __init__(self, url: str, tmp: Path) -> None:
        from tests.servers import free_port, wait_http

        self.url, self.tmp, self.started = url, tmp, 0
        self.fake_port = free_port()
        self.fake = subprocess.Popen(
            pinned([sys.executable, str(FAKE), "--port", str(self.fake_port)], 1),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.running: list[subprocess.Popen[bytes]] = []
        wait_http(f"http://127.0.0.1:{self.fake_port}/v1/models")

    def start(self, mode: str) -> tuple[subprocess.Popen[bytes], str]:
        from tests.servers import free_port

        port = free_port()
        self.started += 1
        state = self.tmp / f"state-{self.started}"
        state.mkdir()
        backend = {
            "name": "ollama",
            "kind": "local",
            "base_url": f"http://127.0.0.1:{self.fake_port}/v1",
            "models": ["fake"],
            "max_concurrency": 256,
            "max_queue": 1024,
        }
        config = {
            "listen": {"port": port},
            "backends": [backend],
            "log": {"level": "warning", "access": False},
            "database": {"url": self.url},
            "telemetry": {"enabled": mode == "on"},
        }
        process = serve(config, state)
        self.running.append(process)
        return process, f"http://127.0.0.1:{port}"

    def stop(self, process: subprocess.Popen[bytes]) -> None:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        self.running.remove(process)

    def close(self) -> None:
        for process in list(self.running):
            self.stop(process)
        self.fake.kill()
        self.fake.wait()


def together(
    coordinators: Coordinators,
    rounds: int,
    duration: float,
    connections: int,
    lua: Path,
    *,
    second: str = "on",
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Both coordinators at once, on the same CPU, each driven by its own wrk: whatever the
    machine does during a round, it does to both. ``second="off"`` (``--mode control``) runs
    two identical coordinators: the "cost" it finds is the method's own noise."""
    servers = {"off": coordinators.start("off"), "on": coordinators.start(second)}
    rates: dict[str, list[float]] = {"off": [], "on": []}
    cpu_us: dict[str, list[float]] = {"off": [], "on": []}
    urls = [url for _, url in servers.values()]
    wrk_together(urls, 2, connections, lua)  # warm-up
    for _ in range(rounds):
        before = {mode: cpu_seconds([process.pid]) for mode, (process, _) in servers.items()}
        results = dict(zip(servers, wrk_together(urls, duration, connections, lua), strict=True))
        time.sleep(0.2)  # the writer's last batch
        for mode, (rate, count) in results.items():
            rates[mode].append(rate)
            spent = cpu_seconds([servers[mode][0].pid]) - before[mode]
            cpu_us[mode].append(spent / count * 1e6)
    for process, _ in servers.values():
        coordinators.stop(process)
    return rates, cpu_us


def in_turn(
    coordinators: Coordinators, rounds: int, duration: float, connections: int, lua: Path
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """One coordinator at a time, started afresh for each round, in off, on, on, off, ...
    order: each mode runs first in a pair as often as second, which cancels the edge the first
    run of a pair was seen to have."""
    rates: dict[str, list[float]] = {"off": [], "on": []}
    cpu_us: dict[str, list[float]] = {"off": [], "on": []}
    for index in range(rounds * 2):
        mode = ("off", "on", "on", "off")[index % 4]
        process, url = coordinators.start(mode)
        try:
            wrk(url, 2, connections, lua)  # warm-up
            before = cpu_seconds([process.pid])
            rate, count = wrk(url, duration, connections, lua)
            time.sleep(0.5)  # the writer's last batch
            cpu_us[mode].append((cpu_seconds([process.pid]) - before) / count * 1e6)
            rates[mode].append(rate)
        finally:
            coordinators.stop(process)
    return rates, cpu_us


def throughput(
    url: str, rounds: int, duration: float, connections: int, tmp: Path, *, mode: str
) -> dict[str, Any]:
    lua = tmp / "post.lua"
    lua.write_text(LUA)
    coordinators = Coordinators(url, tmp)
    try:
        if mode == "in-turn":
            results, cpu_us = in_turn(coordinators, rounds, duration, connections, lua)
        else:
            second = "off" if mode == "control" else "on"
            results, cpu_us = together(
                coordinators, rounds, duration, connections, lua, second=second
            )
    finally:
        coordinators.close()
    off, on = statistics.median(results["off"]), statistics.median(results["on"])
    cpu_off, cpu_on = statistics.median(cpu_us["off"]), statistics.median(cpu_us["on"])
    # the machine's speed drifts between rounds by more than telemetry costs: compare each
    # "on" round with the "off" round next to it (or beside it), and take the median
    paired = sorted((a - b) / a * 100 for a, b in zip(results["off"], results["on"], strict=True))
    cpu_paired = sorted((b - a) / a * 100 for a, b in zip(cpu_us["off"], cpu_us["on"], strict=True))
    return {
        "off": off,
        "on": on,
        "cost_pct": statistics.median(paired),
        "cost_quartiles": quartiles(paired),
        "cpu_off_us": cpu_off,
        "cpu_on_us": cpu_on,
        "cpu_cost_pct": statistics.median(cpu_paired),
        "cpu_cost_quartiles": quartiles(cpu_paired),
        "rounds": results,
        "cpu_rounds": cpu_us,
    }


def quartiles(values: list[float]) -> tuple[float, float]:
    if len(values) < 2:
        return values[0], values[0]
    q = statistics.quantiles(values, n=4)
    return q[0], q[-1]


def main() -> None:
    from tests.fixtures_pg import PostgresServer, find_bindir

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help="PostgreSQL to use (default: start one)")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk round")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--mode",
        choices=("together", "in-turn", "control"),
        default="together",
        help="together: the off and the on coordinator share CPU 0 at the same time, each "
        "driven by its own wrk (the default: both see the same machine); in-turn: one at a "
        "time, in off, on, on, off order; control: as together, with telemetry off in both "
        "(the method's noise)",
    )
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
        requests = throughput(
            url, args.rounds, args.duration, args.connections, tmp, mode=args.mode
        )
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
    share = " (each with half of CPU 0)" if args.mode != "in-turn" else ""
    print(
        f"| chat requests/s, telemetry off (wrk -c{args.connections}, median of {args.rounds} "
        f"rounds, {args.mode}){share} | {requests['off']:,.0f} |"
    )
    second = "off too (control)" if args.mode == "control" else "on (PostgreSQL)"
    print(f"| chat requests/s, telemetry {second} | {requests['on']:,.0f} |")
    low, high = requests["cost_quartiles"]
    print(
        f"| throughput cost of telemetry (median of the {args.rounds} paired rounds; "
        f"quartiles) | {requests['cost_pct']:.1f} % ({low:.1f} to {high:.1f} %) |"
    )
    low, high = requests["cpu_cost_quartiles"]
    print(
        f"| coordinator CPU per request, off / on (median; paired cost, quartiles) "
        f"| {requests['cpu_off_us']:.0f} µs / {requests['cpu_on_us']:.0f} µs "
        f"({requests['cpu_cost_pct']:+.1f} %; {low:+.1f} to {high:+.1f} %) |"
    )
    where = "any CPU" if args.database_url or args.pg_cpu == "any" else f"CPU {args.pg_cpu}"
    coordinators = "The coordinator" if args.mode == "in-turn" else "Both coordinators"
    print(f"\n{coordinators} on CPU 0; wrk and the fake upstream on CPU 1; PostgreSQL on {where}.")
    print(f"requests/s by round: {requests['rounds']}")
    print(f"CPU µs per request by round: {requests['cpu_rounds']}")


if __name__ == "__main__":
    main()

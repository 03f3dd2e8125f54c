#!/usr/bin/env python3
"""Benchmark the coordinator against a direct call and, with ``--litellm``, LiteLLM's proxy.

One run starts a fast fake upstream (``bench/fast_upstream.py``), then for each target
(direct, hydra with the aiohttp upstream client, hydra with httpx, LiteLLM) measures:

- requests/s and p50/p99 latency with wrk (``bench/post.lua``) at 1, 16 and 64 connections;
- time from process start to a healthy ``/health`` (median of several starts);
- streaming: time to the first body chunk (direct vs through, paired, median difference) and
  whether a slow stream arrives chunk by chunk;
- CPU time per request of the proxy process (utime+stime over the load phase / requests);
- RSS idle and after load (VmRSS; summed over the process tree for LiteLLM).

On a machine with 2 or more CPUs the proxy under test is pinned to CPU 0 and the load generator,
the fake upstream and this script to CPU 1 (``--no-pin`` turns that off), so each proxy gets one
core and does not fight wrk for it. Results: a markdown table on stdout and in
``bench/results/latest.md``, the raw numbers in ``bench/results/latest.json``.

Usage: ``bench/run.py [--litellm] [--litellm-venv DIR] [--duration S] [--quick]``
(run it with the coordinator's venv: ``.venv/bin/python bench/run.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
LITELLM_SPEC = "litellm[proxy]==1.106.*"
BODY = {"model": "fake", "messages": [{"role": "user", "content": "Say hello in one sentence."}]}
STREAM_BODY = {**BODY, "stream": True}
SLOW_STREAM_BODY = {**BODY, "model": "fake-slow", "stream": True}
CHUNK_DELAY_S = 0.02  # between the slow stream's events (11 events, ~200 ms in all)
CLK_TCK = os.sysconf("SC_CLK_TCK")
# Both proxies check a bearer key, as deployed (LiteLLM refuses to start without a master key);
# the fake upstream ignores it, so the direct runs send it too.
KEY = "sk-bench-" + os.urandom(12).hex()
HEADERS = {"content-type": "application/json", "authorization": f"Bearer {KEY}"}

# The coordinator's targets, and what LiteLLM 1.106 did on the reference 2-core machine.
TARGET_ADDED_P50_MS = 1.0
TARGET_THROUGHPUT_X = 10.0
TARGET_START_S = 1.5
TARGET_IDLE_RSS_MB = 80.0
TARGET_TTFT_MS = 1.0


# -- processes ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Pinning:
    """CPU sets for the proxy under test and for everything else (load, upstream, this script)."""

    def __init__(self, enabled: bool) -> None:
        cpus = sorted(os.sched_getaffinity(0))
        self.enabled = enabled and len(cpus) >= 2 and shutil.which("taskset") is not None
        self.proxy = str(cpus[0]) if self.enabled else ""
        self.load = ",".join(str(c) for c in cpus[1:]) if self.enabled else ""
        if self.enabled:
            os.sched_setaffinity(0, set(cpus[1:]))

    def wrap(self, cmd: Sequence[str], cpus: str) -> list[str]:
        return ["taskset", "-c", cpus, *cmd] if cpus else list(cmd)


def spawn(
    cmd: Sequence[str], log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            list(cmd),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # its own process group, so stop() ends its whole tree
        )


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()


def wait_ready(
    url: str,
    process: subprocess.Popen[bytes],
    ready: Callable[[int, bytes], bool],
    timeout: float = 120.0,
) -> float:
    """Poll ``url`` every 10 ms until ``ready``; the monotonic time it was first ready."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: the process exited with status {process.returncode}")
        try:
            status, body = http_get(url, timeout=1.0)
            if ready(status, body):
                return time.monotonic()
        except OSError:
            pass
        time.sleep(0.01)
    raise TimeoutError(f"{url} was not ready after {timeout:.0f} s")


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def process_tree(pid: int) -> list[int]:
    tree, found, todo = _children(), [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(tree.get(current, []))
    return found


def cpu_seconds(pids: Sequence[int]) -> float:
    """utime + stime of the processes (all their threads), in seconds."""
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return ticks / CLK_TCK


def rss_mb(pids: Sequence[int]) -> float:
    total_kb = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
        except OSError:
            continue
    return total_kb / 1024


# -- load with wrk -----------------------------------------------------------------------------


@dataclass
class WrkResult:
    connections: int
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def parse_wrk(output: str, connections: int) -> WrkResult:
    def latency(percent: str) -> float:
        match = re.search(rf"^\s*{percent}%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
        if match is None:
            raise ValueError(f"no {percent}% line in wrk's output:\n{output}")
        return float(match.group(1)) * _UNITS[match.group(2)]

    requests = re.search(r"(\d+) requests in", output)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if requests is None or rps is None:
        raise ValueError(f"cannot read wrk's output:\n{output}")
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", output))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors += int(non_2xx.group(1)) if non_2xx else 0
    return WrkResult(
        connections, int(requests.group(1)), float(rps.group(1)), latency("50"), latency("99"),
        errors,
    )  # fmt: skip


def run_wrk(url: str, connections: int, duration: float, pin: Pinning) -> WrkResult:
    cmd = pin.wrap(
        [
            "wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", "--latency", "--timeout", "10s",
            "-s", str(BENCH / "post.lua"), url,
        ],
        pin.load,
    )  # fmt: skip
    env = {
        **os.environ,
        "BENCH_BODY": json.dumps(BODY, separators=(",", ":")),
        "BENCH_AUTH": HEADERS["authorization"],
    }
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    return parse_wrk(done.stdout, connections)


# -- streaming ---------------------------------------------------------------------------------


async def _first_chunk(session: Any, url: str, body: bytes) -> tuple[float, bytes]:
    started = time.perf_counter()
    async with session.post(url, data=body, headers=HEADERS) as r:
        first = await r.content.readany()
        took = time.perf_counter() - started
        rest = await r.read()
        if r.status != 200:
            raise RuntimeError(f"{url}: HTTP {r.status}: {(first + rest)[:200]!r}")
    return took, first + rest


async def ttft_pairs(direct: str, through: str, n: int) -> dict[str, float]:
    """``n`` sequential streaming requests to each, interleaved; times to the first chunk."""
    import aiohttp

    body = json.dumps(STREAM_BODY).encode()
    a: list[float] = []
    b: list[float] = []
    async with aiohttp.ClientSession() as session:
        for _ in range(10):  # warm-up: connections, caches
            await _first_chunk(session, direct, body)
            await _first_chunk(session, through, body)
        for _ in range(n):
            a.append((await _first_chunk(session, direct, body))[0])
            b.append((await _first_chunk(session, through, body))[0])
    return {
        "direct_ms": statistics.median(a) * 1000,
        "through_ms": statistics.median(b) * 1000,
        "overhead_ms": statistics.median(y - x for x, y in zip(a, b, strict=True)) * 1000,
    }


async def stream_check(url: str, direct: str) -> dict[str, Any]:
    """Is a slow stream (11 events, 20 ms apart) passed on chunk by chunk, and unchanged?"""
    import aiohttp

    body = json.dumps(SLOW_STREAM_BODY).encode()

    async def fetch(target: str) -> tuple[list[float], bytes]:
        arrivals: list[float] = []
        data = b""
        async with aiohttp.ClientSession() as session:
            started = time.perf_counter()
            async with session.post(target, data=body, headers=HEADERS) as response:
                async for chunk in response.content.iter_any():
                    arrivals.append(time.perf_counter() - started)
                    data += chunk
        return arrivals, data

    arrivals, data = await fetch(url)
    _, expected = await fetch(direct)
    total = arrivals[-1] if arrivals else 0.0
    events = data.count(b"data:")
    incremental = len(arrivals) >= 5 and arrivals[0] < 0.5 * total
    return {
        "reads": len(arrivals),
        "events": events,
        "first_chunk_ms": round(arrivals[0] * 1000, 1) if arrivals else None,
        "last_chunk_ms": round(total * 1000, 1),
        "incremental": incremental,
        "identical_to_direct": data == expected,
    }


# -- targets -----------------------------------------------------------------------------------


@dataclass
class TargetResult:
    name: str
    load: list[WrkResult] = field(default_factory=list)
    start_s: list[float] = field(default_factory=list)
    rss_idle_mb: float | None = None
    rss_loaded_mb: float | None = None
    cpu_ms_per_request: float | None = None
    ttft: dict[str, float] | None = None
    stream: dict[str, Any] | None = None

    def at(self, connections: int) -> WrkResult | None:
        return next((w for w in self.load if w.connections == connections), None)


@dataclass
class Options:
    duration: float
    connections: list[int]
    starts: int
    ttft_requests: int
    python: str
    workdir: Path


class Server:
    """A proxy under test: how to start it and how to tell it is ready."""

    def __init__(
        self,
        name: str,
        cmd: list[str],
        health: str,
        ready: Callable[[int, bytes], bool],
        url: str,
        *,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name, self.cmd, self.health, self.ready, self.url = name, cmd, health, ready, url
        self.env = env

    def start(self, pin: Pinning, log: Path) -> tuple[subprocess.Popen[bytes], float]:
        started = time.monotonic()
        process = spawn(pin.wrap(self.cmd, pin.proxy), log, self.env)
        try:
            ready_at = wait_ready(self.health, process, self.ready)
        except Exception:
            stop(process)
            raise
        return process, ready_at - started


def measure_load(
    result: TargetResult, url: str, pids: Callable[[], list[int]], opts: Options, pin: Pinning
) -> None:
    run_wrk(url, 16, min(2.0, opts.duration), pin)  # warm-up
    cpu_before = cpu_seconds(pids()) if result.name != "direct" else 0.0
    for connections in opts.connections:
        wrk = run_wrk(url, connections, opts.duration, pin)
        print(
            f"  {result.name:18} c={connections:<3} {wrk.rps:9.1f} req/s  "
            f"p50 {wrk.p50_ms:7.2f} ms  p99 {wrk.p99_ms:7.2f} ms  errors {wrk.errors}",
            flush=True,
        )
        result.load.append(wrk)
    if result.name != "direct":
        served = sum(w.requests for w in result.load)
        result.cpu_ms_per_request = (cpu_seconds(pids()) - cpu_before) / served * 1000


def bench_server(server: Server, direct_url: str, opts: Options, pin: Pinning) -> TargetResult:
    result = TargetResult(server.name)
    log = opts.workdir / f"{server.name.replace(' ', '_').replace('(', '').replace(')', '')}.log"
    print(f"{server.name}: starting {opts.starts}x", flush=True)
    for _ in range(opts.starts - 1):
        process, took = server.start(pin, log)
        result.start_s.append(took)
        stop(process)
    process, took = server.start(pin, log)
    result.start_s.append(took)
    try:
        time.sleep(2.0)  # let start-up work (first probes, lazy imports) settle
        result.rss_idle_mb = rss_mb(process_tree(process.pid))
        result.ttft = asyncio.run(ttft_pairs(direct_url, server.url, opts.ttft_requests))
        result.stream = asyncio.run(stream_check(server.url, direct_url))  # warm by now
        print(f"  stream {result.stream}\n  ttft {result.ttft}", flush=True)
        measure_load(result, server.url, lambda: process_tree(process.pid), opts, pin)
        time.sleep(1.0)
        result.rss_loaded_mb = rss_mb(process_tree(process.pid))
    finally:
        stop(process)
    return result


def hydra_server(client: str, upstream: str, opts: Options) -> Server:
    port = free_port()
    key_file = opts.workdir / "client-key"
    state = opts.workdir / f"state-{client}"
    shutil.rmtree(state, ignore_errors=True)
    key_file.write_text(KEY + "\n")
    config = {
        "listen": {"host": "127.0.0.1", "port": port},
        "backends": [
            {
                "name": "fake",
                "kind": "local",
                "base_url": f"{upstream}/v1",
                "models": ["fake", "fake-slow"],
                "max_concurrency": 256,  # a GPU serves few; the fake serves any number
                "max_queue": 1024,
            }
        ],
        "auth": {"api_key_files": [str(key_file)]},
        "upstream": {"client": client},
        "state_dir": str(state),  # fresh telemetry and knowledge base for every run
        "log": {"level": "info", "access": True},  # the defaults: one JSON line per request
    }
    path = opts.workdir / f"hydra-{client}.json"
    path.write_text(json.dumps(config, indent=2))
    base = f"http://127.0.0.1:{port}"

    def healthy(status: int, body: bytes) -> bool:
        return status == 200 and json.loads(body).get("status") == "healthy"

    return Server(
        f"hydra ({client})",
        [opts.python, "-m", "hydra_coordinator", "serve", "--config", str(path)],
        f"{base}/health",
        healthy,
        f"{base}/v1/chat/completions",
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def litellm_venv(given: str | None) -> Path:
    if given:
        venv = Path(given)
        if not (venv / "bin" / "litellm").exists():
            raise SystemExit(f"--litellm-venv {venv}: no bin/litellm in it")
        return venv
    venv = BENCH / ".venv-litellm"
    if not (venv / "bin" / "litellm").exists():
        print(f"creating {venv} with {LITELLM_SPEC} (takes a few minutes)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check",
             LITELLM_SPEC],
            check=True,
        )  # fmt: skip
    return venv


def litellm_server(venv: Path, upstream: str, opts: Options) -> Server:
    port = free_port()
    models = [
        {
            "model_name": name,
            "litellm_params": {
                "model": f"openai/{name}",
                "api_base": f"{upstream}/v1",
                "api_key": "sk-bench",
            },
        }
        for name in ("fake", "fake-slow")
    ]
    config = {
        "model_list": models,
        "litellm_settings": {"telemetry": False},
        "general_settings": {"master_key": KEY},
    }
    path = opts.workdir / "litellm.yaml"
    path.write_text(json.dumps(config, indent=2))  # JSON is YAML
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "REDIS_HOST", "REDIS_URL")
    }
    env.update(
        LITELLM_LOG="ERROR",
        LITELLM_LOCAL_MODEL_COST_MAP="True",  # no fetch of the cost map from GitHub
        LITELLM_TELEMETRY="False",
        PYTHONUNBUFFERED="1",
    )
    base = f"http://127.0.0.1:{port}"
    cmd = [
        str(venv / "bin" / "litellm"), "--config", str(path), "--host", "127.0.0.1",
        "--port", str(port), "--num_workers", "1",
    ]  # fmt: skip
    return Server(
        "litellm", cmd, f"{base}/health/readiness", lambda s, _: s == 200,
        f"{base}/v1/chat/completions", env=env,
    )  # fmt: skip


def bench_direct(upstream: str, opts: Options, pin: Pinning) -> TargetResult:
    print("direct: wrk -> fake upstream", flush=True)
    result = TargetResult("direct")
    measure_load(result, f"{upstream}/v1/chat/completions", list, opts, pin)
    return result


# -- report ------------------------------------------------------------------------------------


def _f(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def report(results: list[TargetResult], opts: Options, meta: dict[str, Any]) -> str:
    direct = results[0]
    lines = [
        f"Machine: {meta['cpus']} CPUs ({meta['cpu_model']}), {meta['pinning']}; "
        f"wrk -t1, {opts.duration:g} s per run; Python {meta['python']}.",
        "",
        "| target | conns | req/s | p50 ms | p99 ms | errors |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        for w in r.load:
            lines.append(
                f"| {r.name} | {w.connections} | {w.rps:.0f} | {w.p50_ms:.2f} | {w.p99_ms:.2f} "
                f"| {w.errors} |"
            )
    lines += [
        "",
        "| target | added p50 @1 (ms) | req/s @64 | stream TTFT overhead @1 (ms) "
        "| start to healthy (s) | CPU per request (ms) | RSS idle (MB) | RSS after load (MB) "
        "| streams chunk by chunk |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    base1 = direct.at(1)
    for r in results[1:]:
        one, top = r.at(1), r.at(max(opts.connections))
        added = one.p50_ms - base1.p50_ms if one and base1 else None
        stream = r.stream or {}
        chunked = "yes" if stream.get("incremental") else "NO"
        if stream.get("identical_to_direct"):
            chunked += ", bytes unchanged"
        lines.append(
            f"| {r.name} | {_f(added, 2)} | {_f(top.rps if top else None, 0)} "
            f"| {_f((r.ttft or {}).get('overhead_ms'), 2)} "
            f"| {_f(statistics.median(r.start_s) if r.start_s else None, 2)} "
            f"| {_f(r.cpu_ms_per_request, 3)} | {_f(r.rss_idle_mb)} | {_f(r.rss_loaded_mb)} "
            f"| {chunked} |"
        )
    lines += ["", *targets(results, opts)]
    return "\n".join(lines) + "\n"


def targets(results: list[TargetResult], opts: Options) -> list[str]:
    by = {r.name: r for r in results}
    hydra, litellm, direct = by.get("hydra (aiohttp)"), by.get("litellm"), by["direct"]
    if hydra is None:
        return []
    top = max(opts.connections)
    one, base, hydra_top = hydra.at(1), direct.at(1), hydra.at(top)
    added = one.p50_ms - base.p50_ms if one and base else float("nan")
    rows: list[tuple[str, str, str, bool]] = [
        (
            "added p50 latency @1 conn",
            f"<= {TARGET_ADDED_P50_MS:g} ms",
            f"{added:.2f} ms",
            added <= TARGET_ADDED_P50_MS,
        )
    ]
    lite_top = litellm.at(top) if litellm else None
    if lite_top and hydra_top:
        ratio = hydra_top.rps / lite_top.rps
        rows.append(
            (
                f"throughput @{top} conns",
                f">= {TARGET_THROUGHPUT_X:g}x LiteLLM",
                f"{ratio:.1f}x ({hydra_top.rps:.0f} vs {lite_top.rps:.0f} req/s)",
                ratio >= TARGET_THROUGHPUT_X,
            )
        )
    start = statistics.median(hydra.start_s)
    rows.append(("start to healthy", f"<= {TARGET_START_S:g} s", f"{start:.2f} s", start <= 1.5))
    idle = hydra.rss_idle_mb or float("nan")
    rows.append(
        ("idle RSS", f"<= {TARGET_IDLE_RSS_MB:g} MB", f"{idle:.1f} MB", idle <= TARGET_IDLE_RSS_MB)
    )
    ttft = (hydra.ttft or {}).get("overhead_ms", float("nan"))
    rows.append(
        (
            "stream TTFT overhead @1 conn",
            f"<= {TARGET_TTFT_MS:g} ms",
            f"{ttft:.2f} ms",
            ttft <= TARGET_TTFT_MS,
        )
    )
    out = ["| target (hydra, aiohttp) | goal | measured | met |", "|---|---|---|---|"]
    out += [f"| {a} | {b} | {c} | {'yes' if ok else 'NO'} |" for a, b, c, ok in rows]
    return out


def machine(pin: Pinning) -> dict[str, Any]:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    pinning = (
        f"proxy pinned to CPU {pin.proxy}, wrk + fake upstream + TTFT client to CPU {pin.load}"
        if pin.enabled
        else "no CPU pinning"
    )
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "pinning": pinning,
        "python": platform.python_version(),
        "time": time.strftime("%Y-%m-%d %H:%M:%S %z"),
    }


# -- main --------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--litellm", action="store_true", help="also benchmark LiteLLM's proxy")
    parser.add_argument(
        "--litellm-venv",
        metavar="DIR",
        help=f"a venv with {LITELLM_SPEC} (default: create bench/.venv-litellm)",
    )
    parser.add_argument("--duration", type=float, default=None, help="seconds per wrk run (10)")
    parser.add_argument("--quick", action="store_true", help="short runs, for development")
    parser.add_argument(
        "--clients",
        default="aiohttp,httpx",
        help="upstream clients of the coordinator to compare (default: aiohttp,httpx)",
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    parser.add_argument(
        "--python",
        default=None,
        help="the Python with hydra_coordinator installed (default: .venv, else this one)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        raise SystemExit("bench: wrk is needed (apt-get install wrk)")
    venv_python = ROOT / ".venv" / "bin" / "python"
    python = args.python or (str(venv_python) if venv_python.exists() else sys.executable)
    duration = args.duration if args.duration is not None else (3.0 if args.quick else 10.0)
    RESULTS.mkdir(exist_ok=True)
    venv = litellm_venv(args.litellm_venv) if args.litellm else None
    pin = Pinning(not args.no_pin)
    chat = "/v1/chat/completions"
    workdir = RESULTS / "run"  # configs and server logs of the last run (gitignored)
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    opts = Options(
        duration=duration,
        connections=[1, 16, 64],
        starts=3 if args.quick else 7,
        ttft_requests=50 if args.quick else 300,
        python=python,
        workdir=workdir,
    )
    port = free_port()
    upstream_url = f"http://127.0.0.1:{port}"
    upstream = spawn(
        pin.wrap(
            [python, str(BENCH / "fast_upstream.py"), "--port", str(port),
             "--chunk-delay", str(CHUNK_DELAY_S)],
            pin.load,
        ),
        opts.workdir / "upstream.log",
    )  # fmt: skip
    try:
        wait_ready(f"{upstream_url}/health", upstream, lambda s, _: s == 200, 15)
        results = [bench_direct(upstream_url, opts, pin)]
        for client in filter(None, (c.strip() for c in args.clients.split(","))):
            server = hydra_server(client, upstream_url, opts)
            results.append(bench_server(server, f"{upstream_url}{chat}", opts, pin))
        if venv is not None:
            lite = litellm_server(venv, upstream_url, opts)
            lite_opts = Options(**{**asdict(opts), "starts": 1 if args.quick else 3})
            results.append(bench_server(lite, f"{upstream_url}{chat}", lite_opts, pin))
    finally:
        stop(upstream)
    meta = machine(pin)
    if venv is not None:
        meta["litellm"] = subprocess.run(
            [str(venv / "bin" / "python"), "-c",
             "import importlib.metadata as m; print(m.version('litellm'))"],
            capture_output=True, text=True, check=False,
        ).stdout.strip()  # fmt: skip
    table = report(results, opts, meta)
    print()
    print(table)
    (RESULTS / "latest.md").write_text(table)
    raw = {
        "meta": meta,
        "options": {**asdict(opts), "workdir": None},
        "results": [asdict(r) for r in results],
    }
    (RESULTS / "latest.json").write_text(json.dumps(raw, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())

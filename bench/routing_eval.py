"""Routing quality through the real HTTP API: cold start, learning from ratings, the knob.

Usage: ``python bench/routing_eval.py [--requests 3000] [--rated 0.3] [--scenarios ...]`` from the
repository root, in the coordinator's venv (``coordinator/bootstrap test``). Writes
``bench/results/routing_eval.json`` and prints a Markdown summary (copied into
``bench/results/routing.md``).

For each scenario a fresh coordinator (``hydra-coordinator serve``, default settings apart from
the backends and the scenario's knob) runs against two fake upstreams, a local and a cloud one
(``bench/fast_upstream.py``; the cloud priced at $2.5 / $10 per million tokens). Data:
``bench/data/routing_benchmark.jsonl.gz`` (see ``bench/data/SOURCES.md``).

1. Cold: ``POST /route`` for every *test* prompt (never seen by the scorer's fit nor streamed):
   APGR per kind with ``cloud_gain.mean`` as the score, and the route it would take.
2. Learning: ``--requests`` prompts drawn from the train and validation splits are sent through
   ``POST /v1/chat/completions`` (model ``auto``); for ``--rated`` of them the harness rates
   the answer by whether the routed model was right for that prompt (``POST /v1/feedback``:
   up when right, down when wrong, 0 on a tie).
   The per-key bound on ratings an hour is off (``routing.learned.key_ratings_per_hour = 0``):
   the stream is weeks of a lab's traffic in a minute, from one key.
3. After: ``/route`` again for every test prompt: APGR, cloud share, and *lift captured* at
   that share: (quality - coin) / (oracle - coin), a coin and an oracle sending the same
   number of prompts to the cloud (coin 0, oracle 1).

The ``pace`` scenario sets ``routing.pacing.monthly_usd`` to ``--pace-usd-per-hour`` times the
hours left in the month, so the pace the router starts from is that many dollars an hour, and
reports what the stream spent (real costs, from ``/route``'s ``pacing``) against what the pace
allowed over the stream's duration. The fake cloud answers in 9 + 9 tokens ($0.0001125 a
request); at the default $5/hour and ~70 requests a second the pace pays for ~18 % of them.
"""

from __future__ import annotations

import argparse
import calendar
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

import routing_data

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "routing_eval.json"


@dataclass
class Scenario:
    name: str
    routing: dict[str, Any] = field(default_factory=dict)
    paced: bool = False  # routing.pacing.monthly_usd from --pace-usd-per-hour


SCENARIOS = {
    "default": Scenario("default (cost_weight 10)"),
    "frugal": Scenario("frugal (cost_weight 30)", {"learned": {"cost_weight": 30}}),
    "share20": Scenario("target cloud share 0.2", {"target_cloud_share": 0.2}),
    "share50": Scenario("target cloud share 0.5", {"target_cloud_share": 0.5}),
    "pace": Scenario("monthly pace", paced=True),
}


def hours_left_in_month(now: float) -> float:
    t = time.gmtime(now)
    year, month = (t.tm_year + 1, 1) if t.tm_mon == 12 else (t.tm_year, t.tm_mon + 1)
    return (calendar.timegm((year, month, 1, 0, 0, 0)) - now) / 3600


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except Exception:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not come up") from None
            time.sleep(0.1)


@contextmanager
def process(cmd: Sequence[str], log: Path, ready: str) -> Iterator[None]:
    with log.open("ab") as out:
        proc = subprocess.Popen(
            list(cmd), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_http(ready)
        yield
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def route_all(client: httpx.Client, url: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for row in rows:
        messages = row["messages"]
        payload = {"query": messages[-1]["content"], "context": {"messages": messages[:-1]}}
        response = client.post(f"{url}/route", json=payload)
        response.raise_for_status()
        out.append(response.json())
    return out


def measure(rows: list[dict[str, Any]], decisions: list[dict[str, Any]]) -> dict[str, Any]:
    """APGR of the cloud gain as a score, cloud share and lift captured, per kind and pooled."""
    result: dict[str, Any] = {}
    groups = {**routing_data.by_kind(rows), "all": rows}
    index = {id(r): i for i, r in enumerate(rows)}
    for kind, part in groups.items():
        picked = [decisions[index[id(r)]] for r in part]
        strong = [float(r["strong"]) for r in part]
        weak = [float(r["weak"]) for r in part]
        score = [d["cloud_gain"]["mean"] if d.get("cloud_gain") else 0.0 for d in picked]
        cloud = [d["route"] == "cloud" for d in picked]
        lift, share = routing_data.lift_captured(cloud, strong, weak)
        result[kind] = {
            "n": len(part),
            "apgr": round(routing_data.apgr(score, strong, weak), 4),
            "cloud_share": round(share, 4),
            "lift_captured": round(lift, 4),
        }
    return result


def stream(
    client: httpx.Client,
    url: str,
    pool: list[dict[str, Any]],
    *,
    requests: int,
    rated: float,
    rng: random.Random,
) -> dict[str, Any]:
    routes: list[str] = []
    ratings = 0
    started = time.perf_counter()
    for _ in range(requests):
        row = rng.choice(pool)
        response = client.post(
            f"{url}/v1/chat/completions",
            json={"model": "auto", "messages": row["messages"], "max_tokens": 400},
        )
        response.raise_for_status()
        route = response.headers["x-hydra-route"]
        routes.append(route)
        if rng.random() < rated:
            quality = float(row["strong"] if route == "cloud" else row["weak"])
            rating = 2.0 * quality - 1.0
            feedback = client.post(
                f"{url}/v1/feedback",
                json={"request_id": response.headers["x-hydra-request-id"], "rating": rating},
            )
            feedback.raise_for_status()
            ratings += 1
    tail = routes[len(routes) // 3 :]
    return {
        "requests": requests,
        "ratings": ratings,
        "seconds": round(time.perf_counter() - started, 1),
        "cloud_share_stream": round(routes.count("cloud") / len(routes), 4),
        "cloud_share_stream_last_two_thirds": round(tail.count("cloud") / len(tail), 4),
    }


def run_scenario(
    scenario: Scenario,
    upstreams: tuple[str, str],
    rows: tuple[list[dict[str, Any]], list[dict[str, Any]]],
    args: argparse.Namespace,
    workdir: Path,
) -> dict[str, Any]:
    test, pool = rows
    port = free_port()
    state = tempfile.mkdtemp(prefix="hydra-eval-", dir=workdir)
    routing = routing_data.stream_routing(scenario.routing)
    if scenario.paced:
        monthly = args.pace_usd_per_hour * hours_left_in_month(time.time())
        routing["pacing"] = {"monthly_usd": monthly}
    config = {
        "listen": {"host": "127.0.0.1", "port": port},
        "backends": [
            {"name": "local", "kind": "local", "base_url": upstreams[0], "models": ["fake"]},
            {
                "name": "cloud",
                "kind": "cloud",
                "base_url": upstreams[1],
                "models": ["fake"],
                "price_per_mtok": routing_data.PRICE,
            },
        ],
        "routing": routing,
        "privacy": routing_data.STREAM_PRIVACY,
        "log": {"level": "warning", "access": False},
        "state_dir": state,
    }
    path = Path(state) / "config.json"
    path.write_text(json.dumps(config))
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "hydra_coordinator", "serve", "--config", str(path)]
    with (
        process(cmd, workdir / "coordinator.log", f"{url}/health"),
        httpx.Client(timeout=30) as client,
    ):
        time.sleep(1.0)  # first health probes
        cold = measure(test, route_all(client, url, test))
        rng = random.Random(args.seed)
        streamed = stream(client, url, pool, requests=args.requests, rated=args.rated, rng=rng)
        if scenario.paced:
            streamed["pace"] = pace_kept(client, url, streamed["seconds"])
        after = measure(test, route_all(client, url, test))
    return {"scenario": scenario.name, "cold": cold, "stream": streamed, "after": after}


def pace_kept(client: httpx.Client, url: str, seconds: float) -> dict[str, Any]:
    """What the stream spent against what the pace allowed over its duration."""
    time.sleep(1.0)  # the last requests' costs are counted as their records arrive
    response = client.post(f"{url}/route", json={"query": "What is NixOS?"})
    response.raise_for_status()
    pacing = response.json()["pacing"]
    allowed = pacing["pace_usd_per_day"] / 86400 * seconds  # the pace hardly moves in minutes
    return {
        "spent_usd": pacing["spent_usd"],
        "allowed_usd": round(allowed, 6),
        "spent_over_allowed": round(pacing["spent_usd"] / allowed, 3) if allowed else None,
        "cost_ratio": pacing["cost_ratio"],
        "required_gain": pacing["required_gain"],
    }


def summary(results: list[dict[str, Any]]) -> str:
    lines = [
        "| scenario | kind | cold APGR | APGR after | cloud share after | lift captured after "
        "| cold share | cold lift |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for result in results:
        for kind in (*routing_data.KINDS, "all"):
            cold, after = result["cold"][kind], result["after"][kind]
            lines.append(
                f"| {result['scenario']} | {kind} (n={after['n']}) | {cold['apgr']:.3f} | "
                f"{after['apgr']:.3f} | {after['cloud_share']:.1%} | {after['lift_captured']:.3f} "
                f"| {cold['cloud_share']:.1%} | {cold['lift_captured']:.3f} |"
            )
    lines.append("")
    lines.append(
        "| scenario | requests | ratings | cloud share of the stream (last 2/3) | seconds |"
    )
    lines.append("|---|---:|---:|---:|---:|")
    for result in results:
        s = result["stream"]
        lines.append(
            f"| {result['scenario']} | {s['requests']} | {s['ratings']} | "
            f"{s['cloud_share_stream_last_two_thirds']:.1%} | {s['seconds']} |"
        )
    paced = [r for r in results if "pace" in r["stream"]]
    if paced:
        lines += ["", "| scenario | spent | the pace allowed | spent / allowed |"]
        lines.append("|---|---:|---:|---:|")
        for result in paced:
            p = result["stream"]["pace"]
            lines.append(
                f"| {result['scenario']} | ${p['spent_usd']:.4f} | ${p['allowed_usd']:.4f} | "
                f"{p['spent_over_allowed']} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rated", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--scenarios", nargs="*", default=list(SCENARIOS), choices=SCENARIOS)
    parser.add_argument("--pace-usd-per-hour", type=float, default=5.0)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # stop the servers on the way out
    rows = routing_data.load()
    test = [r for r in rows if routing_data.split(r) == "test"]
    pool = [r for r in rows if routing_data.split(r) != "test"]
    results = []
    with tempfile.TemporaryDirectory(prefix="hydra-routing-eval-") as tmp:
        workdir = Path(tmp)
        ports = free_port(), free_port()
        upstream = [sys.executable, str(HERE / "fast_upstream.py"), "--port"]
        with (
            process(
                [*upstream, str(ports[0])],
                workdir / "local.log",
                f"http://127.0.0.1:{ports[0]}/v1/models",
            ),
            process(
                [*upstream, str(ports[1])],
                workdir / "cloud.log",
                f"http://127.0.0.1:{ports[1]}/v1/models",
            ),
        ):
            bases = (f"http://127.0.0.1:{ports[0]}/v1", f"http://127.0.0.1:{ports[1]}/v1")
            for name in args.scenarios:
                print(f"scenario {name} ...", flush=True)
                results.append(run_scenario(SCENARIOS[name], bases, (test, pool), args, workdir))
                print(summary(results[-1:]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(summary(results))


if __name__ == "__main__":
    main()

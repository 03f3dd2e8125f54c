"""What a routing decision costs: the cold-start scorer, the prompt representation and the
learner, per request, for prompts of several sizes; v1's features as the baseline of the run.

Usage: ``python bench/routing_cost.py [--repeat N]`` from the repository root, in the
coordinator's venv. Prints a Markdown table (median and 99th percentile in microseconds, one
core, no I/O) and the memory the router holds after 3,000 requests with 30 % rated. Timings on
a shared machine are noisy: compare the columns of one run (the ratio), not runs.

The router under test is the one the coordinator builds (``Router(settings)``), with two
backends (local and a priced cloud one) and the learned strategy, after it has learnt from
3,000 rated requests, so every weight it reads is a real one.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
import tracemalloc
from typing import Any

from hydra_coordinator.config import settings_from_dict
from hydra_coordinator.routing.bandit import Choice, represent
from hydra_coordinator.routing.features import extract_features
from hydra_coordinator.routing.router import BackendView, local_confidence
from hydra_coordinator.routing.scorer import cold_score
from hydra_coordinator.routing.service import Router

import routing_data

VIEWS = [
    BackendView("local", "local", "healthy", 0.0, ("fake",)),
    BackendView("cloud", "cloud", "healthy", 0.0, ("fake",)),
]


def make_router() -> Router:
    settings = settings_from_dict(
        {
            "backends": [
                {"name": "local", "kind": "local", "base_url": "http://127.0.0.1:1/v1"},
                {
                    "name": "cloud",
                    "kind": "cloud",
                    "base_url": "http://127.0.0.1:2/v1",
                    "price_per_mtok": {"input": 2.5, "output": 10},
                },
            ]
        }
    )
    router = Router(settings)
    return router


def teach(router: Router, rows: list[dict[str, Any]], n: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    for i in range(n):
        row = rng.choice(rows)
        body = {"messages": row["messages"]}
        decision = router.decide(body, "auto", VIEWS, None, request_id=f"r{i}")
        quality = row["strong"] if decision.route == "cloud" else row["weak"]
        if rng.random() < 0.3:
            router.prompts.rate(f"r{i}", float(quality), key_id=None, kind=decision.route)


def prompt(size: int, rng: random.Random, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """A real benchmark prompt cut or repeated to ``size`` characters."""
    text = ""
    while len(text) < size:
        text += rng.choice(rows)["messages"][-1]["content"] + "\n"
    return {"messages": [{"role": "user", "content": text[:size]}]}


def timed(fn: Any, bodies: list[dict[str, Any]], repeat: int) -> tuple[float, float]:
    samples = []
    for _ in range(repeat):
        for body in bodies:
            started = time.perf_counter_ns()
            fn(body)
            samples.append((time.perf_counter_ns() - started) / 1000)
    samples.sort()
    return statistics.median(samples), samples[int(0.99 * (len(samples) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    rows = routing_data.load()
    train = [r for r in rows if routing_data.split(r) != "test"]
    tracemalloc.start()
    router = make_router()
    teach(router, train, 3000)
    current, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rng = random.Random(2)
    config = router.config
    choices = [Choice("local", "local", 0.0), Choice("cloud", "cloud", 0.004)]

    def learned_part(body: dict[str, Any]) -> None:
        cold = cold_score(body)
        rep = router.prompts.assign(represent(body, cold), learn=False)
        router.prompts.estimate(rep, choices, router.required_gain())

    print(
        "| prompt | v1 features (the old path, baseline) | scorer + representation + learner "
        "| ratio | whole decision (privacy, task class, reasons) |"
    )
    print("|---|---:|---:|---:|---:|")
    for size in (100, 2048, 16384):
        bodies = [prompt(size, rng, rows) for _ in range(25)]
        v1 = timed(lambda b: local_confidence(extract_features(b), config), bodies, args.repeat)
        mine = timed(learned_part, bodies, args.repeat)
        whole = timed(lambda b: router.decide(b, "auto", VIEWS, None), bodies, args.repeat)
        print(
            f"| {size} B | {v1[0]:.0f} µs (p99 {v1[1]:.0f}) | {mine[0]:.0f} µs (p99 {mine[1]:.0f}) "
            f"| {mine[0] / v1[0]:.2f} | {whole[0]:.0f} µs (p99 {whole[1]:.0f}) |"
        )
    print(
        f"\nmemory held by the router after 3,000 requests and ~900 ratings: "
        f"{current / 1e6:.1f} MB (tracemalloc)"
    )


if __name__ == "__main__":
    main()

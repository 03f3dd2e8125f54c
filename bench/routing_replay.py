"""The learning of ``routing_eval.py`` replayed in process, on a development split, in seconds.

Usage: ``python bench/routing_replay.py [--seeds 1 2 3] [--scenarios default frugal]
[--exploration X] [--reference]`` from the repository root, in the coordinator's venv.

``routing_eval.py`` takes one to two minutes a scenario through the HTTP API and judges on the
test split; to compare versions of the learner over many seeds without looking at the test
split, this replays the same stream (``--requests`` prompts, ``--rated`` of them rated by
whether the routed model was right, one API key whose hourly bound on ratings is off as in
``routing_eval.py``, on a clock that advances ``--seconds`` over the stream) straight into the
coordinator's ``Router`` and judges on half of the *validation* split (hash bucket 7),
streaming train and the other half (bucket 6). The test split is not read. Besides lift
captured and cloud share it prints, per kind, the mean cloud gain the learner ends with next to
the kind's real mean gain on the development prompts: how far and how consistently the learner
lands from the truth, which decides the share at a given knob. ``--reference`` also prints, at
each cost weight, what the cold-start scorer alone decides, and what it would with each kind's
mean gain right (from labels no router sees): the part of a knob's lift that is about the level
of a kind's estimated gain rather than the ranking within it.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import statistics
from typing import Any

from hydra_coordinator.config import Settings
from hydra_coordinator.routing.feedback import rating_reward
from hydra_coordinator.routing.router import BackendView
from hydra_coordinator.routing.scorer import cold_score
from hydra_coordinator.routing.service import Router

import routing_data

SCENARIOS: dict[str, dict[str, Any]] = {
    "default": {},
    "frugal": {"learned": {"cost_weight": 30}},
    "share20": {"target_cloud_share": 0.2},
    "share50": {"target_cloud_share": 0.5},
}
VIEWS = [
    BackendView("local", "local", "healthy", 0.0, ("fake",)),
    BackendView("cloud", "cloud", "healthy", 0.0, ("fake",)),
]


def bucket(row: dict[str, Any]) -> int:
    return int(hashlib.sha256(row["id"].encode()).hexdigest()[:8], 16) % 10


def router_for(routing: dict[str, Any], exploration: float | None) -> Router:
    routing = routing_data.stream_routing(routing)
    if exploration is not None:
        routing = {**routing, "learned": {**routing.get("learned", {}), "exploration": exploration}}
    backends = [
        {"name": "local", "kind": "local", "base_url": "http://127.0.0.1:9/v1", "models": ["fake"]},
        {
            "name": "cloud",
            "kind": "cloud",
            "base_url": "http://127.0.0.1:9/v1",
            "models": ["fake"],
            "price_per_mtok": routing_data.PRICE,
        },
    ]
    return Router(Settings(backends=backends, routing=routing, privacy=routing_data.STREAM_PRIVACY))


def replay(
    router: Router, pool: list[dict[str, Any]], args: argparse.Namespace, seed: int
) -> float:
    """Stream like routing_eval.stream; returns the cloud share of its last two thirds."""
    now = [0.0]
    router.prompts.clock = lambda: now[0]
    router.prompts.seed = seed
    router.prompts.__post_init__()  # the sampling's generator, seeded
    rng = random.Random(seed)
    routes = []
    for i in range(args.requests):
        now[0] += args.seconds / args.requests
        row = rng.choice(pool)
        body = {"model": "auto", "messages": row["messages"], "max_tokens": 400}
        decision = router.decide(body, "auto", VIEWS, None, request_id=f"r{i}")
        routes.append(decision.route)
        if rng.random() < args.rated:
            quality = float(row["strong"] if decision.route == "cloud" else row["weak"])
            reward = rating_reward(2.0 * quality - 1.0)
            router.prompts.rate(f"r{i}", reward, key_id=None, kind=decision.route)
    tail = routes[len(routes) // 3 :]
    return tail.count("cloud") / len(tail)


def judge(router: Router, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Lift captured, cloud share and mean learnt gain per kind (the /route decisions)."""
    result: dict[str, Any] = {}
    gains, cloud = [], []
    for row in rows:
        body = {"messages": row["messages"]}
        decision = router.decide(body, "auto", VIEWS, None)
        explanation = decision.explanation
        estimates = {e.backend: e.quality for e in explanation.estimates} if explanation else {}
        gains.append(estimates["cloud"] - estimates["local"] if len(estimates) == 2 else 0.0)
        cloud.append(decision.route == "cloud")
    index = {id(r): i for i, r in enumerate(rows)}
    for kind, part in {**routing_data.by_kind(rows), "all": rows}.items():
        picked = [index[id(r)] for r in part]
        strong = [float(r["strong"]) for r in part]
        weak = [float(r["weak"]) for r in part]
        lift, share = routing_data.lift_captured([cloud[i] for i in picked], strong, weak)
        result[kind] = {
            "lift": lift,
            "share": share,
            "gain": statistics.mean(gains[i] for i in picked),
            "true_gain": statistics.mean(s - w for s, w in zip(strong, weak, strict=True)),
        }
    return result


def reference(
    router: Router, pool: list[dict[str, Any]], rows: list[dict[str, Any]]
) -> dict[str, tuple[float, float]]:
    """What the cold-start scorer alone decides at the scenario's knob, and what it would
    decide with each kind's mean gain right: (lift captured, cloud share) of both.

    The second is a reference, not a router: it takes each kind's mean gain from the labels of
    the streamed prompts, which no router sees, and shifts the scorer's estimates of that kind
    by the difference. It says how much of the lift at a knob is about the *level* of a kind's
    estimated gain rather than the ranking within it."""
    shift = {}
    for kind, part in routing_data.by_kind(pool).items():
        if part:
            true = statistics.mean(float(r["strong"]) - float(r["weak"]) for r in part)
            cold = statistics.mean(cold_score({"messages": r["messages"]}).gain for r in part)
            shift[kind] = true - cold
    required = router.required_gain()
    cost_weight = router.prompts.cost_weight
    strong = [float(r["strong"]) for r in rows]
    weak = [float(r["weak"]) for r in rows]
    cold_cloud, levelled_cloud = [], []
    for row in rows:
        body = {"messages": row["messages"]}
        net = cold_score(body).gain - cost_weight * router.expected_cost("cloud", body)
        cold_cloud.append(net > required)
        levelled_cloud.append(net + shift.get(row["kind"], 0.0) > required)
    return {
        "cold": routing_data.lift_captured(cold_cloud, strong, weak),
        "levelled": routing_data.lift_captured(levelled_cloud, strong, weak),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rated", type=float, default=0.3)
    parser.add_argument("--seconds", type=float, default=20.0, help="the stream's duration")
    parser.add_argument("--seeds", type=int, nargs="*", default=[1, 2, 3, 4, 5, 6, 7, 8])
    parser.add_argument("--scenarios", nargs="*", default=["default", "frugal"], choices=SCENARIOS)
    parser.add_argument("--exploration", type=float, default=None)
    parser.add_argument(
        "--reference",
        action="store_true",
        help="also print, at each cost weight, the scorer alone and the scorer with each kind's "
        "mean gain right",
    )
    args = parser.parse_args()
    rows = [r for r in routing_data.load() if routing_data.split(r) != "test"]
    pool = [r for r in rows if bucket(r) < 7]
    dev = [r for r in rows if bucket(r) == 7]
    for name in args.scenarios:
        plain = router_for(SCENARIOS[name], None) if args.reference else None
        if plain is not None and plain.cloud_share is None and plain.pacer is None:
            ref = reference(plain, pool, dev)
            print(
                f"{name} reference: the scorer alone, lift {ref['cold'][0]:.3f} at cloud share "
                f"{ref['cold'][1]:.1%}; with each kind's mean gain right, lift "
                f"{ref['levelled'][0]:.3f} at {ref['levelled'][1]:.1%}",
                flush=True,
            )
        lifts = []
        gains: dict[str, list[float]] = {kind: [] for kind in routing_data.KINDS}
        for seed in args.seeds:
            router = router_for(SCENARIOS[name], args.exploration)
            tail = replay(router, pool, args, seed)
            result = judge(router, dev)
            lifts.append(result["all"]["lift"])
            for kind in routing_data.KINDS:
                gains[kind].append(result[kind]["gain"])
            print(
                f"{name} seed {seed}: lift {result['all']['lift']:.3f} at cloud share "
                f"{result['all']['share']:.1%} (stream {tail:.1%}); learnt gain "
                + ", ".join(
                    f"{k} {result[k]['gain']:+.3f} (true {result[k]['true_gain']:+.3f}, "
                    f"share {result[k]['share']:.0%})"
                    for k in routing_data.KINDS
                ),
                flush=True,
            )
        spread = ", ".join(
            f"{k} {statistics.mean(v):+.3f} ± {statistics.pstdev(v):.3f}" for k, v in gains.items()
        )
        print(
            f"{name}: lift min {min(lifts):.3f} median {statistics.median(lifts):.3f}; "
            f"learnt gain over seeds {spread}"
        )


if __name__ == "__main__":
    main()

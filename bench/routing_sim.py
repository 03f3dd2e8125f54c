"""Simulate routing policies on a synthetic lab workload (fixed seeds).

Usage: ``python bench/routing_sim.py [--steps N] [--seeds K]`` from the
repository root, with the coordinator installed with its ``bench`` extra.
Writes ``bench/results/routing_sim.md`` and ``bench/routing_sim.png``.

World. Requests belong to five task classes and carry a hidden complexity in
[0, 1]; the router sees the class (as the task classifier would) and a noisy
complexity feature (as the v1 features would), turned into v1's confidence
that a local model suffices, c = 1 - feature. Three backends: a small local
model, a large local model that sometimes times out, and a cloud model that
costs money. Each backend answers well with a hidden probability that
depends on class and complexity. Every call's outcome is observed (ok, or an
error/timeout); only some successful answers get a rating (thumbs up/down).

Policies.
* static: the v1 stand-in, the large local model when c >= 0.3 (the
  complexity feature <= 0.7), else the cloud;
* learned: :class:`LearnedRouter`, per (task class, backend) a reliability
  posterior fed with every outcome (``record_outcome``) and a satisfaction
  posterior fed with the ratings (``update``); with v1's c as the per-request
  local prior (``local_prior_mean``, calibrated to the same threshold, so the
  cold start routes as static v1 does) or without it (flat priors); variants
  with c's half or quartile as a sub-class (``"code/c1"``), and with a cloud
  budget;
* oracle: knows the hidden probabilities and picks the best utility;
* all-cloud and all-local as references.

Utility = quality - cost_weight x cost (USD), quality being the expected
success probability of the chosen backend. Regret is the oracle's utility
minus the policy's, summed over requests. As in RouteLLM, we also report the
share of cloud calls avoided while keeping >= 95% of all-cloud quality,
sweeping each policy's knob (threshold for static v1, cost_weight for the
learned router, whose threshold stays at v1's default).
"""

from __future__ import annotations

import argparse
import multiprocessing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from hydra_coordinator.routing.learned import Candidate, LearnedRouter
from matplotlib.figure import Figure

HERE = Path(__file__).resolve().parent
REPORT = HERE / "results" / "routing_sim.md"
PLOT = HERE / "routing_sim.png"

COST_WEIGHT = 10.0  # utility per USD: a $0.012 cloud call costs 0.12 quality
CLASSES = ("code", "reasoning", "writing", "factual", "chat")
CLASS_MIX = (0.30, 0.15, 0.20, 0.15, 0.20)
COMPLEXITY = {  # Beta(a, b) of the hidden complexity per class
    "code": (5.5, 4.5),
    "reasoning": (7.0, 3.0),
    "writing": (4.0, 6.0),
    "factual": (3.0, 7.0),
    "chat": (1.5, 8.5),
}
BACKENDS = (
    Candidate("ollama-8b", "local", 0.0),
    Candidate("tabby-70b", "local", 0.0),
    Candidate("cloud", "cloud", 0.012),
)
BASE_QUALITY = {  # success probability at complexity 0.5
    "code": (0.55, 0.78, 0.90),
    "reasoning": (0.40, 0.62, 0.88),
    "writing": (0.80, 0.86, 0.89),
    "factual": (0.62, 0.75, 0.91),
    "chat": (0.90, 0.92, 0.93),
}
SLOPE = (0.50, 0.35, 0.10)  # quality lost per unit of complexity above 0.5
FAILURE = (0.01, 0.03, 0.01)  # errors and timeouts: always observed, reward 0
FEEDBACK_RATE = 0.3  # share of answers that get a rating
FEATURE_NOISE = 0.1  # std. dev. of the complexity feature around the truth
STATIC_THRESHOLD = 0.3  # on c = 1 - feature: cloud when the complexity feature > 0.7
PRIOR_STRENGTH = 4.0
EARLY = 500  # requests counted as the cold start
WEIGHTS = tuple(float(cw) for cw in range(5, 26))  # cost_weight sweep: 21 values, as for static
THRESHOLDS = tuple(float(th) for th in np.round(np.arange(0.0, 1.01, 0.05), 2))
BUDGETS = (
    60.0,
    37.0,
)  # USD per run for the budget-paced learned router (37 = static's spend)
PACING_STEP = 1.01
PACING_RESERVE = 0.02  # keep 2% of the allowance for requests that need the cloud most


@dataclass(frozen=True)
class Workload:
    """A fixed request stream and every backend's hidden expected quality on it."""

    classes: np.ndarray  # class index per request
    confidence: np.ndarray  # v1's confidence that local suffices: 1 - the complexity feature
    quality: np.ndarray  # [request, backend] expected quality incl. failures
    failure: np.ndarray  # [request, backend] True when the call would fail
    liked: np.ndarray  # [request, backend] True when a rating would be thumbs up
    rated: np.ndarray  # True when this request gets a rating


def make_workload(steps: int, seed: int) -> Workload:
    rng = np.random.default_rng(seed)
    classes = rng.choice(len(CLASSES), size=steps, p=CLASS_MIX)
    a = np.array([COMPLEXITY[c][0] for c in CLASSES])[classes]
    b = np.array([COMPLEXITY[c][1] for c in CLASSES])[classes]
    complexity = rng.beta(a, b)
    feature = np.clip(complexity + rng.normal(0, FEATURE_NOISE, steps), 0, 1)
    base = np.array([BASE_QUALITY[c] for c in CLASSES])[classes]
    success = np.clip(base - np.array(SLOPE) * (complexity[:, None] - 0.5), 0.02, 0.99)
    quality = success * (1 - np.array(FAILURE))
    failure = rng.random((steps, len(BACKENDS))) < np.array(FAILURE)
    liked = rng.random((steps, len(BACKENDS))) < success
    rated = rng.random(steps) < FEEDBACK_RATE
    return Workload(classes, 1.0 - feature, quality, failure, liked, rated)


COSTS = np.array([b.cost_per_request for b in BACKENDS])
CLOUD = next(i for i, b in enumerate(BACKENDS) if b.kind == "cloud")
BIG_LOCAL = 1
# v1 sends local traffic to the large model: list it first so ties (the learned
# router's cold start) pick it too.
ORDERED = [BACKENDS[BIG_LOCAL], *(b for i, b in enumerate(BACKENDS) if i != BIG_LOCAL)]

Policy = Callable[[Workload], np.ndarray]  # returns the chosen backend index per request


def static_policy(threshold: float = STATIC_THRESHOLD) -> Policy:
    def choose(w: Workload) -> np.ndarray:
        return np.where(w.confidence >= threshold, BIG_LOCAL, CLOUD)

    return choose


def constant_policy(index: int) -> Policy:
    def choose(w: Workload) -> np.ndarray:
        return np.full(len(w.classes), index)

    return choose


def oracle_policy(cost_weight: float = COST_WEIGHT) -> Policy:
    def choose(w: Workload) -> np.ndarray:
        return np.argmax(w.quality - cost_weight * COSTS, axis=1)

    return choose


def learned_policy(
    cost_weight: float = COST_WEIGHT,
    seed: int = 0,
    buckets: int = 1,
    budget: float | None = None,
    prior: bool = True,
) -> Policy:
    """The learned router; context = task class (x confidence bucket when ``buckets`` > 1).

    With ``prior`` the request's v1 confidence is the local arms' prior,
    calibrated to v1's threshold; without it the priors are flat per kind.

    With ``budget`` (USD for the whole run) spending is paced: by request t
    the router may have spent at most budget x t / steps; the rest of that
    allowance is passed as ``budget_remaining`` (cloud is skipped above it),
    and the cost weight acts as a shadow price, raised by 1% per request
    while less than 2% of the allowance is left, lowered back otherwise.
    """

    def choose(w: Workload) -> np.ndarray:
        router = LearnedRouter(
            seed=seed,
            cost_weight=cost_weight,
            threshold=STATIC_THRESHOLD,
            prior_strength=PRIOR_STRENGTH,
        )
        index = {b.name: i for i, b in enumerate(BACKENDS)}
        chosen = np.empty(len(w.classes), dtype=int)
        spent = 0.0
        for t in range(len(w.classes)):
            key = _context(w, t, buckets)
            remaining = None
            if budget is not None:
                allowance = budget * (t + 1) / len(w.classes)
                remaining = allowance - spent
                router.cost_weight = _shadow_price(
                    router.cost_weight, cost_weight, remaining / allowance
                )
            decision = router.decide(
                key,
                ORDERED,
                cloud_allowed=True,
                budget_remaining=remaining,
                local_prior_mean=float(w.confidence[t]) if prior else None,
            )
            i = chosen[t] = index[decision.backend]
            spent += COSTS[i]
            failed = bool(w.failure[t, i])
            router.record_outcome(key, decision.backend, "error" if failed else "ok")
            if w.rated[t] and not failed:
                router.update(key, decision.backend, 1.0 if w.liked[t, i] else 0.0)
        return chosen

    return choose


def _shadow_price(current: float, base: float, share_left: float) -> float:
    """Raise the cost weight while less than PACING_RESERVE of the allowance is left."""
    factor = PACING_STEP if share_left < PACING_RESERVE else 1 / PACING_STEP
    return min(max(current * factor, base), 100 * base)


def _context(w: Workload, t: int, buckets: int) -> str:
    name = CLASSES[w.classes[t]]
    if buckets <= 1:
        return name
    return f"{name}/c{min(int(w.confidence[t] * buckets), buckets - 1)}"


@dataclass(frozen=True)
class Result:
    name: str
    regret: np.ndarray  # cumulative regret per step
    quality: float
    cloud_share: float
    spend: float
    early_cloud: float  # cloud share over the first EARLY requests

    def retained(self, all_cloud: Result) -> float:
        return self.quality / all_cloud.quality


def evaluate(name: str, chosen: np.ndarray, w: Workload) -> Result:
    steps = np.arange(len(chosen))
    utility = w.quality - COST_WEIGHT * COSTS
    best = utility.max(axis=1)
    regret = np.cumsum(best - utility[steps, chosen])
    return Result(
        name=name,
        regret=regret,
        quality=float(w.quality[steps, chosen].mean()),
        cloud_share=float((chosen == CLOUD).mean()),
        spend=float(COSTS[chosen].sum()),
        early_cloud=float((chosen[:EARLY] == CLOUD).mean()),
    )


def average(results: Sequence[Result]) -> Result:
    return Result(
        name=results[0].name,
        regret=np.mean([r.regret for r in results], axis=0),
        quality=float(np.mean([r.quality for r in results])),
        cloud_share=float(np.mean([r.cloud_share for r in results])),
        spend=float(np.mean([r.spend for r in results])),
        early_cloud=float(np.mean([r.early_cloud for r in results])),
    )


# The current batch (policies, workloads) and worker processes (--jobs; results do not
# depend on it). Forked workers inherit the batch, closures included.
_BATCH: dict[str, Any] = {"workers": 1}


def _run_one(job: tuple[str, int]) -> Result:
    policies, workloads = _BATCH["policies"], _BATCH["workloads"]
    name, seed = job
    return evaluate(name, policies[name](seed)(workloads[seed]), workloads[seed])


def run(
    policies: dict[str, Callable[[int], Policy]], workloads: list[Workload]
) -> dict[str, Result]:
    _BATCH.update(policies=policies, workloads=workloads)
    jobs = [(name, seed) for name in policies for seed in range(len(workloads))]
    if _BATCH["workers"] > 1:
        with multiprocessing.get_context("fork").Pool(_BATCH["workers"]) as pool:
            done = pool.map(_run_one, jobs)
    else:
        done = [_run_one(job) for job in jobs]
    return {
        name: average([r for (n, _), r in zip(jobs, done, strict=True) if n == name])
        for name in policies
    }


def cloud_avoided_at_95(
    sweep: dict[float, Result], all_cloud: Result
) -> tuple[float, float | None]:
    """Largest share of cloud calls avoided with >= 95% of all-cloud quality, and its knob."""
    best, knob = 0.0, None
    for value, result in sweep.items():
        avoided = 1 - result.cloud_share
        if result.retained(all_cloud) >= 0.95 and avoided > best:
            best, knob = avoided, value
    return best, knob


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    args = parser.parse_args()
    _BATCH["workers"] = args.jobs
    workloads = [make_workload(args.steps, seed) for seed in range(args.seeds)]

    main_results = run(
        {
            "oracle": lambda s: oracle_policy(),
            f"static v1 (threshold {STATIC_THRESHOLD:g})": lambda s: static_policy(),
            "learned, flat prior (per class)": lambda s: learned_policy(seed=s, prior=False),
            "learned, v1 prior (per class)": lambda s: learned_policy(seed=s),
            "learned, v1 prior (per class x confidence half)": lambda s: learned_policy(
                seed=s, buckets=2
            ),
            "learned, v1 prior (per class x confidence quartile)": lambda s: learned_policy(
                seed=s, buckets=4
            ),
            f"learned, v1 prior (per class, ${BUDGETS[0]:g} paced budget)": lambda s: (
                learned_policy(seed=s, budget=BUDGETS[0])
            ),
            f"learned, v1 prior (per class x half, ${BUDGETS[1]:g} paced budget)": lambda s: (
                learned_policy(seed=s, buckets=2, budget=BUDGETS[1])
            ),
            "all cloud": lambda s: constant_policy(CLOUD),
            "all local (70b)": lambda s: constant_policy(BIG_LOCAL),
        },
        workloads,
    )
    all_cloud = main_results["all cloud"]
    sweep_workloads = workloads[:2]
    sweep_cloud = run({"c": lambda s: constant_policy(CLOUD)}, sweep_workloads)["c"]
    static_runs = run(
        {f"s{th}": lambda s, th=th: static_policy(th) for th in THRESHOLDS}, sweep_workloads
    )
    static_sweep = {th: static_runs[f"s{th}"] for th in THRESHOLDS}
    at_95 = {
        f"static v1 (threshold {THRESHOLDS[0]:g}..{THRESHOLDS[-1]:g})": (
            *cloud_avoided_at_95(static_sweep, sweep_cloud),
            "threshold",
        )
    }
    learned_variants: dict[str, dict[str, Any]] = {
        "learned, flat prior (per class)": {"prior": False},
        "learned, v1 prior (per class)": {},
        "learned, v1 prior (per class x confidence half)": {"buckets": 2},
    }
    for name, options in learned_variants.items():
        runs = run(
            {
                f"l{cw}": lambda s, cw=cw, o=options: learned_policy(cw, seed=s, **o)
                for cw in WEIGHTS
            },
            sweep_workloads,
        )
        sweep = {cw: runs[f"l{cw}"] for cw in WEIGHTS}
        label = f"{name} (cost_weight {WEIGHTS[0]:g}..{WEIGHTS[-1]:g})"
        at_95[label] = (*cloud_avoided_at_95(sweep, sweep_cloud), "cost_weight")

    report = render(main_results, all_cloud, at_95, args)
    print(report)
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(report, encoding="utf-8")
    plot(main_results, args)
    return 0


def render(
    results: dict[str, Result],
    all_cloud: Result,
    at_95: dict[str, tuple[float, float | None, str]],
    args: argparse.Namespace,
) -> str:
    lines = [
        "# Routing simulation: static v1 vs learned router",
        "",
        (
            f"{args.steps} requests x {args.seeds} seeds (`python bench/routing_sim.py`); "
            f"utility = quality - {COST_WEIGHT:g} x cost in USD; "
            f"every outcome (ok/error) observed, {FEEDBACK_RATE:.0%} of successful answers "
            "rated; the learned router keeps reliability (outcomes) and satisfaction "
            "(ratings) apart. "
            "Averages over seeds."
        ),
        "",
        (
            "| policy | cumulative regret | quality | retained vs all-cloud | cloud share "
            f"| cloud share, first {EARLY} | cloud spend (USD) |"
        ),
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results.values():
        lines.append(
            f"| {r.name} | {r.regret[-1]:.1f} | {r.quality:.3f} | {r.retained(all_cloud):.1%} "
            f"| {r.cloud_share:.1%} | {r.early_cloud:.1%} | {r.spend:.2f} |"
        )
    lines += [
        "",
        (
            "Cloud calls avoided while keeping >= 95% of all-cloud quality (RouteLLM-style; knob "
            f"swept over {len(THRESHOLDS)} values on the first two seeds):"
        ),
        "",
        "| policy (knob range) | cloud calls avoided | at |",
        "|---|---:|---|",
        *(
            f"| {name} | {avoided:.1%} | {knob_name} {knob:g} |"
            if knob is not None
            else f"| {name} | {avoided:.1%} | never >= 95% |"
            for name, (avoided, knob, knob_name) in at_95.items()
        ),
        "",
        *verdict(results, at_95),
        "",
        "![cumulative regret](../routing_sim.png)",
        "",
    ]
    return "\n".join(lines)


def verdict(
    results: dict[str, Result], at_95: dict[str, tuple[float, float | None, str]]
) -> list[str]:
    """Whether the best learned variant beats static v1 on each measure, stated plainly."""
    static = next(r for name, r in results.items() if name.startswith("static"))
    learned = {n: r for n, r in results.items() if n.startswith("learned") and "budget" not in n}
    best_regret = min(learned.values(), key=lambda r: r.regret[-1])
    static_95 = next(v for n, v in at_95.items() if n.startswith("static"))
    name_95, best_95 = max(
        ((n, v) for n, v in at_95.items() if n.startswith("learned")),
        key=lambda nv: nv[1][0],
    )

    def word(better: bool) -> str:
        return "beats" if better else "does NOT beat"

    return [
        (
            f"Regret: the best learned variant ({best_regret.name}, {best_regret.regret[-1]:.1f}) "
            f"{word(best_regret.regret[-1] < static.regret[-1])} static v1 "
            f"({static.regret[-1]:.1f})."
        ),
        (
            f"Cloud calls avoided at >= 95%: the best learned variant ({name_95}, "
            f"{best_95[0]:.1%}) {word(best_95[0] > static_95[0])} static v1 ({static_95[0]:.1%})"
            + (
                f", by a small margin ({100 * (best_95[0] - static_95[0]):.1f} points on two "
                "seeds and one knob grid): on par or slightly better, not a clear win."
                if 0 < best_95[0] - static_95[0] < 0.02
                else "."
            )
        ),
    ]


def plot(results: dict[str, Result], args: argparse.Namespace) -> None:
    """Cumulative regret curves (matplotlib's object API: no pyplot, no display)."""
    fig = Figure(figsize=(7, 4.2), dpi=120)
    ax = fig.subplots()
    for r in results.values():
        if r.name != "oracle":
            ax.plot(r.regret, label=r.name)
    ax.set_xlabel("requests")
    ax.set_ylabel("cumulative regret (utility)")
    ax.set_title(f"Routing regret vs oracle (mean of {args.seeds} seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(PLOT, metadata={"Software": None})


if __name__ == "__main__":
    raise SystemExit(main())

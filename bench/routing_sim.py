"""Simulate routing policies on a synthetic lab workload (fixed seeds).

Usage: ``python bench/routing_sim.py [--steps N] [--seeds K]`` from the
repository root, with the coordinator installed with its ``bench`` extra.
Writes ``bench/results/routing.md`` and ``bench/routing_sim.png``.

World. Requests belong to five task classes and carry a hidden complexity in
[0, 1]; the router sees the class (as the task classifier would) and a noisy
complexity feature (as the v1 features would). Three backends: a small local
model, a large local model that sometimes times out, and a cloud model that
costs money. Each backend answers well with a hidden probability that
depends on class and complexity. Only some answers get a rating (thumbs
up/down); errors and timeouts are always observed, as reward 0.

Policies.
* static: the v1 stand-in, cloud when the complexity feature >= 0.7, else the
  large local model;
* learned: :class:`LearnedRouter`, one posterior per (task class, backend),
  updated from the observed feedback only; variants with the complexity
  feature quartile in the context, and with a cloud budget;
* oracle: knows the hidden probabilities and picks the best utility;
* all-cloud and all-local as references.

Utility = quality - cost_weight x cost (USD), quality being the expected
success probability of the chosen backend. Regret is the oracle's utility
minus the policy's, summed over requests. As in RouteLLM, we also report the
share of cloud calls avoided while keeping >= 95% of all-cloud quality,
sweeping each policy's knob (threshold, cost_weight).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from hydra_coordinator.routing.learned import Candidate, LearnedRouter
from matplotlib.figure import Figure

HERE = Path(__file__).resolve().parent
REPORT = HERE / "results" / "routing.md"
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
STATIC_THRESHOLD = 0.7
BUDGETS = (60.0, 37.0)  # USD per run for the budget-paced learned router (37 = static's spend)
PACING_STEP = 1.01
PACING_RESERVE = 0.02  # keep 2% of the allowance for requests that need the cloud most


@dataclass(frozen=True)
class Workload:
    """A fixed request stream and every backend's hidden expected quality on it."""

    classes: np.ndarray  # class index per request
    feature: np.ndarray  # observed complexity feature
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
    return Workload(classes, feature, quality, failure, liked, rated)


COSTS = np.array([b.cost_per_request for b in BACKENDS])
CLOUD = next(i for i, b in enumerate(BACKENDS) if b.kind == "cloud")
BIG_LOCAL = 1

Policy = Callable[[Workload], np.ndarray]  # returns the chosen backend index per request


def static_policy(threshold: float = STATIC_THRESHOLD) -> Policy:
    def choose(w: Workload) -> np.ndarray:
        return np.where(w.feature >= threshold, CLOUD, BIG_LOCAL)

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
    cost_weight: float = COST_WEIGHT, seed: int = 0, buckets: int = 1, budget: float | None = None
) -> Policy:
    """The learned router; context = task class (x feature bucket when ``buckets`` > 1).

    With ``budget`` (USD for the whole run) spending is paced: by request t
    the router may have spent at most budget x t / steps; the rest of that
    allowance is passed as ``budget_remaining`` (cloud is skipped above it),
    and the cost weight acts as a shadow price, raised by 1% per request
    while less than 2% of the allowance is left, lowered back otherwise.
    """

    def choose(w: Workload) -> np.ndarray:
        router = LearnedRouter(seed=seed, cost_weight=cost_weight)
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
                key, list(BACKENDS), cloud_allowed=True, budget_remaining=remaining
            )
            i = chosen[t] = index[decision.backend]
            spent += COSTS[i]
            reward = _observed_reward(w, t, i)
            if reward is not None:
                router.update(key, decision.backend, reward)
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
    return f"{name}/c{min(int(w.feature[t] * buckets), buckets - 1)}"


def _observed_reward(w: Workload, t: int, i: int) -> float | None:
    if w.failure[t, i]:
        return 0.0
    if w.rated[t]:
        return 1.0 if w.liked[t, i] else 0.0
    return None


@dataclass(frozen=True)
class Result:
    name: str
    regret: np.ndarray  # cumulative regret per step
    quality: float
    cloud_share: float
    spend: float

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
    )


def average(results: Sequence[Result]) -> Result:
    return Result(
        name=results[0].name,
        regret=np.mean([r.regret for r in results], axis=0),
        quality=float(np.mean([r.quality for r in results])),
        cloud_share=float(np.mean([r.cloud_share for r in results])),
        spend=float(np.mean([r.spend for r in results])),
    )


def run(
    policies: dict[str, Callable[[int], Policy]], workloads: list[Workload]
) -> dict[str, Result]:
    results: dict[str, Result] = {}
    for name, make in policies.items():
        runs = [evaluate(name, make(seed)(w), w) for seed, w in enumerate(workloads)]
        results[name] = average(runs)
    return results


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
    args = parser.parse_args()
    workloads = [make_workload(args.steps, seed) for seed in range(args.seeds)]

    main_results = run(
        {
            "oracle": lambda s: oracle_policy(),
            "static v1 (threshold 0.7)": lambda s: static_policy(),
            "learned (Thompson, per class)": lambda s: learned_policy(seed=s),
            "learned (per class x complexity half)": lambda s: learned_policy(seed=s, buckets=2),
            "learned (per class x complexity quartile)": lambda s: learned_policy(
                seed=s, buckets=4
            ),
            f"learned (per class, ${BUDGETS[0]:g} paced budget)": lambda s: learned_policy(
                seed=s, budget=BUDGETS[0]
            ),
            f"learned (per class x half, ${BUDGETS[1]:g} paced budget)": lambda s: learned_policy(
                seed=s, buckets=2, budget=BUDGETS[1]
            ),
            "all cloud": lambda s: constant_policy(CLOUD),
            "all local (70b)": lambda s: constant_policy(BIG_LOCAL),
        },
        workloads,
    )
    all_cloud = main_results["all cloud"]
    sweep_workloads = workloads[:2]
    static_sweep = {
        th: run({"s": lambda s, th=th: static_policy(th)}, sweep_workloads)["s"]
        for th in np.round(np.arange(0.0, 1.01, 0.05), 2)
    }
    weights = (0.0, 2.0, 5.0, 7.5, 10.0, 12.5, 15.0, 20.0, 30.0)
    learned_sweep = {
        cw: run({"l": lambda s, cw=cw: learned_policy(cw, seed=s)}, sweep_workloads)["l"]
        for cw in weights
    }
    learned2_sweep = {
        cw: run({"l": lambda s, cw=cw: learned_policy(cw, seed=s, buckets=2)}, sweep_workloads)["l"]
        for cw in weights
    }
    sweep_cloud = run({"c": lambda s: constant_policy(CLOUD)}, sweep_workloads)["c"]
    static_95 = cloud_avoided_at_95(static_sweep, sweep_cloud)
    learned_95 = {
        "learned (per class)": cloud_avoided_at_95(learned_sweep, sweep_cloud),
        "learned (per class x complexity half)": cloud_avoided_at_95(learned2_sweep, sweep_cloud),
    }

    report = render(main_results, all_cloud, static_95, learned_95, args)
    print(report)
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(report, encoding="utf-8")
    plot(main_results, args)
    return 0


def render(
    results: dict[str, Result],
    all_cloud: Result,
    static_95: tuple[float, float | None],
    learned_95: dict[str, tuple[float, float | None]],
    args: argparse.Namespace,
) -> str:
    lines = [
        "# Routing simulation: static v1 vs learned router",
        "",
        f"{args.steps} requests x {args.seeds} seeds (`python bench/routing_sim.py`); utility = "
        f"quality - {COST_WEIGHT:g} x cost in USD; {FEEDBACK_RATE:.0%} of answers rated, "
        "errors and timeouts always observed. Averages over seeds.",
        "",
        "| policy | cumulative regret | quality | retained vs all-cloud | cloud share "
        "| cloud spend (USD) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in results.values():
        lines.append(
            f"| {r.name} | {r.regret[-1]:.1f} | {r.quality:.3f} | {r.retained(all_cloud):.1%} "
            f"| {r.cloud_share:.1%} | {r.spend:.2f} |"
        )
    lines += [
        "",
        "Cloud calls avoided while keeping >= 95% of all-cloud quality (RouteLLM-style; knob "
        "swept on the first two seeds):",
        "",
        "| policy | cloud calls avoided | at |",
        "|---|---:|---|",
        f"| static v1 | {static_95[0]:.1%} | threshold {static_95[1]} |",
        *(
            f"| {name} | {avoided:.1%} | cost_weight {knob} |"
            for name, (avoided, knob) in learned_95.items()
        ),
        "",
        "![cumulative regret](../routing_sim.png)",
        "",
    ]
    return "\n".join(lines)


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

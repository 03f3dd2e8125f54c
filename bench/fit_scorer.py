"""Fit and check the cold-start scorer's weights on the routing benchmark (offline research).

Usage: ``python bench/fit_scorer.py`` from the repository root, in the coordinator's venv with
its ``bench`` extra. Fits the weights of the general features on the *train* split by ridge
regression of each prompt's gain (strong - weak) on its features, within each kind (the kinds'
base rates are removed, so the weights rank prompts and do not learn which benchmark a prompt
came from), and prints the weights next to the ones in ``routing/scorer.py`` and the APGR of
v1, the fitted weights and the shipped scorer on the *validation* and *test* splits, per kind.
"""

from __future__ import annotations

import argparse

import numpy as np
from hydra_coordinator.config import RoutingConfig
from hydra_coordinator.routing.features import extract_features
from hydra_coordinator.routing.router import local_confidence
from hydra_coordinator.routing.scorer import BASE, FEATURES, WEIGHTS, cold_score, signals

import routing_data

FIXED = ("design", "code", "tools", "conversation", "short_question", "creative")  # hand-set
# AlpacaEval's judge prefers the strong model's longer answers to short everyday questions
# (the opposite of what a lab wants to pay for): the chat kind is reported, not fitted.
FIT_KINDS = ("knowledge", "maths")
FITTED = tuple(f for f in FEATURES if f not in FIXED)


def v1_score(row: dict[str, object]) -> float:
    confidence, _ = local_confidence(extract_features(dict(row)), RoutingConfig())
    return 1.0 - confidence  # higher = more reason for the cloud


def fit(rows: list[dict[str, object]], ridge: float) -> dict[str, float]:
    xs, ys = [], []
    for kind, part in routing_data.by_kind(rows).items():
        if not part or kind not in FIT_KINDS:
            continue
        x = np.array([[signals(r)[f] for f in FITTED] for r in part])
        y = np.array([float(r["strong"]) - float(r["weak"]) for r in part])  # type: ignore[arg-type]
        xs.append(x - x.mean(axis=0))
        ys.append(y - y.mean())
        del kind
    x, y = np.vstack(xs), np.concatenate(ys)
    w = np.linalg.solve(x.T @ x + ridge * len(y) * np.eye(len(FITTED)), x.T @ y)
    return dict(zip(FITTED, (float(v) for v in w), strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ridge", type=float, default=1e-3)
    args = parser.parse_args()
    rows = routing_data.load()
    train = [r for r in rows if routing_data.split(r) == "train"]
    valid = [r for r in rows if routing_data.split(r) == "validation"]
    weights = fit(train, args.ridge)
    print("feature            fitted   shipped")
    for name in FEATURES:
        fitted = f"{weights[name]:+.3f}" if name in weights else "  (fixed)"
        print(f"{name:18s} {fitted:>8s}  {WEIGHTS[name]:+.3f}")
    print(f"base {BASE:+.3f}\n")
    test = [r for r in rows if routing_data.split(r) == "test"]
    for name, part_rows in (("validation", valid), ("test", test)):
        print(f"APGR on the {name} split (coin 0.50):")
        print("kind        n     v1     fitted  shipped")
        for kind, part in routing_data.by_kind(part_rows).items():
            strong = [float(r["strong"]) for r in part]
            weak = [float(r["weak"]) for r in part]
            v1 = routing_data.apgr([v1_score(r) for r in part], strong, weak)
            fitted = routing_data.apgr(
                [sum(weights[f] * signals(r)[f] for f in FITTED) for r in part], strong, weak
            )
            shipped = routing_data.apgr([cold_score(r).gain for r in part], strong, weak)
            print(f"{kind:10s} {len(part):5d}  {v1:.3f}  {fitted:.3f}   {shipped:.3f}")
        print()


if __name__ == "__main__":
    main()

"""Fit and check the cold-start scorer's weights on the routing benchmark (offline research).

Usage: ``python bench/fit_scorer.py`` from the repository root, in the coordinator's venv with
its ``bench`` extra. Fits the weights of the general features on the *train* split by weighted
ridge regression of each prompt's gain (strong - weak) on its features, within each kind (the
kinds' base rates are removed, so the weights rank prompts and do not learn which benchmark a
prompt came from). The knowledge, maths and chat kinds are fitted; the chat kind has 218 train
prompts against ~7,600 of the others, so each counts ``--chat-weight`` times. The
``instructions`` kind (AlpacaEval, CC-BY-NC-4.0) is evaluation only.

That fit ranks prompts; the level and size of the estimate are then calibrated (``calibrate``:
the gain regressed on the fitted score, kinds pooled), so that the estimated gain can be compared
with the required gain. ``routing/scorer.py`` ships the calibrated weights and base.

Prints the weights next to the ones in ``routing/scorer.py``; the APGR of v1, the fitted
weights and the shipped scorer on the *validation* and *test* splits, per kind; and, because
the chat kind's splits are small (71 and 84 prompts), a repeated five-fold cross-validation on
all 373 chat prompts (each fold fitted on the other four and the other kinds' train split).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import numpy as np
from hydra_coordinator.config import RoutingConfig
from hydra_coordinator.routing.features import extract_features
from hydra_coordinator.routing.router import local_confidence
from hydra_coordinator.routing.scorer import BASE, FEATURES, WEIGHTS, cold_score, signals

import routing_data

Row = dict[str, Any]
# hand-set: tools and long conversations have no benchmark data; design and code keep the weight
# that sends a design question with a few terms of the trade, or a pasted program, to the cloud
FIXED = ("design", "code", "tools", "conversation")
FIT_KINDS = ("knowledge", "maths", "chat")
FITTED = tuple(f for f in FEATURES if f not in FIXED)


def v1_score(row: Row) -> float:
    confidence, _ = local_confidence(extract_features(dict(row)), RoutingConfig())
    return 1.0 - confidence  # higher = more reason for the cloud


def _vector(row: Row) -> list[float]:
    values = signals(row)
    return [values[f] for f in FITTED]


def fit(rows: Sequence[Row], ridge: float, chat_weight: float) -> dict[str, float]:
    xs, ys, ws = [], [], []
    for kind, part in routing_data.by_kind(rows).items():
        if not part or kind not in FIT_KINDS:
            continue
        x = np.array([_vector(r) for r in part])
        # what the hand-set features already explain is taken out: the fit explains the rest
        y = np.array([float(r["strong"]) - float(r["weak"]) - _fixed_score(r) for r in part])
        xs.append(x - x.mean(axis=0))
        ys.append(y - y.mean())
        ws.append(np.full(len(part), chat_weight if kind == "chat" else 1.0))
    x, y, w = np.vstack(xs), np.concatenate(ys), np.concatenate(ws)
    xw = x * w[:, None]
    solved = np.linalg.solve(xw.T @ x + ridge * w.sum() * np.eye(len(FITTED)), xw.T @ y)
    return dict(zip(FITTED, (float(v) for v in solved), strict=True))


def calibrate(
    rows: Sequence[Row], weights: dict[str, float], chat_weight: float
) -> tuple[float, float]:
    """(base, scale) such that base + scale x the fitted score best predicts the gain itself,
    kinds pooled: the fit above ranks prompts within a kind, this sets the level and the size
    of the estimated gain, which the router compares with the required gain."""
    part = [r for r in rows if r["kind"] in FIT_KINDS]
    score = np.array([_fitted_score(weights, r) for r in part])
    gain = np.array([float(r["strong"]) - float(r["weak"]) for r in part])
    w = np.array([chat_weight if r["kind"] == "chat" else 1.0 for r in part])
    design = np.vstack([np.ones_like(score), score]).T
    base, scale = np.linalg.solve((design * w[:, None]).T @ design, (design * w[:, None]).T @ gain)
    return float(base), float(scale)


def _apgr(part: Sequence[Row], scores: Sequence[float]) -> float:
    return routing_data.apgr(scores, [r["strong"] for r in part], [r["weak"] for r in part])


def _fixed_score(row: Row) -> float:
    values = signals(row)
    return sum(WEIGHTS[f] * values[f] for f in FIXED)


def _fitted_score(weights: dict[str, float], row: Row) -> float:
    """The score the fitted weights would ship: the hand-set features' part included."""
    fitted = sum(w * v for w, v in zip(weights.values(), _vector(row), strict=True))
    return fitted + _fixed_score(row)


def report_splits(rows: Sequence[Row], weights: dict[str, float]) -> None:
    for name in ("validation", "test"):
        print(f"APGR on the {name} split (coin 0.50):")
        print("kind            n     v1     fitted  shipped")
        split_rows = [r for r in rows if routing_data.split(r) == name]
        for kind, part in routing_data.by_kind(split_rows).items():
            v1 = _apgr(part, [v1_score(r) for r in part])
            fitted = _apgr(part, [_fitted_score(weights, r) for r in part])
            shipped = _apgr(part, [cold_score(r).gain for r in part])
            print(f"{kind:12s} {len(part):5d}  {v1:.3f}  {fitted:.3f}   {shipped:.3f}")
        print()


def cross_validate_chat(rows: Sequence[Row], args: argparse.Namespace) -> None:
    chat = [r for r in rows if r["kind"] == "chat"]
    others = [r for r in rows if r["kind"] != "chat" and routing_data.split(r) == "train"]
    results: dict[str, list[float]] = {"all": [], "arena-bench": [], "vicuna-bench": []}
    for seed in range(args.cv_repeats):
        order = np.random.RandomState(seed).permutation(len(chat))
        predicted = [0.0] * len(chat)
        for fold in np.array_split(order, 5):
            held = set(int(i) for i in fold)
            train = [r for i, r in enumerate(chat) if i not in held]
            weights = fit(others + train, args.ridge, args.chat_weight)
            for i in held:
                predicted[i] = _fitted_score(weights, chat[i])
        for source, part in results.items():
            index = [i for i, r in enumerate(chat) if source == "all" or r["id"].startswith(source)]
            part.append(_apgr([chat[i] for i in index], [predicted[i] for i in index]))
    print(f"Chat kind, {args.cv_repeats} x 5-fold cross-validation (coin 0.50):")
    print("source          n     v1     fitted (mean, sd)  shipped")
    for source, values in results.items():
        part = [r for r in chat if source == "all" or r["id"].startswith(source)]
        v1 = _apgr(part, [v1_score(r) for r in part])
        shipped = _apgr(part, [cold_score(r).gain for r in part])
        mean, sd = float(np.mean(values)), float(np.std(values))
        print(f"{source:12s} {len(part):5d}  {v1:.3f}  {mean:.3f} ({sd:.3f})     {shipped:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ridge", type=float, default=1e-2)
    parser.add_argument("--chat-weight", type=float, default=5.0)
    parser.add_argument("--cv-repeats", type=int, default=10)
    args = parser.parse_args()
    rows = routing_data.load()
    train = [r for r in rows if routing_data.split(r) == "train"]
    weights = fit(train, args.ridge, args.chat_weight)
    base, scale = calibrate(train, weights, args.chat_weight)
    print("feature            fitted  calibrated  shipped")
    for name in FEATURES:
        fitted = f"{weights[name]:+.3f}" if name in weights else "  (fixed)"
        calibrated = f"{weights[name] * scale:+.3f}" if name in weights else ""
        print(f"{name:18s} {fitted:>8s}  {calibrated:>8s}  {WEIGHTS[name]:+.3f}")
    print(f"{'base':18s} {'':>8s}  {base:+8.3f}  {BASE:+.3f}   (calibration scale {scale:.3f})\n")
    report_splits(rows, weights)
    cross_validate_chat(rows, args)


if __name__ == "__main__":
    main()

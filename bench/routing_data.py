"""The routing benchmark's data and measures, shared by ``fit_scorer.py`` and ``routing_eval.py``.

* :func:`load` reads ``bench/data/routing_benchmark.jsonl.gz`` (built by
  ``build_routing_benchmark.py``; sources and licences in ``bench/data/SOURCES.md``);
* :func:`split` assigns every prompt for good to ``train`` (60 %), ``validation`` (20 %) or
  ``test`` (20 %) by a hash of its id: the scorer is fitted on ``train`` only, the learner is
  taught through the HTTP API with prompts from ``train`` + ``validation`` and judged on
  ``test``, which neither ever saw;
* :func:`apgr` is the area under the quality-vs-cloud-share curve of a score, as the share of
  the strong model's advantage recovered (a coin 0.5, a perfect ranking close to 1);
* :func:`lift_captured` compares a set of decisions with a coin and the oracle at the same
  cloud share (coin 0, oracle 1).
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent / "data" / "routing_benchmark.jsonl.gz"
KINDS = ("knowledge", "maths", "chat", "instructions")
PRICE = {"input": 2.5, "output": 10.0}  # the fake cloud's, US$ per million tokens


# The privacy scan's CPU budget for a simulated stream: a garbage-collection pause, a detector
# library's first use or a busy shared core can run a 10 ms budget out, which keeps that one
# request local (fail closed) and, early in a stream, can flip a whole run. The benchmark
# measures routing, so the budget (tested on its own) is out of the way.
STREAM_PRIVACY = {"scan_cpu_ms": 10_000.0}


def stream_routing(routing: dict[str, Any]) -> dict[str, Any]:
    """``routing`` settings for a simulated stream: weeks of a lab's traffic in a minute from
    one API key, so the per-key hourly bound on ratings (an abuse guard, tested on its own)
    is off; it would drop a third of them."""
    return {**routing, "learned": {"key_ratings_per_hour": 0, **routing.get("learned", {})}}


def load(path: Path = DATA) -> list[dict[str, Any]]:
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        return [json.loads(line) for line in lines]


def split(row: dict[str, Any]) -> str:
    bucket = int(hashlib.sha256(row["id"].encode()).hexdigest()[:8], 16) % 10
    return "train" if bucket < 6 else "validation" if bucket < 8 else "test"


def apgr(scores: Sequence[float], strong: Sequence[float], weak: Sequence[float]) -> float:
    """Area under quality vs cloud share (prompts sent to the cloud by descending score).

    Ties are sent together at the average quality (what a random order within them gives),
    and the area is normalised: (area - weak quality) / (strong quality - weak quality).
    """
    n = len(scores)
    order = sorted(range(n), key=lambda i: -scores[i])
    quality = sum(weak) / n
    area = 0.0
    i = 0
    while i < n:
        j = i
        while j < n and scores[order[j]] == scores[order[i]]:
            j += 1
        step = sum(strong[order[k]] - weak[order[k]] for k in range(i, j)) / n
        area += (j - i) / n * (quality + step / 2)  # trapezoid over the tie group
        quality += step
        i = j
    low, high = sum(weak) / n, sum(strong) / n
    return (area - low) / (high - low)


def lift_captured(
    cloud: Sequence[bool], strong: Sequence[float], weak: Sequence[float]
) -> tuple[float, float]:
    """(lift captured, cloud share): (q - coin) / (oracle - coin) at the decisions' cloud share.

    The oracle sends the same number of prompts to the cloud, those with the largest gain;
    the coin sends a random set of that size (its expected quality).
    """
    n = len(cloud)
    k = sum(cloud)
    gains = [s - w for s, w in zip(strong, weak, strict=True)]
    base = sum(weak) / n
    quality = base + sum(g for g, c in zip(gains, cloud, strict=True) if c) / n
    coin = base + k / n * sum(gains) / n
    oracle = base + sum(sorted(gains, reverse=True)[:k]) / n
    if oracle - coin <= 1e-12:
        return 0.0, k / n
    return (quality - coin) / (oracle - coin), k / n


def by_kind(rows: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
    for row in rows:
        groups[row["kind"]].append(row)
    return groups

"""Emergent groups of prompts and the learner's estimate for each (used by :mod:`.bandit`).

Groups. A prompt's *sketch* is its hashed words folded into ``2**SKETCH_BITS`` dimensions (each
word worth ``WORD_SCALE`` / sqrt(number of words)) followed by the scorer's features. At most
``GROUPS`` centroids are kept (online k-means, Euclidean): while there is room, a prompt farther
than ``SPAWN_DISTANCE`` from every centroid starts a new one; otherwise it moves its nearest
centroid towards it by 1 / (prompts the centroid has seen, at most ``MAX_COUNT``). A prompt
belongs to its nearest centroid if it is within ``JOIN_DISTANCE``, else (all groups taken) to
none. No label is used: the groups are what the traffic looks like (on the routing benchmark,
multiple-choice questions, word problems and open instructions largely fall in different
groups; chat prompts share the instructions' groups).

Levels. Per group, an exact Bayesian linear regression of the ratings' residuals r (the rating
less the cold-start prior) on h = (cloud, local, g - ``CENTRE``): a cloud backend's offset c, a
local backend's offset l, and a slope of both along the cold-start gain g (prompts the scorer
expects the cloud to win by much are often harder for both). The offsets' priors are not alike:
a local model's quality varies across tasks much more than a frontier model's, so ``LOCAL_PRIOR``
is loose and ``CLOUD_PRIOR`` tight: ratings of the local backend that are low across a group
raise the group's gain c - l (a group of prompts the local model fails), and the cloud's ratings
correct c where it was tried. The state is sufficient statistics (the sums of h h' and h r), so
a rating is taken back exactly.

Memory: ``GROUPS`` x (``2**SKETCH_BITS`` + features) floats and 9 floats per group; CPU per
request: a dot product of the prompt's sketch (at most 64 words dimensions and 19 features)
with each centroid, gathered by ``itemgetter`` (~0.15 ms for 32 groups and a 2 KB prompt), and a
3 x 3 solve for a group whose statistics changed.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable, Mapping, Sequence
from operator import itemgetter, mul
from typing import Any

__all__ = ["GROUPS", "GroupLevels", "Groups", "Sketch"]

GROUPS = 32
SKETCH_BITS = 6
_SKETCH = 1 << SKETCH_BITS
WORD_SCALE = 0.5  # the words' length in a sketch (the features' values are as they are)
SPAWN_DISTANCE = 0.5  # squared distance past which a prompt starts a group while there is room
JOIN_DISTANCE = 2.0  # squared distance past which a prompt is in no group (when full)
MAX_COUNT = 1000.0  # a centroid's learning rate stops falling at 1 / MAX_COUNT

NOISE = 0.25  # variance of one rating
CLOUD_PRIOR = 0.01  # prior variance of a group's offset of a cloud backend's quality
LOCAL_PRIOR = 0.09  # the same for a local backend (whose quality varies more across tasks)
SLOPE_PRIOR = 0.25  # prior variance of the slope of both along the cold-start gain
CENTRE = 0.3  # the cold-start gain the offsets are measured at


def _nothing(centroid: array[float]) -> tuple[float, ...]:
    del centroid
    return ()


class Sketch:
    """A prompt in the clustering space, sparse: its coordinates and their values."""

    __slots__ = ("get", "index", "norm", "values")

    def __init__(self, words: Sequence[int], features: Sequence[float]) -> None:
        folded: dict[int, int] = {}
        for w in words:
            d = w & (_SKETCH - 1)
            folded[d] = folded.get(d, 0) + 1
        word = WORD_SCALE / len(words) ** 0.5 if words else 0.0
        index = list(folded)
        values = [word * c for c in folded.values()]
        for i, f in enumerate(features):
            if f:
                index.append(_SKETCH + i)
                values.append(f)
        self.norm = sum(v * v for v in values)
        if len(index) == 1:  # itemgetter of one index returns the item, not a 1-tuple
            index.append(index[0])
            values.append(0.0)
        self.index, self.values = index, values
        # gathers the sketch's coordinates of a centroid (in C)
        self.get: Callable[[array[float]], tuple[float, ...]] = (
            itemgetter(*index) if index else _nothing
        )


class Groups:
    """At most ``size`` centroids over sketches of ``features`` scorer features."""

    def __init__(self, size: int, features: int) -> None:
        self.size = size
        self.features = features
        self.centroids: list[array[float]] = []
        self.norms: list[float] = []  # squared length of each centroid
        self.counts: list[float] = []

    def _distances(self, sketch: Sketch) -> list[float]:
        """Squared distance from ``sketch`` to each centroid, less the sketch's own length."""
        out = []
        for centroid, norm in zip(self.centroids, self.norms, strict=True):
            dot = sum(map(mul, sketch.values, sketch.get(centroid)))
            out.append(norm - 2.0 * dot)
        return out

    def _nearest(self, sketch: Sketch) -> tuple[int, float]:
        """The nearest centroid's index (-1: none yet) and its squared distance."""
        distances = self._distances(sketch)
        if not distances:
            return -1, math.inf
        best = min(range(len(distances)), key=distances.__getitem__)
        return best, distances[best] + sketch.norm

    def nearest(self, sketch: Sketch) -> int:
        """The group of ``sketch``: its nearest centroid, -1 when none is within reach."""
        best, distance = self._nearest(sketch)
        return best if distance <= JOIN_DISTANCE else -1

    def learn(self, sketch: Sketch) -> int:
        """The group of ``sketch``, whose centroid moves towards it: a new one when there is
        room and no centroid is within ``SPAWN_DISTANCE``, -1 when there is none and no
        centroid is within reach."""
        best, distance = self._nearest(sketch)
        if distance > SPAWN_DISTANCE and len(self.centroids) < self.size:
            self.centroids.append(array("d", [0.0]) * (_SKETCH + self.features))
            self.norms.append(0.0)
            self.counts.append(0.0)
            best = len(self.centroids) - 1
        elif distance > JOIN_DISTANCE:
            return -1
        self._move(best, sketch)
        return best

    def _move(self, index: int, sketch: Sketch) -> None:
        """The online k-means step: the centroid by 1 / count towards ``sketch``."""
        self.counts[index] = min(MAX_COUNT, self.counts[index] + 1.0)
        rate = 1.0 / self.counts[index]
        centroid = self.centroids[index]
        keep = 1.0 - rate
        for i in range(len(centroid)):
            centroid[i] *= keep
        for d, v in zip(sketch.index, sketch.values, strict=True):
            centroid[d] += rate * v
        self.norms[index] = sum(map(mul, centroid, centroid))

    def to_json(self) -> dict[str, Any]:
        return {
            "sketch_bits": SKETCH_BITS,
            "counts": list(self.counts),
            "centroids": [list(c) for c in self.centroids],
        }

    def load(self, data: Mapping[str, Any]) -> None:
        """Restore :meth:`to_json` output (ValueError when it does not fit)."""
        if data.get("sketch_bits") != SKETCH_BITS:
            raise ValueError("prompt groups of another sketch size")
        centroids = [array("d", map(float, c)) for c in data["centroids"]]
        counts = [float(c) for c in data["counts"]]
        if len(centroids) != len(counts) or len(centroids) > self.size:
            raise ValueError("malformed prompt groups")
        if any(len(c) != _SKETCH + self.features for c in centroids):
            raise ValueError("prompt groups for other scorer features")
        self.centroids, self.counts = centroids, counts
        self.norms = [sum(map(mul, c, c)) for c in centroids]


def _solve(m: list[list[float]], b: list[float]) -> list[float]:
    """x with m x = b, m small, symmetric and positive definite (Gaussian elimination)."""
    n = len(b)
    rows = [[*m[i], b[i]] for i in range(n)]
    for k in range(n):
        for i in range(k + 1, n):
            f = rows[i][k] / rows[k][k]
            for j in range(k, n + 1):
                rows[i][j] -= f * rows[k][j]
    x = [0.0] * n
    for i in reversed(range(n)):
        x[i] = (rows[i][n] - sum(rows[i][j] * x[j] for j in range(i + 1, n))) / rows[i][i]
    return x


class GroupLevels:
    """Per group, the posterior of (cloud offset, local offset, slope) (see module docs)."""

    def __init__(self, size: int) -> None:
        # per group: the upper triangle of sum(w h h') (6 values), then sum(w h r) (3)
        self.stats = [[0.0] * 9 for _ in range(size)]
        self._cache: dict[int, tuple[list[float], float]] = {}

    def add(self, group: int, cloud: bool, gain: float, residual: float, weight: float) -> None:
        """Count (a negative ``weight``: take back) a rating's ``residual`` over the cold
        start of a prompt of cold-start gain ``gain``."""
        h = (1.0 if cloud else 0.0, 0.0 if cloud else 1.0, gain - CENTRE)
        row = self.stats[group]
        k = 0
        for i in range(3):
            for j in range(i, 3):
                row[k] += weight * h[i] * h[j]
                k += 1
        for i in range(3):
            row[6 + i] += weight * h[i] * residual
        self._cache.pop(group, None)

    def _posterior(self, group: int) -> tuple[list[float], float]:
        """The posterior mean of (c, l, slope) and the variance of c - l."""
        found = self._cache.get(group)
        if found is None:
            s = [v / NOISE for v in self.stats[group]]
            m = [
                [1.0 / CLOUD_PRIOR + s[0], s[1], s[2]],
                [s[1], 1.0 / LOCAL_PRIOR + s[3], s[4]],
                [s[2], s[4], 1.0 / SLOPE_PRIOR + s[5]],
            ]
            mean = _solve(m, s[6:9])
            var = sum(map(mul, _solve(m, [1.0, -1.0, 0.0]), (1.0, -1.0, 0.0)))
            found = self._cache[group] = (mean, var)
        return found

    def offset(self, group: int, cloud: bool, gain: float) -> float:
        """What the group adds to a backend's quality at cold-start gain ``gain``."""
        if group < 0:
            return 0.0
        (c, local, slope), _ = self._posterior(group)
        return (c if cloud else local) + slope * (gain - CENTRE)

    def gain(self, group: int) -> tuple[float, float]:
        """(mean, variance) of what the group adds to the cloud's gain."""
        if group < 0:
            return 0.0, 0.0
        (c, local, _), var = self._posterior(group)
        return c - local, var

    def ratings(self, group: int) -> tuple[float, float]:
        """(cloud, local) ratings the group has counted (weighted)."""
        row = self.stats[group]
        return row[0], row[3]

    def to_json(self) -> list[list[float]]:
        return [list(row) for row in self.stats]

    def load(self, rows: Sequence[Sequence[float]]) -> None:
        """Restore :meth:`to_json` output (ValueError when it does not fit)."""
        if len(rows) != len(self.stats) or any(len(r) != 9 for r in rows):
            raise ValueError("prompt group levels of another size")
        self.stats = [[float(v) for v in row] for row in rows]
        self._cache.clear()

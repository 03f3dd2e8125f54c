"""What a router believes about one request, for ``/route``, ``hydra-coordinator route`` and MCP.

A router (the cold-start scorer, the learned router) fills an :class:`Explanation`: one
:class:`BackendEstimate` per eligible backend, the choice it would make on its expected values
(deterministic: posterior means) and whether the decision itself was taken on a random draw
(Thompson sampling explores). :func:`decision_confidence` turns the estimates into the
decision's ``confidence``: the probability that the chosen route (local or cloud) is the better
one for this request.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["BackendEstimate", "Explanation", "decision_confidence", "prefer_probability"]

Kind = Literal["local", "cloud"]


@dataclass(frozen=True, slots=True)
class BackendEstimate:
    """What the router believes about one eligible backend for this request.

    ``quality`` is the expected quality of its answer in [0, 1] (the probability of a good
    answer), ``uncertainty`` the standard deviation of that belief, ``cost_usd`` the request's
    expected cost on it, ``utility`` what the router maximises on expected values (quality minus
    ``cost_weight`` x cost) and ``sample`` this decision's random draw of the utility (None when
    the decision was taken on expected values)."""

    backend: str
    kind: Kind
    quality: float
    uncertainty: float
    cost_usd: float
    utility: float
    sample: float | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "backend": self.backend,
            "kind": self.kind,
            "quality": round(self.quality, 4),
            "uncertainty": round(self.uncertainty, 4),
            "cost_usd": round(self.cost_usd, 6),
            "utility": round(self.utility, 4),
            "sample": None if self.sample is None else round(self.sample, 4),
        }


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why the router chose: filled by the router that decided, shown by ``/route``.

    ``expected_backend`` is the backend the router picks on expected values (posterior means):
    the same every time for the same request and state. ``sampled_backend`` is the one its
    random draw for this request picked (Thompson sampling: what a real request uses; None when
    the router does not sample), and ``sampled`` is True when the decision itself is that draw
    (a real request; a preview decides on expected values).
    ``local_score`` is the cold-start scorer's estimate that a local model suffices (v1's
    confidence), ``pacing`` where the month's cloud spend stands against the operator's pace
    (when set), ``strategy`` the router that decided (``learned``, ``threshold`` or ``forced``
    when the client named a class or a model)."""

    strategy: str
    estimates: tuple[BackendEstimate, ...] = ()
    expected_backend: str | None = None
    sampled: bool = False
    sampled_backend: str | None = None
    local_score: float | None = None
    scorer: tuple[str, ...] = field(default=())  # what the cold-start scorer counted
    pacing: Mapping[str, float | None] | None = None  # the monthly pace (knobs.Pace.as_dict)

    def estimate(self, backend: str | None) -> BackendEstimate | None:
        return next((e for e in self.estimates if e.backend == backend), None)

    def cloud_gain(self) -> tuple[float, float] | None:
        """Expected quality gain of the best cloud backend over the best local one for this
        request, and its standard deviation; None unless both kinds are eligible."""
        best = {kind: self._best(kind) for kind in ("local", "cloud")}
        local, cloud = best["local"], best["cloud"]
        if local is None or cloud is None:
            return None
        return cloud.quality - local.quality, math.hypot(cloud.uncertainty, local.uncertainty)

    def _best(self, kind: Kind) -> BackendEstimate | None:
        of_kind = [e for e in self.estimates if e.kind == kind]
        return max(of_kind, key=lambda e: e.quality) if of_kind else None


def prefer_probability(a: BackendEstimate, b: BackendEstimate) -> float:
    """The probability that ``a``'s utility beats ``b``'s, beliefs taken as independent normals."""
    spread = math.hypot(a.uncertainty, b.uncertainty)
    gap = a.utility - b.utility
    if spread <= 0:
        return 1.0 if gap > 0 else 0.0 if gap < 0 else 0.5
    return 0.5 * (1.0 + math.erf(gap / (spread * math.sqrt(2.0))))


def decision_confidence(estimates: Sequence[BackendEstimate], chosen: str | None) -> float | None:
    """The probability that the route of ``chosen`` is the better one: that it beats the best
    backend (on expected utility) of the other kind. 1.0 when no backend of the other kind is
    eligible; None when ``chosen`` has no estimate."""
    mine = next((e for e in estimates if e.backend == chosen), None)
    if mine is None:
        return None
    others = [e for e in estimates if e.kind != mine.kind]
    if not others:
        return 1.0
    return prefer_probability(mine, max(others, key=lambda e: e.utility))

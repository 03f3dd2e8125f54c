"""The operator's knob in their own terms: a target share of requests sent to the cloud.

The router sends a request to the cloud when the cloud's quality gain, net of ``cost_weight`` x
its cost, beats a *required gain*. By default that is 1 - ``routing.threshold`` +
``routing.learned.local_margin``. With ``routing.target_cloud_share`` set, :class:`CloudShare`
keeps the net gains the last ``window`` requests were decided on (sampled ones, once the router
samples) and sets the required gain to their (1 - share) quantile, so about that share of
requests, those with the largest gain, go to the cloud: quality is maximised under the share
rather than the share following from the weights.
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass, field

__all__ = ["CloudShare"]


@dataclass
class CloudShare:
    """Required gain that keeps the cloud share near ``target`` (a running quantile)."""

    target: float
    default: float  # the required gain before any request was seen
    window: int = 1000
    _recent: deque[float] = field(default_factory=deque, init=False, repr=False)
    _sorted: list[float] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.target <= 1.0:
            raise ValueError(f"target cloud share must be within [0, 1], got {self.target!r}")

    def required_gain(self) -> float:
        n = len(self._sorted)
        if n < 20:
            return self.default
        if self.target >= 1.0:
            return -2.0
        if self.target <= 0.0:
            return 2.0
        index = min(n - 1, int((1.0 - self.target) * n))
        return self._sorted[index]

    def observe(self, net_gain: float) -> None:
        """Record a routed request's expected gain, net of cost."""
        self._recent.append(net_gain)
        bisect.insort(self._sorted, net_gain)
        if len(self._recent) > self.window:
            old = self._recent.popleft()
            del self._sorted[bisect.bisect_left(self._sorted, old)]

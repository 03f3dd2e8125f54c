"""The operator's knobs in their own terms: a target share of requests sent to the cloud, or a
monthly cloud spend the router paces to.

The router sends a request to the cloud when the cloud's quality gain, net of ``cost_weight`` x
its cost, beats a *required gain*. By default that is 1 - ``routing.threshold`` +
``routing.learned.local_margin``. With ``routing.target_cloud_share`` set, :class:`CloudShare`
keeps the net gains the last ``window`` requests were decided on (sampled ones, once the router
samples) and sets the required gain to their (1 - share) quantile, so about that share of
requests, those with the largest gain, go to the cloud: quality is maximised under the share
rather than the share following from the weights.

With ``routing.pacing.monthly_usd`` set, :class:`Pacer` sets the required gain so that the cloud
spend follows the pace: what is left of the month's budget over what is left of the month. It
keeps the net gains and expected cloud costs of the last ``window`` requests and when they came;
what the pace allows over the time those requests took, over what they would all have cost on
the cloud, is the share of them that the budget pays for, and the required gain is that share's
quantile of their net gains: the requests that gain most go to the cloud first. Expected costs
are corrected by how the real costs of paced requests compared with them, and half of what the
recent requests spent beyond what the pace allowed them (or under it) comes off the next ones'
share (or is added to it). Overspending also lowers the pace for the rest of the month,
underspending raises it (the required gain never goes
below 0: the cloud is not paid for an answer expected to be no better); a spent budget keeps
every request that the router decides local until the month ends. This is not the budgets' hard
cap (``budgets``): it decides which requests the money is best spent on, and spends it evenly.
"""

from __future__ import annotations

import bisect
import calendar
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..telemetry.record import RequestRecord

__all__ = ["CloudShare", "Pace", "Pacer"]

NEVER = 2.0  # a required gain no estimate reaches (gains are within [-1, 1])
_MIN_HISTORY = 20  # requests seen before a knob moves the required gain
_CATCH_UP = 0.5  # share of the recent requests' over- or underspend the next ones make good


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
        # the cloud takes the requests whose net gain is *above* the required gain: halfway
        # between the last one kept local and the first one sent, so that ties and rounding
        # (int(0.4 * 20) is 7) do not decide a whole group of equal gains
        count = round(self.target * n)
        if count >= n:
            return self._sorted[0] - 1e-6
        if count <= 0:
            return self._sorted[-1]
        below = n - count - 1
        return (self._sorted[below] + self._sorted[below + 1]) / 2

    def observe(self, net_gain: float) -> None:
        """Record a routed request's expected gain, net of cost."""
        self._recent.append(net_gain)
        bisect.insort(self._sorted, net_gain)
        if len(self._recent) > self.window:
            old = self._recent.popleft()
            del self._sorted[bisect.bisect_left(self._sorted, old)]


def month_of(now: float) -> str:
    return time.strftime("%Y-%m", time.gmtime(now))


def month_end(now: float) -> float:
    t = time.gmtime(now)
    year, month = (t.tm_year + 1, 1) if t.tm_mon == 12 else (t.tm_year, t.tm_mon + 1)
    return float(calendar.timegm((year, month, 1, 0, 0, 0)))


@dataclass(frozen=True, slots=True)
class Pace:
    """Where the month's cloud spend stands, and the required gain that follows from it."""

    monthly_usd: float
    spent_usd: float  # this month, real costs of cloud requests
    pace_usd_per_day: float  # what is left over the days left: the spend rate wanted
    share: float | None  # share of recent requests the pace pays for (None: too few seen)
    cost_ratio: float  # real cost of a paced cloud request over its expected cost
    required_gain: float

    def as_dict(self) -> dict[str, float | None]:
        return {
            "monthly_usd": self.monthly_usd,
            "spent_usd": round(self.spent_usd, 6),
            "pace_usd_per_day": round(self.pace_usd_per_day, 6),
            "share": None if self.share is None else round(self.share, 4),
            "cost_ratio": round(self.cost_ratio, 4),
            "required_gain": round(self.required_gain, 4),
        }

    def describe(self) -> str:
        share = "" if self.share is None else f", {self.share:.0%} of recent requests"
        return (
            f"pacing: ${self.spent_usd:.2f} of ${self.monthly_usd:g} spent this month; "
            f"${self.pace_usd_per_day:.4f}/day left to spend{share}"
        )


@dataclass
class Pacer:
    """Required gain that makes the month's cloud spend follow ``monthly_usd`` (module docs).

    It is a telemetry sink (:meth:`emit`): the real cost of every cloud request counts against
    the month, whatever routed it (a client may name a cloud model)."""

    monthly_usd: float
    default: float  # the required gain before ``_MIN_HISTORY`` requests were seen
    window: int = 1000
    clock: Callable[[], float] = time.time
    spent_usd: float = 0.0
    month: str = ""
    changed: bool = field(default=False, init=False)
    # (when, net gain, expected cost of the cloud) of the last requests decided
    _recent: deque[tuple[float, float, float]] = field(default_factory=deque, init=False)
    _sorted: list[float] = field(default_factory=list, init=False, repr=False)
    _window_cost: float = field(default=0.0, init=False)
    # request id -> expected cost, of requests the router sent to the cloud (bounded)
    _sent: OrderedDict[str, float] = field(default_factory=OrderedDict, init=False, repr=False)
    _expected: float = field(default=0.0, init=False)  # decayed sums of paired costs
    _actual: float = field(default=0.0, init=False)
    _spends: deque[tuple[float, float]] = field(default_factory=deque, init=False, repr=False)
    _window_spent: float = field(default=0.0, init=False)  # real costs since _recent[0]

    def __post_init__(self) -> None:
        if self.monthly_usd <= 0:
            raise ValueError(f"monthly spend must be positive, got {self.monthly_usd!r}")

    def _roll(self, now: float) -> None:
        month = month_of(now)
        if month != self.month:
            self.month, self.spent_usd, self.changed = month, 0.0, True

    def cost_ratio(self) -> float:
        """Real over expected cost of the cloud requests this pacer sent (1 before any)."""
        if self._expected <= 0 or self._actual <= 0:
            return 1.0
        return min(10.0, max(0.01, self._actual / self._expected))

    def status(self) -> Pace:
        now = self.clock()
        self._roll(now)
        left = self.monthly_usd - self.spent_usd
        rate = max(0.0, left) / max(1.0, month_end(now) - now)  # US$ per second
        ratio = self.cost_ratio()
        share: float | None = None
        if left <= 0:
            required = NEVER
        elif len(self._recent) < _MIN_HISTORY:
            required = self.default
        else:
            start = self._recent[0][0]
            while self._spends and self._spends[0][0] < start:
                self._window_spent -= self._spends.popleft()[1]
            allowed = rate * max(1.0, now - start)
            # half of what the recent requests spent beyond what the pace allowed them (or
            # under it) comes off the next ones' share (or is added to it)
            wanted = max(0.0, allowed + _CATCH_UP * (allowed - self._window_spent))
            share = min(1.0, wanted / max(1e-12, self._window_cost * ratio))
            n = len(self._sorted)
            index = int((1.0 - share) * n)
            required = NEVER if index >= n else max(0.0, self._sorted[index])
        return Pace(self.monthly_usd, self.spent_usd, rate * 86400, share, ratio, required)

    def required_gain(self) -> float:
        return self.status().required_gain

    def observe(
        self, net_gain: float, cost: float, *, request_id: str | None = None, sent: bool = False
    ) -> None:
        """Record a routed request: the net gain it was decided on and what the cloud was
        expected to cost; ``sent``: it went to the cloud (its real cost then calibrates)."""
        now = self.clock()
        self._recent.append((now, net_gain, cost))
        self._window_cost += cost
        bisect.insort(self._sorted, net_gain)
        if len(self._recent) > self.window:
            _, old, old_cost = self._recent.popleft()
            self._window_cost -= old_cost
            del self._sorted[bisect.bisect_left(self._sorted, old)]
        if sent and request_id is not None:
            self._sent[request_id] = cost
            while len(self._sent) > self.window:
                self._sent.popitem(last=False)

    def unsettled(self) -> int:
        """Requests this pacer sent to the cloud whose real cost is not in yet."""
        return len(self._sent)

    def emit(self, record: RequestRecord) -> None:
        """Telemetry sink: a cloud request's real cost counts against the month."""
        expected = self._sent.pop(record.request_id, None)
        if record.route != "cloud" or not record.cost_usd:
            return
        now = self.clock()
        self._roll(now)
        self.spent_usd += record.cost_usd
        self._spends.append((now, record.cost_usd))
        self._window_spent += record.cost_usd
        if len(self._spends) > 2 * self.window:
            self._window_spent -= self._spends.popleft()[1]
        self.changed = True
        if expected is not None and expected > 0:
            self._expected = 0.99 * self._expected + expected
            self._actual = 0.99 * self._actual + record.cost_usd

    def to_json(self) -> dict[str, Any]:
        self.changed = False
        return {
            "month": self.month,
            "spent_usd": self.spent_usd,
            "expected": self._expected,
            "actual": self._actual,
        }

    def load_json(self, data: Mapping[str, Any]) -> None:
        """Restore :meth:`to_json` output; a past month's spend is not carried over."""
        try:
            month, spent = str(data["month"]), float(data["spent_usd"])
            expected, actual = float(data.get("expected", 0.0)), float(data.get("actual", 0.0))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed pacing state: {exc!r}") from None
        self._roll(self.clock())
        if month == self.month:
            self.spent_usd = max(0.0, spent)
        self._expected, self._actual = max(0.0, expected), max(0.0, actual)

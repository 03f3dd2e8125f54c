"""A router that learns from outcomes and ratings: Thompson sampling per task class.

Model. For every (task class, backend) pair the router keeps two Beta posteriors:

* reliability R, the probability that a call succeeds at all. It learns from the
  outcome of *every* request (:meth:`LearnedRouter.record_outcome`): ``ok`` counts
  as a success, ``error`` and ``timeout`` as failures, ``truncated`` as a partial
  failure (see :func:`outcome_credit`);
* satisfaction S, the probability that a successful answer is good. It learns from
  ratings only (:meth:`LearnedRouter.update`, a reward in [0, 1]: thumbs up 1,
  thumbs down 0, see :func:`rating_reward`), which come for a minority of requests.

The quality of a backend is R x S. Keeping the two apart removes a bias of a single
posterior fed with both: errors are seen on every request but successes only when
someone rates, so a single posterior overstates errors by 1 / (rating rate).

Decision. For one request the router draws r from R and s from S for each eligible
backend (S optionally sharpened by the knowledge base's nearest past queries,
``neighbours``: backend, rating, similarity), and picks the highest utility
r x s - cost_weight * cost. A *local margin* keeps requests local when a local
backend's quality sample is within ``local_margin`` of the best cloud one: equal
quality should not cost money. Sampling is the exploration: uncertain backends
sometimes win their draw and are tried, certain ones settle. Exploration never
reaches the cloud when ``cloud_allowed`` is False (privacy ``local_only`` or an
exhausted budget) nor a cloud backend that costs more than ``budget_remaining``.

Per-request prior. The caller may pass v1's confidence that a local model
suffices (``local_prior_mean``, :func:`hydra_coordinator.routing.router.local_confidence`).
A local arm's *satisfaction* then starts from Beta(s * m, s * (1 - m)) instead of
``prior_local`` (s = ``prior_strength``), with m the confidence *calibrated*
against the cloud: m = t + (c - threshold), where t is the local satisfaction at
which a local backend ties the cheapest eligible cloud one under the priors, the
cost weight and the local margin (t = min(q - cost_weight * cost / r, q -
local_margin / r), q the cloud satisfaction prior mean, r the reliability prior
mean, the same for every kind). So m >= t exactly when c >= threshold, and with no
evidence at all the decision is taken on posterior means, without a random draw:
the router then routes as v1 does (local iff c >= threshold; ties go local, and
among local backends the first listed wins, so list them in v1's order). Until the
first rating (no satisfaction evidence) decisions stay on posterior means, so
outcomes alone adjust v1's choice by the reliability seen but do not explore.
Evidence (the arm's own and the parent classes', see ``backoff``) is added to the
priors as usual, and moves decisions away from v1 where v1 is wrong. This holds
while t + (c - threshold) stays inside (0.01, 0.99), where m is clamped.

State is plain numbers, serialised with :meth:`LearnedRouter.to_json` and
restored with :meth:`LearnedRouter.from_json` (state of version 1, a single
posterior per pair, loads as satisfaction evidence). A router instance is not
thread-safe; the coordinator uses it from one event loop.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .explanation import BackendEstimate

Kind = Literal["local", "cloud"]
Outcome = Literal["ok", "error", "timeout", "truncated"]

STATE_VERSION = 2
_TIE = 1e-9  # utilities this close count as equal; ties go to the local backend
_PRIOR_MEAN_RANGE = (0.01, 0.99)
_OUTCOME_CREDIT: Mapping[str, float] = {"ok": 1.0, "error": 0.0, "timeout": 0.0, "truncated": 0.25}


def rating_reward(rating: float) -> float:
    """Map a user rating in [-1, 1] (thumbs down .. up) to a reward in [0, 1]."""
    return _clamp((rating + 1.0) / 2.0)


def outcome_credit(outcome: Outcome) -> float:
    """Reliability credit of an outcome: 1 for ``ok``, 0 for errors and timeouts.

    A truncated answer is a partial failure (0.25). ValueError for an unknown outcome.
    """
    try:
        return _OUTCOME_CREDIT[outcome]
    except KeyError:
        raise ValueError(f"unknown outcome {outcome!r}") from None


def _clamp(value: float, low: float = 0.0, high: float = 1.0) -> float:
    return min(high, max(low, value))


class NoEligibleBackend(ValueError):
    """No candidate may take the request (e.g. only cloud backends and cloud not allowed)."""


@dataclass(frozen=True)
class Candidate:
    """A backend the request could go to, with its expected cost in USD."""

    name: str
    kind: Kind
    cost_per_request: float = 0.0


@dataclass(frozen=True)
class LearnedDecision:
    """The chosen backend and why.

    ``score`` is the chosen backend's sampled utility; ``explored`` is True
    when the draw chose a backend other than the best by posterior mean
    (``expected``). ``estimates`` holds each eligible backend's quality belief
    (posterior mean and standard deviation), cost and utility; ``sampled`` is
    False when the choice was taken on posterior means (no evidence yet).
    """

    backend: str
    kind: str
    task_class: str
    score: float
    reasons: list[str]
    explored: bool
    expected: str = ""
    sampled: bool = True
    estimates: tuple[BackendEstimate, ...] = ()


@dataclass
class Arm:
    """Evidence about one (task class, backend) pair.

    Satisfaction: summed rating rewards (``wins``) and their complements
    (``losses``); reliability: successful (``ok``) and failed calls. The
    posteriors are Beta(prior + evidence); the priors come from the router (per
    kind, or the parent class, see ``backoff``).
    """

    wins: float = 0.0
    losses: float = 0.0
    ratings: float = 0.0  # ratings received, not reduced by the evidence cap
    ok: float = 0.0
    failed: float = 0.0
    outcomes: float = 0.0  # outcomes received, not reduced by the evidence cap


Beta = tuple[float, float]


@dataclass(frozen=True)
class _Draw:
    candidate: Candidate
    reliability: float  # posterior means
    satisfaction: float
    sample: float  # sampled quality: sampled reliability x sampled satisfaction
    utility: float
    mean_utility: float
    sd: float = 0.0  # standard deviation of the quality (reliability x satisfaction)

    @property
    def mean(self) -> float:
        return self.reliability * self.satisfaction

    def estimate(self, sampled: bool) -> BackendEstimate:
        return BackendEstimate(
            backend=self.candidate.name,
            kind=self.candidate.kind,
            quality=self.mean,
            uncertainty=self.sd,
            cost_usd=self.candidate.cost_per_request,
            utility=self.mean_utility,
            sample=self.utility if sampled else None,
        )


@dataclass(kw_only=True)
class LearnedRouter:
    """Thompson-sampling router over task classes and backends (see module docs).

    Parameters:
        seed: seed of the router's own random generator (None: OS entropy).
        prior_local / prior_cloud: Beta(alpha, beta) a new arm's satisfaction starts
            from; by default cloud is believed better (mean 0.75 vs 0.5), both weakly
            (4 pseudo-votes).
        prior_reliability: Beta(alpha, beta) a new arm's reliability starts from, for
            every kind (default mean 0.95, 20 pseudo-outcomes).
        cost_weight: utility lost per USD; 10 means $0.01 costs 0.1 quality.
        local_margin: keep a request local when a local sample is within this
            much of the best cloud sample.
        neighbour_weight: pseudo-votes a neighbour of similarity 1.0 adds.
        max_evidence: cap on an arm's ratings (wins + losses) and, separately, on its
            outcomes (ok + failed); older evidence is scaled down beyond it, so the
            router keeps adapting when backends change.
        prior_strength: pseudo-votes of the per-request local prior built from
            ``local_prior_mean`` (see module docs); ``decide`` may override it.
        threshold: the v1 confidence threshold (``routing.threshold``) that the
            per-request prior is calibrated to: at zero evidence the router
            routes local iff ``local_prior_mean >= threshold``.
        backoff: pseudo-votes a sub-class inherits from its parent. Task classes
            may be hierarchical, ``"code/hard"``: an update also teaches
            ``"code"``, and a new ``"code/hard"`` arm starts from ``"code"``'s
            posterior means (reliability and satisfaction) with this weight
            instead of the flat priors, so finer contexts learn without
            starting from scratch.
    """

    seed: int | None = None
    prior_local: tuple[float, float] = (2.0, 2.0)
    prior_cloud: tuple[float, float] = (3.0, 1.0)
    prior_reliability: tuple[float, float] = (19.0, 1.0)
    cost_weight: float = 10.0
    local_margin: float = 0.02
    neighbour_weight: float = 2.0
    max_evidence: float = 500.0
    backoff: float = 4.0
    prior_strength: float = 4.0
    threshold: float = 0.7
    _arms: dict[tuple[str, str], Arm] = field(default_factory=dict, init=False, repr=False)
    _kinds: dict[str, Kind] = field(default_factory=dict, init=False, repr=False)
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._validate()
        self._rng = random.Random(self.seed)

    def _validate(self) -> None:
        for prior in (self.prior_local, self.prior_cloud, self.prior_reliability):
            if len(prior) != 2 or min(prior) <= 0:
                raise ValueError(f"a Beta prior needs two positive numbers, got {prior!r}")
        weights = (self.cost_weight, self.local_margin, self.neighbour_weight)
        if min(weights) < 0:
            raise ValueError("cost_weight, local_margin and neighbour_weight must be >= 0")
        if self.max_evidence <= 0 or self.backoff <= 0 or self.prior_strength <= 0:
            raise ValueError("max_evidence, backoff and prior_strength must be > 0")
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be within [0, 1], got {self.threshold!r}")

    # ------------------------------------------------------------------ decisions

    def decide(
        self,
        task_class: str,
        candidates: list[Candidate],
        *,
        cloud_allowed: bool,
        neighbours: Sequence[tuple[str, float, float]] = (),
        budget_remaining: float | None = None,
        local_prior_mean: float | None = None,
        prior_strength: float | None = None,
    ) -> LearnedDecision:
        """Choose a backend for one request of ``task_class``.

        ``neighbours`` are similar past queries as (backend, rating in [-1, 1],
        similarity in [0, 1]); they count as satisfaction pseudo-votes for this
        decision only. ``local_prior_mean`` is v1's confidence in [0, 1] that a
        local model suffices for this request: it becomes the local arms'
        satisfaction prior (with ``prior_strength`` pseudo-votes, default the
        router's), and with no evidence the choice is v1's; until the first
        rating it is taken on posterior means (see module docs). None keeps the flat
        ``prior_local``. Raises :class:`NoEligibleBackend` when no candidate may be used.
        """
        reasons = [f"task class '{task_class}'"]
        eligible = self._eligible(candidates, cloud_allowed, budget_remaining, reasons)
        for candidate in eligible:
            self._kinds[candidate.name] = candidate.kind
        votes = _neighbour_votes(neighbours, {c.name for c in eligible}, self.neighbour_weight)
        if votes:
            reasons.append(_describe_votes(votes))
        local_prior = None
        if local_prior_mean is not None:
            local_prior = self._local_prior(eligible, local_prior_mean, prior_strength, reasons)
        draws = [
            self._draw(task_class, c, votes.get(c.name, (0.0, 0.0)), local_prior) for c in eligible
        ]
        best_by_mean, mean_kept_local = self._select(draws, sampled=False)
        cold = (
            local_prior is not None
            and not votes
            and not any(self._has_ratings(task_class, c.name) for c in eligible)
        )
        if cold:
            chosen, kept_local = best_by_mean, mean_kept_local
            if any(self._has_evidence(task_class, c.name) for c in eligible):
                reasons.append(
                    "no ratings yet: deciding on the posterior means "
                    "(v1's prior x the reliability seen)"
                )
            else:
                reasons.append("no evidence yet: deciding on the prior means, as v1 would")
        else:
            chosen, kept_local = self._select(draws, sampled=True)
        explored = chosen.candidate.name != best_by_mean.candidate.name
        reasons += [self._describe_draw(task_class, d) for d in draws]
        if kept_local:
            reasons.append(
                f"kept local '{chosen.candidate.name}': its quality sample "
                f"{chosen.sample:.2f} is within {self.local_margin:.2f} of the best cloud sample"
            )
        reasons.append(_describe_choice(chosen, best_by_mean, explored))
        return LearnedDecision(
            backend=chosen.candidate.name,
            kind=chosen.candidate.kind,
            task_class=task_class,
            score=round(chosen.utility, 6),
            reasons=reasons,
            explored=explored,
            expected=best_by_mean.candidate.name,
            sampled=not cold,
            estimates=tuple(d.estimate(not cold) for d in draws),
        )

    def _eligible(
        self,
        candidates: Iterable[Candidate],
        cloud_allowed: bool,
        budget_remaining: float | None,
        reasons: list[str],
    ) -> list[Candidate]:
        eligible: list[Candidate] = []
        for candidate in candidates:
            if candidate.kind == "cloud" and not cloud_allowed:
                reasons.append(f"skipped cloud '{candidate.name}': cloud not allowed")
            elif (
                candidate.kind == "cloud"
                and budget_remaining is not None
                and candidate.cost_per_request > budget_remaining
            ):
                reasons.append(
                    f"skipped cloud '{candidate.name}': expected cost "
                    f"${candidate.cost_per_request:.4f} exceeds remaining budget "
                    f"${budget_remaining:.4f}"
                )
            else:
                eligible.append(candidate)
        if not eligible:
            raise NoEligibleBackend("; ".join(reasons[1:]) or "no candidate backends")
        return eligible

    def _local_prior(
        self,
        eligible: Sequence[Candidate],
        confidence: float,
        strength: float | None,
        reasons: list[str],
    ) -> Beta:
        """Satisfaction prior of the local arms for one request from v1's confidence."""
        s = self.prior_strength if strength is None else strength
        if s <= 0:
            raise ValueError(f"prior_strength must be > 0, got {s!r}")
        c = _clamp(confidence)
        tie = self._tie_quality(eligible)
        mean = _clamp(tie + (c - self.threshold), *_PRIOR_MEAN_RANGE)
        reasons.append(
            f"v1 confidence {c:.2f} vs threshold {self.threshold:.2f}: local satisfaction "
            f"prior mean {mean:.2f} ({s:g} pseudo-votes; {tie:.2f} ties the cloud)"
        )
        return s * mean, s * (1.0 - mean)

    def _tie_quality(self, eligible: Sequence[Candidate]) -> float:
        """Local satisfaction that ties the cheapest eligible cloud backend under the priors.

        Reliability has the same prior mean r for every kind, so local (r x m)
        ties cloud (r x q - cost_weight x cost) at m = q - cost_weight x cost / r,
        and the local margin is met at m = q - local_margin / r.
        """
        satisfaction = _mean(self.prior_cloud)
        reliability = _mean(self.prior_reliability)
        costs = [c.cost_per_request for c in eligible if c.kind == "cloud"]
        penalty = self.cost_weight * min(costs) if costs else 0.0
        return min(
            satisfaction - penalty / reliability, satisfaction - self.local_margin / reliability
        )

    def _has_evidence(self, task_class: str, backend: str) -> bool:
        return any((context, backend) in self._arms for context in _lineage(task_class))

    def _has_ratings(self, task_class: str, backend: str) -> bool:
        return any(
            (arm := self._arms.get((context, backend))) is not None and arm.ratings > 0
            for context in _lineage(task_class)
        )

    def _draw(
        self,
        task_class: str,
        candidate: Candidate,
        votes: tuple[float, float],
        local_prior: Beta | None = None,
    ) -> _Draw:
        rel, sat = self._posterior(task_class, candidate.name, candidate.kind, local_prior)
        sat = (sat[0] + votes[0], sat[1] + votes[1])
        sample = self._rng.betavariate(*rel) * self._rng.betavariate(*sat)
        reliability, satisfaction = _mean(rel), _mean(sat)
        mean = reliability * satisfaction
        penalty = self.cost_weight * candidate.cost_per_request
        sd = max(0.0, _second_moment(rel) * _second_moment(sat) - mean * mean) ** 0.5
        return _Draw(
            candidate, reliability, satisfaction, sample, sample - penalty, mean - penalty, sd
        )

    def _select(self, draws: list[_Draw], *, sampled: bool) -> tuple[_Draw, bool]:
        """Best draw by utility (sampled, or posterior mean); True if the local margin decided.

        A local backend whose quality is within ``local_margin`` of the best
        cloud one wins over it: same quality should not cost money. Ties (within
        ``_TIE``) go local too.
        """

        def utility(draw: _Draw) -> float:
            return draw.utility if sampled else draw.mean_utility

        def quality(draw: _Draw) -> float:
            return draw.sample if sampled else draw.mean

        best = max(draws, key=utility)
        local = [d for d in draws if d.candidate.kind == "local"]
        if best.candidate.kind == "local" or not local:
            return best, False
        best_local = max(local, key=utility)
        if utility(best_local) >= utility(best) - _TIE:
            return best_local, False
        best_local = max(local, key=quality)
        if quality(best_local) + self.local_margin >= quality(best) - _TIE:
            return best_local, True
        return best, False

    def _describe_draw(self, task_class: str, draw: _Draw) -> str:
        arm = self._arms.get((task_class, draw.candidate.name), Arm())
        return (
            f"{draw.candidate.kind} '{draw.candidate.name}': quality mean {draw.mean:.2f} "
            f"(reliability {draw.reliability:.2f} from {arm.outcomes:.0f} outcomes x "
            f"satisfaction {draw.satisfaction:.2f} from {arm.ratings:.0f} ratings), "
            f"sample {draw.sample:.2f}, cost ${draw.candidate.cost_per_request:.4f}, "
            f"utility {draw.utility:.2f}"
        )

    # ------------------------------------------------------------------ learning

    def update(
        self, task_class: str, backend: str, reward: float, *, kind: Kind | None = None
    ) -> None:
        """Record a rating reward in [0, 1] (clamped) for ``backend`` on ``task_class``.

        It teaches the satisfaction posterior: rate answers that came back (the
        call's outcome goes to :meth:`record_outcome`). Parent classes (``"code"``
        for ``"code/hard"``) learn from it too. ``kind`` sets the prior of a
        backend no decision has named yet (default: the kind last seen, else local).
        """
        if kind is not None:
            self._kinds[backend] = kind
        value = _clamp(reward)
        for context in _lineage(task_class):
            arm = self._arms.setdefault((context, backend), Arm())
            arm.wins += value
            arm.losses += 1.0 - value
            arm.ratings += 1.0
            arm.wins, arm.losses = self._capped(arm.wins, arm.losses)

    def replace(
        self,
        task_class: str,
        backend: str,
        old_reward: float,
        new_reward: float,
        *,
        kind: Kind | None = None,
    ) -> None:
        """Replace a rating reward recorded with :meth:`update` by ``new_reward``: a request
        rated again counts once, with its latest rating. The old reward is taken back from
        the arm and its parent classes (evidence never goes below zero; past the evidence
        cap it was scaled down, and so is what is taken back)."""
        old = _clamp(old_reward)
        for context in _lineage(task_class):
            arm = self._arms.get((context, backend))
            if arm is None or arm.ratings <= 0:
                continue
            total = arm.wins + arm.losses
            scale = min(1.0, total / arm.ratings) if arm.ratings else 1.0
            arm.wins = max(0.0, arm.wins - old * scale)
            arm.losses = max(0.0, arm.losses - (1.0 - old) * scale)
            arm.ratings = max(0.0, arm.ratings - 1.0)
        self.update(task_class, backend, new_reward, kind=kind)

    def record_outcome(
        self, task_class: str, backend: str, outcome: Outcome, *, kind: Kind | None = None
    ) -> None:
        """Record how a call to ``backend`` ended: ``ok``, ``error``, ``timeout`` or ``truncated``.

        Meant for every request; it teaches the reliability posterior (a truncated
        answer is a partial failure, see :func:`outcome_credit`). Parent classes
        learn from it too; ``kind`` as for :meth:`update`.
        """
        credit = outcome_credit(outcome)
        if kind is not None:
            self._kinds[backend] = kind
        for context in _lineage(task_class):
            arm = self._arms.setdefault((context, backend), Arm())
            arm.ok += credit
            arm.failed += 1.0 - credit
            arm.outcomes += 1.0
            arm.ok, arm.failed = self._capped(arm.ok, arm.failed)

    def _capped(self, good: float, bad: float) -> Beta:
        total = good + bad
        if total > self.max_evidence:
            scale = self.max_evidence / total
            return good * scale, bad * scale
        return good, bad

    def _posterior(
        self,
        task_class: str,
        backend: str,
        kind: Kind | None,
        local_prior: Beta | None = None,
    ) -> tuple[Beta, Beta]:
        """Reliability and satisfaction Beta(alpha, beta) of a pair: prior plus evidence.

        The prior is flat per kind at a top-level class, the parent's posterior
        means with ``backoff`` pseudo-votes at a sub-class. ``local_prior``
        replaces ``prior_local`` (satisfaction) at the top-level class (the
        per-request prior); sub-classes inherit it through the backoff.
        """
        known: Kind = kind or self._kinds.get(backend, "local")
        parent = _parent(task_class)
        if parent is None:
            rel = self.prior_reliability
            if known == "cloud":
                sat = self.prior_cloud
            else:
                sat = self.prior_local if local_prior is None else local_prior
        else:
            p_rel, p_sat = self._posterior(parent, backend, known, local_prior)
            rel, sat = self._backed_off(p_rel), self._backed_off(p_sat)
        arm = self._arms.get((task_class, backend))
        if arm is not None:
            rel = (rel[0] + arm.ok, rel[1] + arm.failed)
            sat = (sat[0] + arm.wins, sat[1] + arm.losses)
        return rel, sat

    def _backed_off(self, parent: Beta) -> Beta:
        mean = _mean(parent)
        return mean * self.backoff, (1.0 - mean) * self.backoff

    # ------------------------------------------------------------------ state

    def snapshot(self) -> dict[str, dict[str, dict[str, float]]]:
        """Posterior means per task class and backend, for ``/route`` explanations.

        ``mean`` is the quality, reliability x satisfaction; ``alpha``/``beta``
        are the satisfaction posterior's, ``reliability_alpha``/``_beta`` the
        reliability posterior's.
        """
        view: dict[str, dict[str, dict[str, float]]] = {}
        for (task_class, backend), arm in sorted(self._arms.items()):
            rel, sat = self._posterior(task_class, backend, None)
            view.setdefault(task_class, {})[backend] = {
                "mean": round(_mean(rel) * _mean(sat), 4),
                "reliability": round(_mean(rel), 4),
                "satisfaction": round(_mean(sat), 4),
                "outcomes": arm.outcomes,
                "ratings": arm.ratings,
                "alpha": round(sat[0], 4),
                "beta": round(sat[1], 4),
                "reliability_alpha": round(rel[0], 4),
                "reliability_beta": round(rel[1], 4),
            }
        return view

    def to_json(self) -> dict[str, Any]:
        """All learned state and parameters as a JSON-compatible dict."""
        return {
            "version": STATE_VERSION,
            "params": {
                "prior_local": list(self.prior_local),
                "prior_cloud": list(self.prior_cloud),
                "prior_reliability": list(self.prior_reliability),
                "cost_weight": self.cost_weight,
                "local_margin": self.local_margin,
                "neighbour_weight": self.neighbour_weight,
                "max_evidence": self.max_evidence,
                "backoff": self.backoff,
                "prior_strength": self.prior_strength,
                "threshold": self.threshold,
            },
            "kinds": dict(sorted(self._kinds.items())),
            "arms": [
                {
                    "task_class": t,
                    "backend": b,
                    "wins": a.wins,
                    "losses": a.losses,
                    "ratings": a.ratings,
                    "ok": a.ok,
                    "failed": a.failed,
                    "outcomes": a.outcomes,
                }
                for (t, b), a in sorted(self._arms.items())
            ],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, seed: int | None = None) -> LearnedRouter:
        """Rebuild a router from :meth:`to_json` output (raises ValueError when malformed).

        State of version 1 (one posterior per pair, fed with ratings and errors)
        loads with its evidence as satisfaction evidence and no reliability
        evidence; new outcomes then teach reliability.
        """
        version = data.get("version")
        if version not in (1, STATE_VERSION):
            raise ValueError(f"unsupported learned-router state version {version!r}")
        try:
            params = data["params"]
            router = cls(
                seed=seed,
                prior_local=_pair(params["prior_local"]),
                prior_cloud=_pair(params["prior_cloud"]),
                prior_reliability=_pair(params.get("prior_reliability", (19.0, 1.0))),
                cost_weight=float(params["cost_weight"]),
                local_margin=float(params["local_margin"]),
                neighbour_weight=float(params["neighbour_weight"]),
                max_evidence=float(params["max_evidence"]),
                backoff=float(params["backoff"]),
                prior_strength=float(params.get("prior_strength", 4.0)),
                threshold=float(params.get("threshold", 0.7)),
            )
            for backend, kind in data.get("kinds", {}).items():
                router._kinds[str(backend)] = _kind(kind)
            for row in data["arms"]:
                if version == 1:
                    arm = Arm(float(row["wins"]), float(row["losses"]), float(row["pulls"]))
                else:
                    arm = Arm(
                        *(
                            float(row[k])
                            for k in ("wins", "losses", "ratings", "ok", "failed", "outcomes")
                        )
                    )
                if min(vars(arm).values()) < 0:
                    raise ValueError("evidence must not be negative")
                router._arms[(str(row["task_class"]), str(row["backend"]))] = arm
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed learned-router state: {exc!r}") from None
        return router


def _mean(beta: Beta) -> float:
    return beta[0] / (beta[0] + beta[1])


def _second_moment(beta: Beta) -> float:
    a, b = beta
    return a * (a + 1.0) / ((a + b) * (a + b + 1.0))


def _parent(task_class: str) -> str | None:
    """``"code"`` for ``"code/hard"``; None for a top-level class."""
    head, sep, _ = task_class.rpartition("/")
    return head if sep and head else None


def _lineage(task_class: str) -> list[str]:
    """The class and all its ancestors, most specific first."""
    lineage = [task_class]
    while (parent := _parent(lineage[-1])) is not None:
        lineage.append(parent)
    return lineage


def _pair(value: Any) -> tuple[float, float]:
    first, second = value
    return float(first), float(second)


def _kind(value: Any) -> Kind:
    if value == "cloud":
        return "cloud"
    if value == "local":
        return "local"
    raise ValueError(f"unknown backend kind {value!r}")


def _neighbour_votes(
    neighbours: Sequence[tuple[str, float, float]], names: set[str], weight: float
) -> dict[str, tuple[float, float]]:
    """Pseudo-votes (good, bad) per backend from similar past queries."""
    votes: dict[str, tuple[float, float]] = {}
    for backend, rating, similarity in neighbours:
        if backend not in names:
            continue
        strength = weight * _clamp(similarity)
        reward = rating_reward(rating)
        good, bad = votes.get(backend, (0.0, 0.0))
        votes[backend] = (good + strength * reward, bad + strength * (1.0 - reward))
    return votes


def _describe_votes(votes: Mapping[str, tuple[float, float]]) -> str:
    parts = [f"'{name}' +{good:.1f}/-{bad:.1f}" for name, (good, bad) in sorted(votes.items())]
    return "similar past queries: " + ", ".join(parts)


def _describe_choice(chosen: _Draw, best_by_mean: _Draw, explored: bool) -> str:
    name = chosen.candidate.name
    if explored:
        return (
            f"chose {chosen.candidate.kind} '{name}' (exploring: best by mean is "
            f"'{best_by_mean.candidate.name}')"
        )
    return f"chose {chosen.candidate.kind} '{name}': best expected quality for its cost"

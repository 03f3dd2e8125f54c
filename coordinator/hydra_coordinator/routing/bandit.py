"""Learning per prompt: a contextual bandit over a cheap prompt representation.

Representation. A request becomes a sparse vector: a bias, the cold-start scorer's features
(:mod:`.scorer`) and the words of the last user message hashed into ``2**14`` buckets
(CRC-32, L2-normalised). No embedding call: it costs tens of microseconds.

Model. Every backend is an arm with a linear model of the quality of its answers,
q_b(x) = prior_b(x) + w_b . x, where the prior is the cold start: ``local_quality`` for a local
backend and ``local_quality`` + the scorer's estimated gain for a cloud one. The weights have a
diagonal Gaussian posterior (mean and precision per coordinate), updated by each rating with a
Kalman step (diagonal approximation). So a rating moves the estimate for its own prompt most,
for prompts sharing its words and features less, and for unrelated prompts not at all.

Decision. The estimated *gain* of the cloud for a prompt is q_cloud - q_local; a cloud backend
is chosen when its quality minus ``cost_weight`` x its expected cost beats the best local one
by ``margin`` (1 - ``routing.threshold``, or what the operator's cloud-share target makes
it). The expected decision uses posterior means; the sampled one (linear Thompson sampling,
what requests use) draws each arm's quality from its posterior, widened or narrowed by
``exploration``, so uncertain prompts are sometimes tried on the other side. Before the first
rating there is nothing to learn from exploring, and the sampled decision is the expected one.

Ratings. :meth:`PromptLearner.rate` takes a rating of a request it decided (it keeps the
representation of its last ``remember`` decisions). A second rating of the same request
*replaces* the first (the first is retracted, a negative-weight update, then the new one
applied), and so does a rating of the same prompt on the same backend by the same API key: one
key has one vote per prompt and backend. Each key also teaches at most
``key_ratings_per_hour`` ratings an hour at its ``key_weights`` weight (default 1): past
that its ratings are kept by the caller but teach nothing. State (weights and precisions) is
saved with :meth:`to_json`.

Memory: two arrays of ``2**14`` floats per backend plus at most ``remember`` compact vectors;
CPU per request: one pass over the prompt's words per backend. Not thread-safe: the
coordinator uses it from its event loop.
"""

from __future__ import annotations

import math
import random
import time
import zlib
from array import array
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .features import last_user_text
from .scorer import FEATURES, ColdScore

__all__ = ["Arm", "Belief", "Choice", "PromptLearner", "Representation", "represent"]

Kind = Literal["local", "cloud"]

HASH_BITS = 14
_HASH_SIZE = 1 << HASH_BITS
_SCAN_LIMIT = 8_000
_NOISE = 0.25  # variance of one rating around the model (a coin's)
_PRIOR_PRECISION_BIAS = 100.0  # weight s.d. 0.1
_PRIOR_PRECISION_FEATURE = 100.0  # s.d. 0.1
_PRIOR_PRECISION_WORD = 25.0  # s.d. 0.2 along a whole (normalised) prompt
_MIN_PRECISION = 1e-3
STATE_VERSION = 1
_VOTE_PRIOR = 2.0  # pseudo-votes the model's own estimate counts against neighbours' votes


def _token_ids(text: str) -> array[int]:
    words = {w for w in text.lower().split() if w}
    ids = sorted({zlib.crc32(w.strip(".,;:!?()[]{}\"'`").encode()) % _HASH_SIZE for w in words})
    return array("H", ids)


@dataclass(frozen=True, slots=True)
class Representation:
    """A prompt as the learner sees it: scorer features and hashed words (compact)."""

    features: tuple[float, ...]  # in scorer.FEATURES order
    words: array[int]  # sorted bucket ids
    prior_gain: float  # the cold-start scorer's estimated gain

    @property
    def fingerprint(self) -> int:
        """Identifies the prompt's wording (for one vote per key and prompt)."""
        return zlib.crc32(self.words.tobytes())

    def coordinates(self) -> list[tuple[int, float]]:
        """(index, value): bias 0, features 1..F, words F+1.. (normalised to length 1)."""
        coords = [(0, 1.0)]
        coords += [(i + 1, v) for i, v in enumerate(self.features) if v]
        if self.words:
            value = 1.0 / math.sqrt(len(self.words))
            offset = len(FEATURES) + 1
            coords += [(offset + w, value) for w in self.words]
        return coords


def represent(body: Mapping[str, Any], cold: ColdScore) -> Representation:
    messages = body.get("messages")
    text = last_user_text(messages if isinstance(messages, list) else [])[-_SCAN_LIMIT:]
    return Representation(
        tuple(cold.signals[name] for name in FEATURES), _token_ids(text), cold.gain
    )


def _best(choices: Sequence[Choice], utilities: Mapping[str, float]) -> str | None:
    """The choice of highest utility; ties go to the first listed (local ones first)."""
    if not choices:
        return None
    return max(choices, key=lambda c: utilities[c.name]).name


def _dimensions() -> int:
    return 1 + len(FEATURES) + _HASH_SIZE


def _prior_precision() -> array[float]:
    values = array("d", [_PRIOR_PRECISION_WORD]) * _dimensions()
    values[0] = _PRIOR_PRECISION_BIAS
    for i in range(len(FEATURES)):
        values[i + 1] = _PRIOR_PRECISION_FEATURE
    return values


@dataclass
class Arm:
    """One backend's posterior over the weights (mean, precision per coordinate)."""

    kind: Kind
    mean: array[float] = field(default_factory=lambda: array("d", [0.0]) * _dimensions())
    precision: array[float] = field(default_factory=_prior_precision)
    ratings: float = 0.0

    def predict(self, coords: Sequence[tuple[int, float]]) -> tuple[float, float]:
        """(mean, variance) of w . x."""
        mean, precision = self.mean, self.precision
        m = sum(mean[i] * v for i, v in coords)
        var = sum(v * v / precision[i] for i, v in coords)
        return m, var

    def learn(self, coords: Sequence[tuple[int, float]], residual: float, weight: float) -> float:
        """A Kalman step (diagonal) towards ``residual`` (target - prior); returns the error
        it corrected, which :meth:`unlearn` needs to take the step back."""
        mean, precision = self.mean, self.precision
        predicted, var = self.predict(coords)
        error = residual - predicted
        gain = weight * error / (_NOISE + weight * var)
        for i, v in coords:
            mean[i] += gain * v / precision[i]
            precision[i] += weight * v * v / _NOISE
        self.ratings += 1.0
        return error

    def unlearn(self, coords: Sequence[tuple[int, float]], error: float, weight: float) -> None:
        """Take back a :meth:`learn` step (exact when nothing was learnt since)."""
        mean, precision = self.mean, self.precision
        for i, v in coords:
            precision[i] = max(_MIN_PRECISION, precision[i] - weight * v * v / _NOISE)
        var = sum(v * v / precision[i] for i, v in coords)
        gain = weight * error / (_NOISE + weight * var)
        for i, v in coords:
            mean[i] -= gain * v / precision[i]
        self.ratings = max(0.0, self.ratings - 1.0)


@dataclass(frozen=True, slots=True)
class Belief:
    """What the learner believes about one prompt."""

    gain: float  # expected quality gain of the best cloud backend over the best local one
    net_gain: float  # the gain less cost_weight x the cloud's expected cost
    uncertainty: float  # its standard deviation
    prior_gain: float  # the cold-start scorer's part
    margin: float  # the net gain the cloud must beat
    expected: str | None  # backend chosen on posterior means
    sampled: str | None  # backend chosen on a posterior draw (what a request does)
    qualities: Mapping[str, tuple[float, float]]  # backend -> (mean quality, s.d.)
    utilities: Mapping[str, float]  # backend -> quality - cost_weight x cost (- margin: cloud)
    draws: Mapping[str, float] | None  # backend -> sampled utility; None: nothing was sampled

    def utility(self, backend: str) -> float:
        return self.utilities[backend]


@dataclass(frozen=True, slots=True)
class Choice:
    """A candidate backend for the learner: its name, kind and expected cost (USD)."""

    name: str
    kind: Kind
    cost: float = 0.0


@dataclass
class _Vote:
    backend: str
    rep: Representation
    error: float
    weight: float
    reward: float


@dataclass
class _Bucket:
    tokens: float
    at: float


@dataclass(kw_only=True)
class PromptLearner:
    """Contextual bandit over prompts (see module docs)."""

    local_quality: float = 0.6
    cost_weight: float = 10.0
    exploration: float = 0.5
    key_ratings_per_hour: float = 600.0
    key_weights: Mapping[str, float] = field(default_factory=dict)
    remember: int = 4096
    max_votes: int = 50_000
    seed: int | None = None
    clock: Any = time.monotonic
    _arms: dict[str, Arm] = field(default_factory=dict, init=False, repr=False)
    _recent: OrderedDict[str, tuple[str, Representation]] = field(
        default_factory=OrderedDict, init=False, repr=False
    )
    _votes: OrderedDict[tuple[str, int, str], tuple[str, _Vote]] = field(
        default_factory=OrderedDict, init=False, repr=False
    )
    _buckets: dict[str, _Bucket] = field(default_factory=dict, init=False, repr=False)
    _rng: random.Random = field(init=False, repr=False)
    changed: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    # ------------------------------------------------------------------ decisions

    def arm(self, name: str, kind: Kind) -> Arm:
        found = self._arms.get(name)
        if found is None or found.kind != kind:
            found = self._arms[name] = Arm(kind)
        return found

    def quality(self, choice: Choice, rep: Representation) -> tuple[float, float]:
        """(mean, s.d.) of the quality of ``choice``'s answers to this prompt."""
        prior = self.local_quality + (rep.prior_gain if choice.kind == "cloud" else 0.0)
        arm = self._arms.get(choice.name)
        if arm is None or arm.kind != choice.kind:
            arm = Arm(choice.kind)
            mean, var = 0.0, arm.predict(rep.coordinates())[1]
        else:
            mean, var = arm.predict(rep.coordinates())
        return prior + mean, math.sqrt(var)

    def estimate(
        self,
        rep: Representation,
        choices: Sequence[Choice],
        margin: float,
        votes: Mapping[str, tuple[float, float]] | None = None,
    ) -> Belief:
        """The expected and sampled choice among ``choices`` (cloud must beat local by
        ``margin`` + ``cost_weight`` x its cost). ``votes`` (backend: good, bad pseudo-votes,
        e.g. from rated similar questions in the knowledge base) pull a backend's quality
        towards their mean for this decision only."""
        qualities = {c.name: self.quality(c, rep) for c in choices}
        for name, (good, bad) in (votes or {}).items():
            if name in qualities and good + bad > 0:
                mean, sd = qualities[name]
                weight = _VOTE_PRIOR / (_VOTE_PRIOR + good + bad)
                qualities[name] = (
                    weight * mean + (1 - weight) * good / (good + bad),
                    sd * math.sqrt(weight),
                )
        utilities = self._utilities(choices, {n: q[0] for n, q in qualities.items()}, margin)
        expected = _best(choices, utilities)
        # no rating yet, nothing to explore for: the cold start decides, as the prior says
        spread = self.exploration if any(a.ratings > 0 for a in self._arms.values()) else 0.0
        draws = None
        sampled = expected
        if spread > 0:
            quality = {n: self._rng.gauss(m, s * spread) for n, (m, s) in qualities.items()}
            draws = self._utilities(choices, quality, margin)
            sampled = _best(choices, draws)
        local = [c for c in choices if c.kind == "local"]
        cloud = [c for c in choices if c.kind == "cloud"]
        gain, uncertainty = rep.prior_gain, 0.0
        net = gain
        if local and cloud:
            best_local = max(local, key=lambda c: qualities[c.name][0])
            best_cloud = max(cloud, key=lambda c: qualities[c.name][0] - self.cost_weight * c.cost)
            gain = qualities[best_cloud.name][0] - qualities[best_local.name][0]
            uncertainty = math.hypot(qualities[best_cloud.name][1], qualities[best_local.name][1])
            net = gain - self.cost_weight * best_cloud.cost
        return Belief(
            gain=gain,
            net_gain=net,
            uncertainty=uncertainty,
            prior_gain=rep.prior_gain,
            margin=margin,
            expected=expected,
            sampled=sampled,
            qualities=qualities,
            utilities=utilities,
            draws=draws,
        )

    def _utilities(
        self, choices: Sequence[Choice], quality: Mapping[str, float], margin: float
    ) -> dict[str, float]:
        return {
            c.name: quality[c.name]
            - self.cost_weight * c.cost
            - (margin if c.kind == "cloud" else 0.0)
            for c in choices
        }

    def remember_decision(self, request_id: str, backend: str, rep: Representation) -> None:
        """Keep what a request looked like so that its rating can teach (bounded)."""
        self._recent[request_id] = (backend, rep)
        self._recent.move_to_end(request_id)
        while len(self._recent) > self.remember:
            self._recent.popitem(last=False)

    # ------------------------------------------------------------------ learning

    def rate(
        self,
        request_id: str,
        reward: float,
        *,
        key_id: str | None,
        kind: Kind | None = None,
    ) -> str:
        """Teach the rating (reward in [0, 1]) of an earlier request; says what happened.

        Returns ``"learned"``, ``"replaced"`` (an earlier vote of this request, or of this
        key on this prompt, was retracted first), ``"forgotten"`` (the request is older than
        the last ``remember`` decisions) or ``"limited"`` (the key is over its hourly share)."""
        found = self._recent.get(request_id)
        if found is None:
            return "forgotten"
        backend, rep = found
        arm_kind: Kind = kind or (self._arms[backend].kind if backend in self._arms else "local")
        reward = min(1.0, max(0.0, reward))
        slot = (key_id or "", rep.fingerprint, backend)
        replaced = False
        earlier = self._votes.pop(slot, None)
        if earlier is not None:
            self._retract(earlier[1])
            replaced = True
        else:
            weight = self._allowance(key_id)
            if weight <= 0:
                return "limited"
        weight = min(1.0, max(0.0, self.key_weights.get(key_id or "", 1.0)))
        if weight <= 0:
            return "limited"
        arm = self.arm(backend, arm_kind)
        prior = self.local_quality + (rep.prior_gain if arm_kind == "cloud" else 0.0)
        residual = reward - prior
        error = arm.learn(rep.coordinates(), residual, weight)
        vote = _Vote(backend, rep, error, weight, reward)
        self._votes[slot] = (request_id, vote)
        while len(self._votes) > self.max_votes:
            self._votes.popitem(last=False)
        self.changed = True
        return "replaced" if replaced else "learned"

    def _retract(self, vote: _Vote) -> None:
        arm = self._arms.get(vote.backend)
        if arm is not None:
            arm.unlearn(vote.rep.coordinates(), vote.error, vote.weight)

    def _allowance(self, key_id: str | None) -> float:
        """Take one rating from the key's hourly bucket: 1 if there was room, else 0."""
        if self.key_ratings_per_hour <= 0:
            return 1.0
        now = self.clock()
        name = key_id or ""
        bucket = self._buckets.get(name)
        if bucket is None:
            bucket = self._buckets[name] = _Bucket(self.key_ratings_per_hour, now)
        rate = self.key_ratings_per_hour / 3600.0
        bucket.tokens = min(self.key_ratings_per_hour, bucket.tokens + (now - bucket.at) * rate)
        bucket.at = now
        if bucket.tokens < 1.0:
            return 0.0
        bucket.tokens -= 1.0
        return 1.0

    # ------------------------------------------------------------------ state

    def to_json(self) -> dict[str, Any]:
        """Weights and precisions of every arm (only the coordinates that moved)."""
        arms = {}
        prior = _prior_precision()
        for name, arm in sorted(self._arms.items()):
            moved = [
                i
                for i in range(len(arm.mean))
                if arm.mean[i] != 0.0 or arm.precision[i] != prior[i]
            ]
            arms[name] = {
                "kind": arm.kind,
                "ratings": arm.ratings,
                "index": moved,
                "mean": [arm.mean[i] for i in moved],
                "precision": [arm.precision[i] for i in moved],
            }
        return {
            "version": STATE_VERSION,
            "hash_bits": HASH_BITS,
            "features": FEATURES,
            "arms": arms,
        }

    def load_json(self, data: Mapping[str, Any]) -> None:
        """Restore :meth:`to_json` output (ValueError when it does not fit this version)."""
        if data.get("version") != STATE_VERSION or data.get("hash_bits") != HASH_BITS:
            raise ValueError("prompt learner state of another version")
        if tuple(data.get("features", ())) != FEATURES:
            raise ValueError("prompt learner state for other scorer features")
        arms: dict[str, Arm] = {}
        try:
            for name, row in data["arms"].items():
                kind = row["kind"]
                if kind not in ("local", "cloud"):
                    raise ValueError(f"unknown kind {kind!r}")
                arm = Arm(kind, ratings=float(row["ratings"]))
                for i, m, p in zip(row["index"], row["mean"], row["precision"], strict=True):
                    arm.mean[int(i)] = float(m)
                    arm.precision[int(i)] = max(_MIN_PRECISION, float(p))
                arms[str(name)] = arm
        except (KeyError, TypeError, IndexError) as exc:
            raise ValueError(f"malformed prompt learner state: {exc!r}") from None
        self._arms = arms

    def ratings(self) -> dict[str, float]:
        return {name: arm.ratings for name, arm in self._arms.items()}

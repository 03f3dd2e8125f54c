"""Learning per prompt: a contextual bandit over a cheap prompt representation.

Representation. A request becomes a sparse vector: a bias, the cold-start scorer's features
(:mod:`.scorer`) and the words of the last user message hashed into ``2**14`` buckets
(CRC-32, L2-normalised). No embedding call: it costs tens of microseconds.

Model. The quality of backend b's answer to prompt x (the probability that it is right) is
q_b(x) = level + a . x + prior_b(x) + d_b . x: a *shared* part (how hard the prompt is for
anyone, learnt from every rating) and a part that sets the backend apart, whose prior is the
cold start: half the scorer's estimated gain g(x) above ``level`` for a cloud backend, half
below for a local one (so the prior gain is g(x), and the estimates stay within 0..1). Every weight
has a diagonal Gaussian posterior (mean and precision per coordinate), updated by each rating
with a Kalman step (diagonal approximation) on the shared and the backend's weights together.
So a rating moves the estimate for its own prompt most, for prompts sharing its words and
features less, for unrelated prompts not at all; and because the shared part absorbs how hard
a prompt is, the *difference* between backends (the cloud's gain) moves only on evidence that
one answers better than the other, not because one was rated on harder prompts.

Groups. A diagonal posterior over words learns what one prompt is like, and moves the level of
a whole kind of prompts only through the words they share, noisily. The learner therefore also
groups prompts as they come (:mod:`.groups`: online k-means over the words folded into 64
dimensions and the scorer's features, at most ``GROUPS`` groups, no labels) and holds an exact
posterior per group of how far each kind of backend sits from the cold start there (a local
model's offset loose, a cloud model's tight: a local model's quality varies across tasks much
more), with a slope along the cold-start gain. A rating teaches its group first and the weights
what the group leaves: so ratings that are low for the local model across a group raise that
group's gain (a group of prompts the cloud clearly wins can be found from the local side), the
cloud's ratings there correct it, and one group's ratings leave the others alone. A sampled
decision also draws the group's gain (``GROUP_EXPLORE`` x its posterior s.d.), so the cloud is
tried where a group's gain is uncertain. A preview (``/route``) only reads the groups; a request
moves its group's centroid (or starts one) before it is decided.

Decision. The estimated *gain* of the cloud for a prompt is q_cloud - q_local; a cloud backend
is chosen when its quality minus ``cost_weight`` x its expected cost beats the best local one
by ``margin`` (1 - ``routing.threshold``, or what the operator's cloud-share target makes
it). The expected decision uses posterior means; the sampled one (linear Thompson sampling,
what requests use) draws each backend's own part from its posterior, widened or narrowed by
``exploration``, so uncertain prompts are sometimes tried on the other side. Before the first
rating there is nothing to learn from exploring, and the sampled decision is the expected one.

Ratings. :meth:`PromptLearner.rate` takes a rating of a request it decided (it keeps the
representation of its last ``remember`` decisions). A second rating of the same request
*replaces* the first (the first is taken back exactly, then the new one applied), and so does
a rating of the same prompt on the same backend by the same API key: one key has one vote per
prompt and backend. Each key also teaches at most ``key_ratings_per_hour`` ratings an hour, at
its ``key_weights`` weight (default 1): past that its ratings are kept by the caller but teach
nothing. Weights and precisions, the groups' centroids and their statistics are saved with
:meth:`PromptLearner.to_json`.

Memory: two arrays of ``2**14`` floats for the shared part and for each backend, ``GROUPS`` x 83
floats of centroids, plus at most ``remember`` compact prompt vectors and ``max_votes`` votes;
CPU per request: one pass over the prompt's coordinates per backend, and over its folded words
per group centroid (~0.15 ms for a 2 KB prompt). Not thread-safe: the coordinator uses it
from its event loop.
"""

from __future__ import annotations

import math
import random
import time
import zlib
from array import array
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from operator import mul, truediv
from typing import Any, Literal

from .groups import GROUPS, MAX_COUNT, GroupLevels, Groups, Sketch
from .scorer import FEATURES, ColdScore

__all__ = ["Belief", "Choice", "PromptLearner", "Representation", "Weights", "represent"]

Kind = Literal["local", "cloud"]

HASH_BITS = 14
_HASH_SIZE = 1 << HASH_BITS
_NOISE = 0.25  # variance of one rating around the model (a coin's)
_MIN_PRECISION = 1e-3
_VOTE_PRIOR = 2.0  # pseudo-votes the model's own estimate counts against neighbours' votes
STATE_VERSION = 3
_GROUPLESS_VERSION = 2  # the state before prompt groups: its weights still load
GROUP_EXPLORE = 0.5  # a sampled decision draws a group's gain with this x its posterior s.d.

# prior precision (1 / variance) of the weights: bias, each scorer feature, the words (which
# share a vector of length 1, so 25 means a s.d. of 0.2 along a whole prompt). A backend's own
# bias and feature weights are held tight: they move every prompt's gain at once, and ratings
# of one backend on one kind of prompt (what routing yields) would otherwise shift the gain of
# all; its word weights are looser, so what is learnt is per prompt.
SHARED_PRIOR = (25.0, 50.0, 25.0)
BACKEND_PRIOR = (400.0, 400.0, 25.0)


def _token_ids(words: frozenset[str]) -> array[int]:
    return array("H", sorted({zlib.crc32(w.encode()) % _HASH_SIZE for w in words}))


@dataclass(frozen=True, slots=True)
class Coords:
    """A sparse vector: coordinates, their values and the values squared."""

    index: list[int]
    value: list[float]
    square: list[float]


@dataclass(frozen=True, slots=True)
class Representation:
    """A prompt as the learner sees it: scorer features and hashed words (compact)."""

    features: tuple[float, ...]  # in scorer.FEATURES order
    words: array[int]  # sorted bucket ids
    prior_gain: float  # the cold-start scorer's estimated gain
    group: int = -1  # the learner's prompt group (:meth:`PromptLearner.assign`; -1: none)

    @property
    def fingerprint(self) -> int:
        """Identifies the prompt's wording (for one vote per key and prompt)."""
        return zlib.crc32(self.words.tobytes())

    def coordinates(self) -> Coords:
        """Bias 0, features 1..F, words F+1.. (the words normalised to length 1)."""
        index = [0]
        value = [1.0]
        for i, v in enumerate(self.features):
            if v:
                index.append(i + 1)
                value.append(v)
        if self.words:
            offset = len(FEATURES) + 1
            index += [offset + w for w in self.words]
            value += [1.0 / math.sqrt(len(self.words))] * len(self.words)
        return Coords(index, value, [v * v for v in value])


def represent(body: Mapping[str, Any], cold: ColdScore) -> Representation:
    del body  # the scorer already read it: its features and words are the representation
    return Representation(
        tuple(cold.signals[name] for name in FEATURES), _token_ids(cold.words), cold.gain
    )


def _best(choices: Sequence[Choice], utilities: Mapping[str, float]) -> str | None:
    """The choice of highest utility; ties go to the first listed (local ones first)."""
    if not choices:
        return None
    return max(choices, key=lambda c: utilities[c.name]).name


def _dimensions() -> int:
    return 1 + len(FEATURES) + _HASH_SIZE


@dataclass
class Weights:
    """A diagonal Gaussian posterior over linear weights: mean and precision per coordinate."""

    prior: tuple[float, float, float]  # prior precision of the bias, a feature, a word
    mean: array[float] = field(init=False)
    precision: array[float] = field(init=False)
    ratings: float = 0.0

    def __post_init__(self) -> None:
        self.mean = array("d", [0.0]) * _dimensions()
        self.precision = self.prior_precision()

    def prior_precision(self) -> array[float]:
        bias, feature, word = self.prior
        values = array("d", [word]) * _dimensions()
        values[0] = bias
        for i in range(len(FEATURES)):
            values[i + 1] = feature
        return values

    def predict(self, coords: Coords) -> tuple[float, float]:
        """(mean, variance) of w . x."""
        means = map(self.mean.__getitem__, coords.index)
        precisions = map(self.precision.__getitem__, coords.index)
        return sum(map(mul, means, coords.value)), sum(map(truediv, coords.square, precisions))

    def to_json(self) -> dict[str, Any]:
        prior = self.prior_precision()
        moved = [
            i for i in range(len(self.mean)) if self.mean[i] != 0.0 or self.precision[i] != prior[i]
        ]
        return {
            "ratings": self.ratings,
            "index": moved,
            "mean": [self.mean[i] for i in moved],
            "precision": [self.precision[i] for i in moved],
        }

    def load(self, row: Mapping[str, Any]) -> None:
        self.ratings = float(row["ratings"])
        for i, m, p in zip(row["index"], row["mean"], row["precision"], strict=True):
            self.mean[int(i)] = float(m)
            self.precision[int(i)] = max(_MIN_PRECISION, float(p))


def learn(
    parts: Sequence[Weights], coords: Coords, residual: float, weight: float
) -> tuple[float, float]:
    """One Kalman step (diagonal) of the sum of ``parts`` towards ``residual`` (the rating less
    the prior); returns the error it corrected and the spread it was divided by (the rating's
    noise plus the prediction's variance), which :func:`unlearn` needs.

    Each coordinate keeps the variance it would have in the full posterior after this rating
    (assumed density filtering, as in AdPredictor): it learns as if the variance of all the
    other coordinates of the prompt were noise, rather than as if it alone explained the
    rating. (Still diagonal: the correlation between the shared part and a backend's own part
    that one backend's ratings create is not kept.)"""
    predicted = sum(p.predict(coords)[0] for p in parts)
    var = sum(p.predict(coords)[1] for p in parts)
    error = residual - predicted
    spread = _NOISE / weight + var
    step = error / spread
    for part in parts:
        mean, precision = part.mean, part.precision
        for i, v, sq in zip(coords.index, coords.value, coords.square, strict=True):
            mean[i] += step * v / precision[i]
            # 1 / variance after: variance x (1 - variance x v^2 / spread)
            precision[i] += sq / (spread - sq / precision[i])
        part.ratings += 1.0
    return error, spread


def unlearn(parts: Sequence[Weights], coords: Coords, error: float, spread: float) -> None:
    """Take back a :func:`learn` step (exact when nothing was learnt since)."""
    for part in parts:
        precision = part.precision
        for i, sq in zip(coords.index, coords.square, strict=True):
            # the variance v before the step from the one after, a: a = v - v^2 sq / spread
            after = 1.0 / precision[i]
            root = math.sqrt(max(0.0, 1.0 - 4.0 * sq * after / spread))
            precision[i] = max(_MIN_PRECISION, (1.0 + root) / (2.0 * after))
    step = error / spread
    for part in parts:
        mean, precision = part.mean, part.precision
        for i, v in zip(coords.index, coords.value, strict=True):
            mean[i] -= step * v / precision[i]
        part.ratings = max(0.0, part.ratings - 1.0)


_UNTAUGHT = Weights(BACKEND_PRIOR)  # a backend no rating taught yet (read only)


@dataclass(frozen=True, slots=True)
class Belief:
    """What the learner believes about one prompt."""

    gain: float  # expected quality gain of the best cloud backend over the best local one
    net_gain: float  # the gain less cost_weight x the cloud's expected cost
    sampled_net_gain: float  # the same on this decision's draw (= net_gain when not sampled)
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
    spread: float  # what learn divided the error by
    cloud: bool  # the backend's kind
    weight: float  # the key's
    residual: float  # the rating less the cold start (what the group's levels counted)


@dataclass
class _Bucket:
    tokens: float
    at: float


@dataclass
class _Backend:
    kind: Kind
    weights: Weights


@dataclass(kw_only=True)
class PromptLearner:
    """Contextual bandit over prompts (see module docs)."""

    level: float = 0.5  # prior quality of an answer, before the prompt is looked at
    cost_weight: float = 10.0
    exploration: float = 0.3
    key_ratings_per_hour: float = 600.0
    key_weights: Mapping[str, float] = field(default_factory=dict)
    remember: int = 4096
    max_votes: int = 50_000
    seed: int | None = None
    clock: Any = time.monotonic
    _shared: Weights = field(default_factory=lambda: Weights(SHARED_PRIOR), init=False)
    _backends: dict[str, _Backend] = field(default_factory=dict, init=False, repr=False)
    _recent: OrderedDict[str, tuple[str, Representation]] = field(
        default_factory=OrderedDict, init=False, repr=False
    )
    _votes: OrderedDict[tuple[str, int, str], tuple[str, _Vote]] = field(
        default_factory=OrderedDict, init=False, repr=False
    )
    _buckets: dict[str, _Bucket] = field(default_factory=dict, init=False, repr=False)
    _groups: Groups = field(default_factory=lambda: Groups(GROUPS, len(FEATURES)), init=False)
    _levels: GroupLevels = field(default_factory=lambda: GroupLevels(GROUPS), init=False)
    _rng: random.Random = field(init=False, repr=False)
    changed: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    # ------------------------------------------------------------------ decisions

    def _backend(self, name: str, kind: Kind) -> _Backend:
        found = self._backends.get(name)
        if found is None or found.kind != kind:
            found = self._backends[name] = _Backend(kind, Weights(BACKEND_PRIOR))
        return found

    def _prior(self, kind: Kind, rep: Representation) -> float:
        """The cold start: the cloud half the scorer's gain above ``level``, local half below
        (a prompt that gains much from the cloud is one the local model often gets wrong)."""
        half = rep.prior_gain / 2
        return self.level + (half if kind == "cloud" else -half)

    def _group(self, kind: Kind, rep: Representation) -> float:
        """What the prompt's group adds to the cold start of a backend of this kind."""
        return self._levels.offset(rep.group, kind == "cloud", rep.prior_gain)

    def quality(self, choice: Choice, rep: Representation) -> tuple[float, float]:
        """(mean, s.d.) of the quality of ``choice``'s answers to this prompt; the s.d. is of
        the backend's own part (the shared part is the same for every backend)."""
        coords = rep.coordinates()
        return self._quality(choice, rep, coords, self._shared.predict(coords)[0])

    def _quality(
        self, choice: Choice, rep: Representation, coords: Coords, shared: float
    ) -> tuple[float, float]:
        found = self._backends.get(choice.name)
        weights = found.weights if found is not None and found.kind == choice.kind else None
        own, var = (weights or _UNTAUGHT).predict(coords)
        prior = self._prior(choice.kind, rep) + self._group(choice.kind, rep)
        return prior + shared + own, math.sqrt(var)

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
        coords = rep.coordinates()
        shared = self._shared.predict(coords)[0]
        qualities = {c.name: self._quality(c, rep, coords, shared) for c in choices}
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
        spread = self.exploration if self._shared.ratings > 0 else 0.0
        draws = None
        sampled = expected
        if spread > 0:
            quality = {n: self._rng.gauss(m, s * spread) for n, (m, s) in qualities.items()}
            variance = self._levels.gain(rep.group)[1]
            if variance > 0:  # the group's gain, drawn once for all backends
                half = self._rng.gauss(0.0, math.sqrt(variance) * GROUP_EXPLORE) / 2
                for c in choices:
                    quality[c.name] += half if c.kind == "cloud" else -half
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
        sampled_net = net
        if draws is not None and local and cloud:
            # utilities carry - margin for a cloud backend: add it back, the knob compares to it
            sampled_net = max(draws[c.name] for c in cloud) + margin
            sampled_net -= max(draws[c.name] for c in local)
        return Belief(
            gain=gain,
            net_gain=net,
            sampled_net_gain=sampled_net,
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

    def assign(self, rep: Representation, *, learn: bool) -> Representation:
        """``rep`` in its prompt group; ``learn`` (a request, not a preview): the groups learn
        from it first (its group's centroid moves towards it, or it starts a group)."""
        sketch = Sketch(rep.words, rep.features)
        group = self._groups.learn(sketch) if learn else self._groups.nearest(sketch)
        return replace(rep, group=group)

    def describe_group(self, rep: Representation) -> str:
        """What the prompt's group says, for ``/route``."""
        if rep.group < 0:
            return "prompt group: none yet (no group is near this prompt)"
        gain, variance = self._levels.gain(rep.group)
        cloud, local = self._levels.ratings(rep.group)
        seen = self._groups.counts[rep.group]
        return (
            f"prompt group {rep.group} ({seen:.0f}{'+' if seen >= MAX_COUNT else ''} requests, "
            f"{cloud:.0f} cloud and {local:.0f} local ratings): moves the cloud's gain by "
            f"{gain:+.2f} ± {math.sqrt(variance):.2f}"
        )

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

        Returns ``"learned"``, ``"replaced"`` (an earlier vote of this request, or of this key
        on this prompt and backend, was taken back first), ``"forgotten"`` (the request is older
        than the last ``remember`` decisions) or ``"limited"`` (the key is over its hourly
        share, or its weight is 0)."""
        found = self._recent.get(request_id)
        if found is None:
            return "forgotten"
        backend, rep = found
        known = self._backends.get(backend)
        backend_kind: Kind = kind or (known.kind if known is not None else "local")
        weight = min(1.0, max(0.0, self.key_weights.get(key_id or "", 1.0)))
        slot = (key_id or "", rep.fingerprint, backend)
        earlier = self._votes.pop(slot, None)
        if earlier is not None:
            self._take_back(earlier[1])
        elif weight <= 0 or not self._allowance(key_id):
            return "limited"
        if weight <= 0:
            return "limited"
        parts = (self._shared, self._backend(backend, backend_kind).weights)
        cloud = backend_kind == "cloud"
        cold = min(1.0, max(0.0, reward)) - self._prior(backend_kind, rep)
        if rep.group >= 0:  # the group first: the weights learn what it leaves
            self._levels.add(rep.group, cloud, rep.prior_gain, cold, weight)
        residual = cold - self._group(backend_kind, rep)
        error, spread = learn(parts, rep.coordinates(), residual, weight)
        self._votes[slot] = (request_id, _Vote(backend, rep, error, spread, cloud, weight, cold))
        while len(self._votes) > self.max_votes:
            self._votes.popitem(last=False)
        self.changed = True
        return "learned" if earlier is None else "replaced"

    def _take_back(self, vote: _Vote) -> None:
        known = self._backends.get(vote.backend)
        if known is not None:
            unlearn((self._shared, known.weights), vote.rep.coordinates(), vote.error, vote.spread)
        if vote.rep.group >= 0:
            group, gain = vote.rep.group, vote.rep.prior_gain
            self._levels.add(group, vote.cloud, gain, vote.residual, -vote.weight)

    def _allowance(self, key_id: str | None) -> bool:
        """Take one rating from the key's hourly bucket; False when it is empty."""
        if self.key_ratings_per_hour <= 0:
            return True
        now = self.clock()
        name = key_id or ""
        bucket = self._buckets.get(name)
        if bucket is None:
            bucket = self._buckets[name] = _Bucket(self.key_ratings_per_hour, now)
        rate = self.key_ratings_per_hour / 3600.0
        bucket.tokens = min(self.key_ratings_per_hour, bucket.tokens + (now - bucket.at) * rate)
        bucket.at = now
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        return True

    # ------------------------------------------------------------------ state

    def to_json(self) -> dict[str, Any]:
        """The weights (only the coordinates that moved) of the shared part and each backend."""
        return {
            "version": STATE_VERSION,
            "hash_bits": HASH_BITS,
            "features": list(FEATURES),
            "groups": self._groups.to_json(),
            "levels": self._levels.to_json(),
            "shared": self._shared.to_json(),
            "backends": {
                name: {"kind": b.kind, **b.weights.to_json()}
                for name, b in sorted(self._backends.items())
            },
        }

    def load_json(self, data: Mapping[str, Any]) -> None:
        """Restore :meth:`to_json` output (ValueError when it does not fit this version). A
        state saved before prompt groups existed (version 2) keeps its weights; its groups
        start empty."""
        version = data.get("version")
        if version not in (_GROUPLESS_VERSION, STATE_VERSION) or data.get("hash_bits") != HASH_BITS:
            raise ValueError("prompt learner state of another version")
        if tuple(data.get("features", ())) != FEATURES:
            raise ValueError("prompt learner state for other scorer features")
        try:
            groups = Groups(GROUPS, len(FEATURES))
            levels = GroupLevels(GROUPS)
            if version == STATE_VERSION:
                groups.load(data["groups"])
                levels.load(data["levels"])
            shared = Weights(SHARED_PRIOR)
            shared.load(data["shared"])
            backends = {}
            for name, row in data["backends"].items():
                kind = row["kind"]
                if kind not in ("local", "cloud"):
                    raise ValueError(f"unknown kind {kind!r}")
                weights = Weights(BACKEND_PRIOR)
                weights.load(row)
                backends[str(name)] = _Backend(kind, weights)
        except (KeyError, TypeError, IndexError) as exc:
            raise ValueError(f"malformed prompt learner state: {exc!r}") from None
        self._shared, self._backends = shared, backends
        self._groups, self._levels = groups, levels

    def ratings(self) -> dict[str, float]:
        """Ratings learnt per backend."""
        return {name: b.weights.ratings for name, b in self._backends.items()}

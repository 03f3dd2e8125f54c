"""The per-prompt learner's arithmetic: its Kalman step, taking a step back, and how widely a
request's route is sampled."""

from __future__ import annotations

import math
import random

from hydra_coordinator.routing.bandit import (
    BACKEND_PRIOR,
    SHARED_PRIOR,
    Choice,
    Coords,
    PromptLearner,
    Weights,
    learn,
    represent,
    unlearn,
)
from hydra_coordinator.routing.scorer import cold_score

CHOICES = (Choice("local", "local"), Choice("cloud", "cloud"))


def rep_of(text: str):
    body = {"messages": [{"role": "user", "content": text}]}
    return represent(body, cold_score(body))


def coords(rng: random.Random) -> Coords:
    index = [0, *sorted(rng.sample(range(1, 2000), 12))]
    value = [1.0, *(rng.uniform(0.05, 1.0) for _ in index[1:])]
    return Coords(index, value, [v * v for v in value])


def test_a_step_taken_back_leaves_the_weights_as_they_were():
    rng = random.Random(7)
    parts = (Weights(SHARED_PRIOR), Weights(BACKEND_PRIOR))
    for _ in range(20):  # some history, so that precisions differ from the prior
        learn(parts, coords(rng), rng.choice((-0.5, 0.5)), 1.0)
    before = [(list(p.mean), list(p.precision)) for p in parts]
    x = coords(rng)
    error, spread = learn(parts, x, 0.7, 0.5)
    unlearn(parts, x, error, spread)
    for (mean, precision), part in zip(before, parts, strict=True):
        for i in x.index:
            assert math.isclose(part.mean[i], mean[i], rel_tol=1e-9, abs_tol=1e-12)
            assert math.isclose(part.precision[i], precision[i], rel_tol=1e-9)


def test_ratings_never_make_the_learner_surer_than_they_allow():
    # the same prompt rated n times: with the full posterior the variance of its prediction is
    # 1 / (1 / prior + n / noise); the diagonal step must not claim less
    x = coords(random.Random(3))
    parts = (Weights(SHARED_PRIOR), Weights(BACKEND_PRIOR))
    prior = sum(p.predict(x)[1] for p in parts)
    for n in range(1, 41):
        learn(parts, x, 0.3, 1.0)
        exact = 1.0 / (1.0 / prior + n / 0.25)
        assert sum(p.predict(x)[1] for p in parts) >= exact * (1 - 1e-9)


def sampled_cloud_share(exploration: float) -> float:
    learner = PromptLearner(seed=5, exploration=exploration, key_ratings_per_hour=0)
    # one rating elsewhere: before any, the sampled route is the expected one
    other = rep_of("Write a haiku about autumn leaves")
    learner.remember_decision("r", "local", other)
    assert learner.rate("r", 1.0, key_id=None, kind="local") == "learned"
    rep = rep_of("Explain step by step why a replicated database needs a quorum")
    gain = learner.estimate(rep, CHOICES, 0.0).gain
    margin = gain + 0.1  # the expected route is local, by a tenth
    beliefs = [learner.estimate(rep, CHOICES, margin) for _ in range(400)]
    assert all(b.expected == "local" for b in beliefs)
    return sum(b.sampled == "cloud" for b in beliefs) / len(beliefs)


def test_an_uncertain_prompt_just_below_the_margin_is_tried_on_the_cloud_as_widely_as_asked():
    full = sampled_cloud_share(1.0)  # plain Thompson sampling
    assert 0.15 < full < 0.5, full  # about P(gain > margin) under the posterior
    assert 0.0 < sampled_cloud_share(0.3) < full / 2
    assert sampled_cloud_share(0.0) == 0.0

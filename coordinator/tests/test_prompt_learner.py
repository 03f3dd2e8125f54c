"""The per-prompt learner's arithmetic: its Kalman step, taking a step back, how widely a
request's route is sampled, and its emergent prompt groups."""

from __future__ import annotations

import math
import random

import pytest

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
from hydra_coordinator.routing.groups import GroupLevels
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


MULTIPLE_CHOICE = "Which of these is a noble gas?\nA. Oxygen\nB. Neon\nC. Iron\nD. Sodium"
WORD_PROBLEM = "Tom has {} apples and buys 12 more at 3 dollars each. How much did he pay?"


def request(learner: PromptLearner, request_id: str, text: str, backend: str):
    rep = learner.assign(rep_of(text), learn=True)
    learner.remember_decision(request_id, backend, rep)
    return rep


def test_local_ratings_that_are_low_across_a_group_raise_that_groups_gain_only():
    learner = PromptLearner(seed=1, key_ratings_per_hour=0)
    word_problems = [WORD_PROBLEM.format(n) for n in range(3, 40)]
    questions = [MULTIPLE_CHOICE.replace("noble gas", f"gas {n}") for n in range(30)]
    for i, (a, b) in enumerate(zip(word_problems, questions, strict=False)):
        request(learner, f"a{i}", a, "local")
        request(learner, f"b{i}", b, "local")
    unseen = learner.assign(rep_of(WORD_PROBLEM.format(99)), learn=False)
    other = learner.assign(rep_of(MULTIPLE_CHOICE.replace("noble gas", "metal")), learn=False)
    assert unseen.group >= 0 and other.group >= 0 and unseen.group != other.group
    before = [learner.estimate(r, CHOICES, 0.0).gain for r in (unseen, other)]
    for i in range(len(questions)):  # the local model fails the word problems
        assert learner.rate(f"a{i}", 0.0, key_id=f"k{i}", kind="local") == "learned"
    after = [learner.estimate(r, CHOICES, 0.0).gain for r in (unseen, other)]
    assert after[0] - before[0] > 0.15, (before, after)  # the group's gain rose ...
    assert abs(after[1] - before[1]) < 0.05, (before, after)  # ... the other group's did not


def test_group_levels_take_a_rating_back_exactly_and_cloud_ratings_correct_the_gain():
    levels = GroupLevels(2)
    rng = random.Random(4)
    for _ in range(40):
        levels.add(0, False, rng.uniform(0.1, 0.4), -0.3, 1.0)  # local ratings below the prior
    low_local = levels.gain(0)
    assert low_local[0] > 0.2  # a local model failing a group is a gain for the cloud ...
    before = [list(row) for row in levels.stats], levels.gain(0)
    levels.add(0, True, 0.3, -0.4, 0.5)
    levels.add(0, True, 0.3, -0.4, -0.5)
    assert all(
        math.isclose(a, b, abs_tol=1e-12)
        for x, y in zip(before[0], levels.stats, strict=True)
        for a, b in zip(x, y, strict=True)
    )
    assert math.isclose(levels.gain(0)[0], before[1][0], abs_tol=1e-12)
    for _ in range(40):  # ... until the cloud's ratings there are as low
        levels.add(0, True, rng.uniform(0.1, 0.4), -0.3, 1.0)
    assert levels.gain(0)[0] < low_local[0] / 2
    assert levels.gain(0)[1] < low_local[1]
    assert levels.gain(1)[0] == 0.0  # a group without ratings: the prior


def test_the_groups_and_their_levels_are_saved_and_restored():
    learner = PromptLearner(seed=2, key_ratings_per_hour=0)
    for i in range(20):
        request(learner, f"r{i}", WORD_PROBLEM.format(i), "local")
        assert learner.rate(f"r{i}", 0.0, key_id=f"k{i}", kind="local") == "learned"
    restored = PromptLearner(seed=2)
    restored.load_json(learner.to_json())
    rep = rep_of(WORD_PROBLEM.format(77))
    mine, theirs = learner.assign(rep, learn=False), restored.assign(rep, learn=False)
    assert mine.group == theirs.group >= 0
    assert learner.estimate(mine, CHOICES, 0.0).gain == restored.estimate(theirs, CHOICES, 0.0).gain


def test_a_state_from_before_the_groups_keeps_its_weights():
    """A router-state.json saved by the previous version (2: no groups) still loads: what its
    weights learnt is kept, the groups start empty."""
    learner = PromptLearner(seed=3, key_ratings_per_hour=0)
    for i in range(10):
        request(learner, f"r{i}", WORD_PROBLEM.format(i), "local")
        learner.rate(f"r{i}", 0.0, key_id=f"k{i}", kind="local")
    state = learner.to_json()
    old = {k: v for k, v in state.items() if k not in ("groups", "levels")}
    old["version"] = 2
    restored = PromptLearner(seed=3)
    restored.load_json(old)
    assert restored.to_json()["shared"] == state["shared"]
    assert restored.to_json()["backends"] == state["backends"]
    assert restored.to_json()["groups"]["centroids"] == []
    with pytest.raises(ValueError, match="another version"):
        restored.load_json({**state, "version": 1})

"""Learned router and task classifier: behaviour on synthetic streams with fixed seeds."""

from __future__ import annotations

import json
import random

import pytest

from hydra_coordinator.routing.learned import (
    Candidate,
    LearnedRouter,
    NoEligibleBackend,
    outcome_credit,
    rating_reward,
)
from hydra_coordinator.routing.taskclass import TASK_CLASSES, TaskClassifier

LOCAL = Candidate("ollama", "local", 0.0)
BIG_LOCAL = Candidate("tabby", "local", 0.0)
CLOUD = Candidate("gpt", "cloud", 0.01)


def run_stream(
    router: LearnedRouter,
    quality: dict[str, float],
    steps: int,
    *,
    candidates: list[Candidate],
    task_class: str = "code",
    seed: int = 7,
) -> list[str]:
    """Route ``steps`` requests; each backend answers well with its hidden probability.

    Every call succeeds and every answer is rated.
    """
    world = random.Random(seed)
    chosen = []
    for _ in range(steps):
        decision = router.decide(task_class, candidates, cloud_allowed=True)
        good = world.random() < quality[decision.backend]
        router.record_outcome(task_class, decision.backend, "ok")
        router.update(task_class, decision.backend, 1.0 if good else 0.0)
        chosen.append(decision.backend)
    return chosen


def test_converges_to_the_better_local_backend():
    router = LearnedRouter(seed=1)
    chosen = run_stream(
        router, {"ollama": 0.3, "tabby": 0.8, "gpt": 0.85}, 600, candidates=[LOCAL, BIG_LOCAL]
    )
    assert chosen[-200:].count("tabby") >= 190
    means = router.snapshot()["code"]
    assert means["tabby"]["mean"] > 0.7 > means["ollama"]["mean"]


def test_pays_for_cloud_only_when_the_quality_gap_is_worth_it():
    cheap_gap = LearnedRouter(seed=2, cost_weight=10.0)  # $0.01 costs 0.1 quality
    chosen = run_stream(cheap_gap, {"ollama": 0.4, "gpt": 0.95}, 800, candidates=[LOCAL, CLOUD])
    assert chosen[-300:].count("gpt") >= 270

    small_gap = LearnedRouter(seed=2, cost_weight=10.0)
    chosen = run_stream(small_gap, {"ollama": 0.88, "gpt": 0.93}, 800, candidates=[LOCAL, CLOUD])
    assert chosen[-300:].count("ollama") >= 240


def test_never_picks_cloud_when_cloud_not_allowed():
    router = LearnedRouter(seed=3)
    for _ in range(50):
        router.update("code", "gpt", 1.0, kind="cloud")
        router.update("code", "ollama", 0.0)
    for _ in range(200):
        decision = router.decide("code", [LOCAL, CLOUD], cloud_allowed=False)
        assert (decision.backend, decision.kind) == ("ollama", "local")
    assert "skipped cloud 'gpt': cloud not allowed" in decision.reasons


def test_cloud_over_the_remaining_budget_is_skipped():
    router = LearnedRouter(seed=4)
    decision = router.decide("chat", [LOCAL, CLOUD], cloud_allowed=True, budget_remaining=0.005)
    assert decision.backend == "ollama"
    assert any("exceeds remaining budget" in reason for reason in decision.reasons)


def test_no_eligible_backend_raises():
    router = LearnedRouter(seed=5)
    with pytest.raises(NoEligibleBackend, match="cloud not allowed"):
        router.decide("chat", [CLOUD], cloud_allowed=False)
    with pytest.raises(NoEligibleBackend):
        router.decide("chat", [], cloud_allowed=True)


def test_feedback_changes_later_decisions():
    def share_local(router: LearnedRouter) -> float:
        picks = [
            router.decide("writing", [LOCAL, CLOUD], cloud_allowed=True).backend for _ in range(300)
        ]
        return picks.count("ollama") / len(picks)

    router = LearnedRouter(seed=6)
    before = share_local(router)
    for _ in range(40):
        router.update("writing", "ollama", rating_reward(-1.0))  # thumbs down
        router.update("writing", "gpt", rating_reward(1.0), kind="cloud")
    after = share_local(router)
    assert before > 0.3
    assert after < 0.05


def test_errors_and_timeouts_count_against_a_backend():
    router = LearnedRouter(seed=7)
    for _ in range(30):
        router.record_outcome("code", "tabby", "timeout")
        router.record_outcome("code", "ollama", "ok")
        router.update("code", "ollama", 0.9)
    picks = [
        router.decide("code", [LOCAL, BIG_LOCAL], cloud_allowed=False).backend for _ in range(100)
    ]
    assert picks.count("ollama") >= 95
    view = router.snapshot()["code"]
    assert view["tabby"]["reliability"] < 0.5 < view["ollama"]["reliability"]
    assert view["tabby"]["satisfaction"] == 0.5  # no rating: a timeout is not a bad answer
    assert (view["tabby"]["outcomes"], view["tabby"]["ratings"]) == (30, 0)


def test_errors_are_not_overstated_when_only_some_answers_are_rated():
    """3% errors and good answers beat 1% errors and worse answers, with 30% rated.

    True quality: tabby 0.97 x 0.80 = 0.776, ollama 0.99 x 0.76 = 0.752. A single
    posterior fed errors on every request but ratings on 30% of them judges
    tabby worse (errors weigh ~3x): 0.725 vs 0.735 on this stream.
    """
    router = LearnedRouter(seed=30)
    liked = {"tabby": 20, "ollama": 19}  # thumbs up per 25 ratings
    failures = {"tabby": 3, "ollama": 1}  # per 100 requests
    rated = {"tabby": 0, "ollama": 0}
    for i in range(2000):
        for backend in ("tabby", "ollama"):
            if i % 100 < failures[backend]:
                router.record_outcome("code", backend, "error")
                continue
            router.record_outcome("code", backend, "ok")
            if i % 10 < 3:  # 30% of the answers get a rating
                good = rated[backend] % 25 < liked[backend]
                rated[backend] += 1
                router.update("code", backend, 1.0 if good else 0.0)
    view = router.snapshot()["code"]
    assert view["tabby"]["reliability"] == pytest.approx(0.97, abs=0.01)
    assert view["ollama"]["reliability"] == pytest.approx(0.99, abs=0.01)
    assert view["tabby"]["satisfaction"] == pytest.approx(0.80, abs=0.01)
    assert view["ollama"]["satisfaction"] == pytest.approx(0.76, abs=0.01)
    assert view["tabby"]["mean"] > view["ollama"]["mean"]
    picks = [
        router.decide("code", [LOCAL, BIG_LOCAL], cloud_allowed=False).backend for _ in range(300)
    ]
    assert picks.count("tabby") > picks.count("ollama")


def test_neighbours_act_as_a_prior():
    router = LearnedRouter(seed=8, prior_local=(1.0, 1.0), prior_cloud=(1.0, 1.0))
    neighbours = [("gpt", -1.0, 0.95), ("ollama", 1.0, 0.9), ("ollama", 1.0, 0.8)] * 3
    picks = [
        router.decide("factual", [LOCAL, CLOUD], cloud_allowed=True, neighbours=neighbours)
        for _ in range(200)
    ]
    assert sum(d.backend == "ollama" for d in picks) >= 190
    assert "similar past queries: 'gpt' +0.0/-5.7, 'ollama' +10.2/-0.0" in picks[0].reasons
    assert router.snapshot() == {}  # neighbours inform one decision; nothing is learned


def test_state_round_trips_through_json():
    router = LearnedRouter(seed=9, cost_weight=5.0)
    run_stream(router, {"ollama": 0.6, "gpt": 0.9}, 200, candidates=[LOCAL, CLOUD])
    state = json.loads(json.dumps(router.to_json()))
    restored = LearnedRouter.from_json(state, seed=9)
    assert restored.to_json() == router.to_json()
    assert restored.snapshot() == router.snapshot()
    assert restored.cost_weight == 5.0


def test_same_seed_same_decisions_after_reload():
    router = LearnedRouter(seed=10)
    run_stream(router, {"ollama": 0.5, "gpt": 0.9}, 100, candidates=[LOCAL, CLOUD])
    a = LearnedRouter.from_json(router.to_json(), seed=11)
    b = LearnedRouter.from_json(router.to_json(), seed=11)
    picks_a = [a.decide("code", [LOCAL, CLOUD], cloud_allowed=True).backend for _ in range(50)]
    picks_b = [b.decide("code", [LOCAL, CLOUD], cloud_allowed=True).backend for _ in range(50)]
    assert picks_a == picks_b


@pytest.mark.parametrize(
    "state",
    [
        {"version": 99},
        {"version": 1},
        {"version": 1, "params": {}, "arms": []},
        {"version": 2},
    ],
)
def test_malformed_state_is_rejected(state):
    with pytest.raises(ValueError):
        LearnedRouter.from_json(state)


def test_decisions_explain_themselves():
    router = LearnedRouter(seed=12)
    decision = router.decide("code", [LOCAL, CLOUD], cloud_allowed=True)
    assert decision.task_class == "code"
    assert decision.reasons[0] == "task class 'code'"
    assert (
        "local 'ollama': quality mean 0.47 (reliability 0.95 from 0 outcomes x "
        "satisfaction 0.50 from 0 ratings)"
    ) in "; ".join(decision.reasons)
    assert any(r.startswith("cloud 'gpt': quality mean 0.71") for r in decision.reasons)
    assert decision.reasons[-1].startswith("chose ")


def test_local_margin_keeps_equal_quality_local():
    router = LearnedRouter(seed=13, cost_weight=0.0, local_margin=1.0)
    picks = [router.decide("chat", [LOCAL, CLOUD], cloud_allowed=True) for _ in range(50)]
    assert all(d.backend == "ollama" for d in picks)
    assert not any(d.explored for d in picks)
    assert any(r.startswith("kept local 'ollama'") for r in picks[0].reasons)


def test_evidence_is_capped_so_the_router_keeps_adapting():
    router = LearnedRouter(seed=14, max_evidence=50.0)
    for _ in range(1000):
        router.update("chat", "ollama", 1.0)
        router.record_outcome("chat", "ollama", "ok")
    arm = router.snapshot()["chat"]["ollama"]
    assert arm["alpha"] + arm["beta"] == pytest.approx(50.0 + 4.0)  # evidence + prior
    assert arm["reliability_alpha"] + arm["reliability_beta"] == pytest.approx(50.0 + 20.0)
    assert (arm["ratings"], arm["outcomes"]) == (1000, 1000)


def test_subclasses_learn_from_their_parent_class():
    router = LearnedRouter(seed=15)
    for _ in range(200):
        router.update("code/hard", "ollama", 0.0)
        router.update("code/hard", "tabby", 1.0)
    view = router.snapshot()
    assert view["code"]["tabby"]["ratings"] == 200  # the parent learned too
    # A sibling context never seen before starts from the parent's belief.
    picks = [
        router.decide("code/easy", [LOCAL, BIG_LOCAL], cloud_allowed=False).backend
        for _ in range(100)
    ]
    assert picks.count("tabby") >= 90
    # ...but only with the backoff's weight, so its own evidence wins quickly.
    for _ in range(60):
        router.update("code/easy", "ollama", 1.0)
        router.update("code/easy", "tabby", 0.0)
    assert router.snapshot()["code/easy"]["ollama"]["satisfaction"] > 0.9


def test_rewards():
    assert rating_reward(1.0) == 1.0
    assert rating_reward(-1.0) == 0.0
    assert rating_reward(0.0) == 0.5
    assert rating_reward(7.0) == 1.0
    assert outcome_credit("ok") == 1.0
    assert outcome_credit("error") == outcome_credit("timeout") == 0.0
    assert outcome_credit("truncated") == 0.25  # a partial failure
    with pytest.raises(ValueError):
        outcome_credit("meh")


def test_invalid_parameters():
    with pytest.raises(ValueError):
        LearnedRouter(prior_local=(0.0, 1.0))
    with pytest.raises(ValueError):
        LearnedRouter(cost_weight=-1.0)
    with pytest.raises(ValueError):
        LearnedRouter(prior_strength=0.0)
    with pytest.raises(ValueError):
        LearnedRouter(threshold=1.5)
    with pytest.raises(ValueError):
        LearnedRouter(prior_reliability=(1.0, 0.0))


# --------------------------------------------------------------------------- v1 confidence as prior


@pytest.mark.parametrize(
    ("threshold", "cost_weight", "local_margin"),
    [(0.7, 10.0, 0.02), (0.5, 0.0, 0.02), (0.85, 30.0, 0.1)],
)
def test_cold_start_routes_as_v1(threshold, cost_weight, local_margin):
    router = LearnedRouter(
        seed=16, threshold=threshold, cost_weight=cost_weight, local_margin=local_margin
    )
    for step in range(101):
        confidence = step / 100
        for task_class in ("code", "code/hard"):
            decision = router.decide(
                task_class,
                [BIG_LOCAL, LOCAL, CLOUD],
                cloud_allowed=True,
                local_prior_mean=confidence,
            )
            expected = "tabby" if confidence >= threshold else "gpt"  # v1's order among locals
            assert decision.backend == expected, (confidence, decision.reasons)
            assert not decision.explored
            assert "no evidence yet: deciding on the prior means, as v1 would" in decision.reasons
    exact = router.decide("chat", [LOCAL, CLOUD], cloud_allowed=True, local_prior_mean=threshold)
    assert exact.kind == "local"  # a tie goes local, as v1's >=
    assert router.snapshot() == {}  # deciding learns nothing


def test_cold_start_follows_v1_against_the_cheapest_eligible_cloud():
    pricey = Candidate("opus", "cloud", 0.05)
    router = LearnedRouter(seed=17)
    for confidence in (0.69, 0.7, 0.71):
        decision = router.decide(
            "chat", [pricey, CLOUD, LOCAL], cloud_allowed=True, local_prior_mean=confidence
        )
        assert decision.kind == ("local" if confidence >= 0.7 else "cloud")
    over_budget = router.decide(
        "chat", [LOCAL, CLOUD], cloud_allowed=True, budget_remaining=0.0, local_prior_mean=0.1
    )
    assert over_budget.backend == "ollama"


def test_evidence_moves_a_low_confidence_request_local():
    router = LearnedRouter(seed=18)
    request = {"cloud_allowed": True, "local_prior_mean": 0.3}  # v1: cloud
    assert router.decide("chat", [LOCAL, CLOUD], **request).backend == "gpt"
    for _ in range(60):  # two noisy parts (reliability x satisfaction): 40 were not quite enough
        router.record_outcome("chat", "ollama", "ok")
        router.record_outcome("chat", "gpt", "ok", kind="cloud")
        router.update("chat", "ollama", rating_reward(1.0))
        router.update("chat", "gpt", rating_reward(1.0))
    picks = [router.decide("chat", [LOCAL, CLOUD], **request).backend for _ in range(200)]
    assert picks.count("ollama") >= 180  # as good as the cloud here: keep it local


def test_evidence_moves_a_high_confidence_request_to_the_cloud():
    router = LearnedRouter(seed=19)
    request = {"cloud_allowed": True, "local_prior_mean": 0.95}  # v1: local
    assert router.decide("reasoning", [LOCAL, CLOUD], **request).backend == "ollama"
    for _ in range(40):
        router.update("reasoning", "ollama", rating_reward(-1.0))
        router.update("reasoning", "gpt", rating_reward(1.0), kind="cloud")
    picks = [router.decide("reasoning", [LOCAL, CLOUD], **request).backend for _ in range(200)]
    assert picks.count("gpt") >= 180


def test_parent_evidence_ends_the_cold_start_of_a_subclass():
    router = LearnedRouter(seed=20)
    for _ in range(40):
        router.update("code/easy", "ollama", 0.0)
        router.update("code/easy", "gpt", 1.0, kind="cloud")
    picks = [
        router.decide("code/hard", [LOCAL, CLOUD], cloud_allowed=True, local_prior_mean=0.9)
        for _ in range(100)
    ]
    assert not any("no evidence yet" in r for d in picks for r in d.reasons)
    assert sum(d.backend == "gpt" for d in picks) >= 80  # "code" learned that local is poor


def test_prior_strength_sets_how_fast_evidence_wins():
    def share_local(strength: float) -> float:
        router = LearnedRouter(seed=21)
        for _ in range(3):
            router.update("chat", "ollama", 1.0)
        picks = [
            router.decide(
                "chat",
                [LOCAL, CLOUD],
                cloud_allowed=True,
                local_prior_mean=0.2,
                prior_strength=strength,
            ).backend
            for _ in range(400)
        ]
        return picks.count("ollama") / len(picks)

    assert share_local(1.0) > share_local(50.0) + 0.3
    with pytest.raises(ValueError):
        LearnedRouter().decide(
            "chat", [LOCAL], cloud_allowed=True, local_prior_mean=0.5, prior_strength=0.0
        )


def test_no_prior_mean_keeps_the_flat_priors():
    plain, explicit = LearnedRouter(seed=22), LearnedRouter(seed=22)
    picks_plain = [plain.decide("code", [LOCAL, CLOUD], cloud_allowed=True) for _ in range(200)]
    picks_none = [
        explicit.decide("code", [LOCAL, CLOUD], cloud_allowed=True, local_prior_mean=None)
        for _ in range(200)
    ]
    assert [d.backend for d in picks_plain] == [d.backend for d in picks_none]
    assert {d.backend for d in picks_plain} == {"ollama", "gpt"}  # still sampled at cold start
    assert not any("v1" in r for d in picks_plain for r in d.reasons)
    assert any(r.startswith("local 'ollama': quality mean 0.47") for r in picks_plain[0].reasons)


def test_prior_parameters_round_trip_and_old_state_loads():
    router = LearnedRouter(seed=23, prior_strength=8.0, threshold=0.6)
    for _ in range(30):
        router.update("code/c1", "ollama", 1.0)
    state = json.loads(json.dumps(router.to_json()))
    restored = LearnedRouter.from_json(state, seed=23)
    assert restored.to_json() == router.to_json()
    assert (restored.prior_strength, restored.threshold) == (8.0, 0.6)
    again = LearnedRouter.from_json(state, seed=23)
    kwargs = {"cloud_allowed": True, "local_prior_mean": 0.4}
    assert [restored.decide("code/c1", [LOCAL, CLOUD], **kwargs).backend for _ in range(50)] == [
        again.decide("code/c1", [LOCAL, CLOUD], **kwargs).backend for _ in range(50)
    ]
    del (
        state["params"]["prior_strength"],
        state["params"]["threshold"],
    )  # state of the first version
    old = LearnedRouter.from_json(state)
    assert (old.prior_strength, old.threshold) == (4.0, 0.7)
    assert old.snapshot() == router.snapshot()


# --------------------------------------------------------------------------- task classes


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hi there, how are you?", "chat"),
        ("thanks!", "chat"),
        ("Why does this raise KeyError?\n```python\nd = {}\nd[1]\n```", "code"),
        ("Traceback (most recent call last):\n  File 'x.py'\nValueError: bad", "code"),
        ("Write a Rust function that parses a JSON config file", "code"),
        ("Prove that the square root of 2 is irrational.", "reasoning"),
        ("Solve step by step: 3x + 7 = 22", "reasoning"),
        ("Write a haiku about GPUs running hot in summer", "writing"),
        ("Rewrite this e-mail in a friendlier tone: ...", "writing"),
        ("What is the capital of Australia?", "factual"),
        ("Who invented the telephone and in which year?", "factual"),
    ],
)
def test_task_classifier(text, expected):
    assert TaskClassifier().classify(text) == expected


def test_classifier_only_returns_known_classes():
    classifier = TaskClassifier()
    assert classifier.classes == TASK_CLASSES
    for text in ["", "?", "x" * 20_000, "```" * 1000]:
        assert classifier.classify(text) in TASK_CLASSES


def test_outcomes_alone_adjust_v1_by_reliability_without_exploring():
    router = LearnedRouter(seed=24)
    for _ in range(50):
        router.record_outcome("chat", "ollama", "ok")
        router.record_outcome("chat", "gpt", "ok", kind="cloud")
    request = {"cloud_allowed": True, "local_prior_mean": 0.75}  # v1: local
    picks = [router.decide("chat", [LOCAL, CLOUD], **request) for _ in range(50)]
    assert {d.backend for d in picks} == {"ollama"}
    assert not any(d.explored for d in picks)
    assert any(r.startswith("no ratings yet") for r in picks[0].reasons)
    for _ in range(50):  # the local backend now times out half of the time
        router.record_outcome("chat", "ollama", "timeout")
        router.record_outcome("chat", "ollama", "ok")
    assert router.decide("chat", [LOCAL, CLOUD], **request).backend == "gpt"


def test_state_of_version_1_loads_as_satisfaction_evidence():
    old = {
        "version": 1,
        "params": {
            "prior_local": [2.0, 2.0],
            "prior_cloud": [3.0, 1.0],
            "cost_weight": 10.0,
            "local_margin": 0.02,
            "neighbour_weight": 2.0,
            "max_evidence": 500.0,
            "backoff": 4.0,
        },
        "kinds": {"gpt": "cloud"},
        "arms": [{"task_class": "code", "backend": "ollama", "wins": 6, "losses": 2, "pulls": 8}],
    }
    router = LearnedRouter.from_json(old)
    arm = router.snapshot()["code"]["ollama"]
    assert (arm["alpha"], arm["beta"], arm["ratings"], arm["outcomes"]) == (8.0, 4.0, 8.0, 0.0)
    assert arm["reliability"] == 0.95  # the prior: no outcomes yet
    assert router.prior_reliability == (19.0, 1.0)
    state = router.to_json()
    assert state["version"] == 2
    assert LearnedRouter.from_json(state).snapshot() == router.snapshot()

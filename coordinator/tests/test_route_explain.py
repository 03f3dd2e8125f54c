"""``POST /route`` explains the decision: the one on expected values (deterministic), what a
random draw would choose now (as a request samples), each backend's estimate, and a confidence
that means the decision."""

from __future__ import annotations

from .servers import running
from .test_feedback import ask, post, settings_for

QUESTION = "hello there, how are you today?"  # task class "chat"


def rate_both(server, text: str) -> None:
    """One request on each side, each rated up: the learner has ratings, so requests sample."""
    for model in ("local", "cloud"):
        request_id, routed = ask(server, model, text)
        assert routed == model
        assert post(server, "/v1/feedback", {"request_id": request_id, "rating": "up"})[0] == 200


def test_route_shows_the_expected_and_the_sampled_decision(fakes, tmp_path):
    local, cloud = fakes
    # no margin for the cloud to beat and wide draws: both routes are plausible for a draw
    wide = {"threshold": 1.0, "learned": {"exploration": 2.0}}
    with running(settings_for(local, cloud, tmp_path, routing=wide)) as server:
        rate_both(server, QUESTION)
        answers = [post(server, "/route", {"query": QUESTION})[1] for _ in range(40)]
        routed = {ask(server, "auto", QUESTION)[1] for _ in range(40)}
    assert routed == {"local", "cloud"}  # real requests sample
    # the answer's decision is the expected one: the same every time
    decisions = {(a["route"], a["backend"], a["confidence"]) for a in answers}
    assert len(decisions) == 1, decisions
    first = answers[0]
    best = first["expected"]
    assert (best["route"], best["backend"], best["confidence"]) == decisions.pop()
    assert 0.5 <= best["confidence"] <= 1
    # ... and each answer shows what a draw chose now: both routes over 40 calls
    assert {a["sampled_decision"]["route"] for a in answers} == {"local", "cloud"}
    for answer in answers:
        assert answer["sampled"] is False and answer["explored"] is False
        assert answer["strategy"] == "learned"
        estimates = {e["backend"]: e for e in answer["estimates"]}
        assert set(estimates) == {"ollama", "openai"}
        for estimate in estimates.values():
            assert isinstance(estimate["quality"], float) and estimate["uncertainty"] > 0
            assert estimate["sample"] is not None
        assert best["backend"] == max(estimates, key=lambda b: estimates[b]["utility"])
        drawn = answer["sampled_decision"]
        assert drawn["backend"] == max(estimates, key=lambda b: estimates[b]["sample"])
        quality = {b: e["quality"] for b, e in estimates.items()}
        gain = answer["cloud_gain"]
        assert abs(gain["mean"] - (quality["openai"] - quality["ollama"])) < 1e-3
        assert gain["sd"] > 0
        # confidence: the probability that the route is the better one
        if drawn["route"] == best["route"]:
            assert drawn["confidence"] == best["confidence"]
        else:
            assert abs(drawn["confidence"] - (1 - best["confidence"])) <= 0.002


def test_route_at_cold_start_decides_on_expected_values(fakes, tmp_path):
    local, cloud = fakes
    with running(settings_for(local, cloud, tmp_path)) as server:
        status, answer = post(server, "/route", {"query": QUESTION})
    assert status == 200
    assert answer["sampled"] is False and answer["explored"] is False
    assert (answer["route"], answer["backend"]) == ("local", "ollama")
    assert answer["expected"] == {
        "route": "local",
        "backend": "ollama",
        "confidence": answer["confidence"],
    }
    assert answer["sampled_decision"] is None  # no rating yet: nothing to explore for
    assert 0.5 < answer["confidence"] <= 1.0
    assert [e["backend"] for e in answer["estimates"]] == ["ollama", "openai"]

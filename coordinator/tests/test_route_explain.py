"""``POST /route`` explains the decision: the one it would take now (sampled), the one on
expected values (deterministic), each backend's estimate, and a confidence that means the
decision."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hydra_coordinator.routing.learned import LearnedRouter

from .servers import FakeUpstream, running
from .test_feedback import post, settings_for

QUESTION = "hello there, how are you today?"  # task class "chat"


@pytest.fixture
def fakes():
    local = FakeUpstream("local", ["llama"]).start()
    cloud = FakeUpstream("cloud", ["gpt-4o"]).start()
    yield local, cloud
    local.kill()
    cloud.kill()


def rated_state(path: Path) -> None:
    """A learned router that has seen a few ratings of both backends on chat: it samples."""
    router = LearnedRouter()
    for backend, kind, rewards in (
        ("ollama", "local", (1, 1, 0, 0, 1)),
        ("openai", "cloud", (1, 1, 1, 0, 1)),
    ):
        for reward in rewards:
            router.update("chat", backend, reward, kind=kind)
    path.write_text(json.dumps(router.to_json()))


def test_route_shows_the_sampled_and_the_expected_decision(fakes, tmp_path):
    local, cloud = fakes
    rated_state(tmp_path / "router-state.json")
    with running(settings_for(local, cloud, tmp_path)) as server:
        answers = [post(server, "/route", {"query": QUESTION})[1] for _ in range(40)]
    expected = {json.dumps(a["expected"], sort_keys=True) for a in answers}
    assert len(expected) == 1, expected  # deterministic: posterior means
    best = answers[0]["expected"]
    assert {a["route"] for a in answers} == {"local", "cloud"}  # sampling explores
    for answer in answers:
        assert answer["sampled"] is True and answer["strategy"] == "learned"
        estimates = {e["backend"]: e for e in answer["estimates"]}
        assert set(estimates) == {"ollama", "openai"}
        for estimate in estimates.values():
            assert 0 <= estimate["quality"] <= 1 and estimate["uncertainty"] > 0
            assert estimate["sample"] is not None
        assert best["backend"] == max(estimates, key=lambda b: estimates[b]["utility"])
        gain = answer["cloud_gain"]
        assert (
            abs(gain["mean"] - (estimates["openai"]["quality"] - estimates["ollama"]["quality"]))
            < 1e-3
        )
        assert gain["sd"] > 0
        # confidence: the probability that the route taken is the better one
        if answer["route"] == best["route"]:
            assert answer["confidence"] == best["confidence"] and not answer["explored"]
        else:
            assert abs(answer["confidence"] - (1 - best["confidence"])) <= 0.002
            assert answer["explored"]
    assert 0.5 <= best["confidence"] <= 1


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
    assert answer["local_confidence"] == 1.0 and 0.5 < answer["confidence"] < 1.0
    assert [e["backend"] for e in answer["estimates"]] == ["ollama", "openai"]

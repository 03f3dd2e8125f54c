"""Routing quality through the real HTTP API: the cold-start scorer, per-prompt learning from
ratings, one vote per key and prompt, per-key bounds, the cloud-share knob, and the learner's
exactness (a rating taken back leaves no trace)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import openai
import pytest

from hydra_coordinator.routing.bandit import PromptLearner, represent
from hydra_coordinator.routing.scorer import cold_score

from .servers import FakeUpstream, local_and_cloud_settings, running

SIMPLE = "What is NixOS?"
SEEDS_CLOUD = (
    "Design a multi-tier NixOS deployment with HA",
    "Design a sharded KV store, step by step",
)
# a family of similar questions the local model gets wrong and the cloud right, one held out
FAMILY = [
    f"How do I tune Ceph placement groups for a pool of {n} OSDs with erasure coding?"
    for n in (4, 6, 8, 12, 16, 24, 32, 48)
]
HELD_OUT = "How should I set Ceph placement groups for an erasure coded pool on 10 OSDs?"
UNRELATED = "What is the capital of France?"


def post(server: Any, path: str, body: dict[str, Any], key: str | None = None) -> dict[str, Any]:
    headers = {"content-type": "application/json"}
    if key:
        headers["authorization"] = f"Bearer {key}"
    request = urllib.request.Request(
        f"{server.url}{path}", data=json.dumps(body).encode(), headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            result: dict[str, Any] = json.loads(response.read())
            return result
    except urllib.error.HTTPError as err:
        with err:
            raise AssertionError(f"{path}: HTTP {err.code} {err.read()!r}") from None


def settings_for(fakes: tuple[FakeUpstream, FakeUpstream], state_dir: Path, **extra: Any) -> Any:
    return local_and_cloud_settings(*fakes, state_dir, **extra)


def ask(server: Any, text: str, model: str = "auto", key: str = "x") -> tuple[str, str]:
    """(request id, route) of a chat completion, through the official client."""
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0) as client:
        raw = client.chat.completions.with_raw_response.create(
            model=model, messages=[{"role": "user", "content": text}]
        )
        raw.parse()
        return raw.headers["x-hydra-request-id"], raw.headers["x-hydra-route"]


def route(server: Any, text: str, key: str | None = None) -> dict[str, Any]:
    return post(server, "/route", {"query": text}, key)


def rate(server: Any, request_id: str, rating: float | str, key: str | None = None) -> str:
    body = post(server, "/v1/feedback", {"request_id": request_id, "rating": rating}, key)
    return str(body["learned"])


def teach(server: Any, text: str, key: str = "x", auth: str | None = None) -> list[str]:
    """The local model's answer to ``text`` was wrong, the cloud's right."""
    local_id, _ = ask(server, text, "local", key)
    cloud_id, _ = ask(server, text, "cloud", key)
    return [rate(server, local_id, "down", auth), rate(server, cloud_id, "up", auth)]


@pytest.mark.parametrize("strategy", ["learned", "threshold"])
def test_the_seed_examples_route_as_designed(fakes, tmp_path, strategy):
    with running(settings_for(fakes, tmp_path, routing={"strategy": strategy})) as server:
        assert ask(server, SIMPLE)[1] == "local"
        assert route(server, SIMPLE)["route"] == "local"
        for text in SEEDS_CLOUD:
            assert ask(server, text)[1] == "cloud", text
            decision = route(server, text)
            assert decision["route"] == "cloud", decision
            assert any("design and architecture" in r for r in decision["reasons"]), decision


def test_route_says_what_it_believes(fakes, tmp_path):
    with running(settings_for(fakes, tmp_path)) as server:
        hard, simple = route(server, SEEDS_CLOUD[0]), route(server, SIMPLE)
    for decision in (hard, simple):
        assert decision["strategy"] == "learned"
        assert decision["expected"]["route"] == decision["route"]  # /route: the expected one
        assert {e["backend"] for e in decision["estimates"]} == {"ollama", "openai"}
        assert decision["cloud_gain"]["sd"] > 0
    # the cloud's estimated gain ranks the prompts: higher = more reason for the cloud
    assert hard["cloud_gain"]["mean"] > 0.3 > simple["cloud_gain"]["mean"]
    assert hard["local_confidence"] < simple["local_confidence"]
    assert any(r.startswith("counted: design and architecture") for r in hard["reasons"])
    assert any(r.startswith("counted: short factual question") for r in simple["reasons"])


def test_ratings_teach_per_prompt_and_survive_a_restart(fakes, tmp_path):
    with running(settings_for(fakes, tmp_path)) as server:
        assert route(server, HELD_OUT)["route"] == "local"
        before = route(server, UNRELATED)["cloud_gain"]["mean"]
        for text in FAMILY:
            assert teach(server, text) == ["learned", "learned"]
        held_out = route(server, HELD_OUT)
        unrelated = route(server, UNRELATED)
        # a prompt never rated, similar to the rated ones, now goes to the cloud ...
        assert held_out["route"] == "cloud", held_out
        assert any("ratings learnt" in r for r in held_out["reasons"])
        # the group the requests formed, and what its ratings say, is shown
        assert any(r.startswith("prompt group ") for r in held_out["reasons"]), held_out
        # ... an unrelated one stays local
        assert unrelated["route"] == "local", unrelated
        assert unrelated["cloud_gain"]["mean"] - before < (held_out["cloud_gain"]["mean"] - 0.2)
    with running(settings_for(fakes, tmp_path)) as server:
        reloaded = route(server, HELD_OUT)  # the learnt state was saved and reloaded
    for field in ("route", "cloud_gain", "local_confidence"):
        assert reloaded[field] == held_out[field], (reloaded[field], held_out[field])
    for mine, saved in zip(reloaded["estimates"], held_out["estimates"], strict=True):
        mine.pop("sample"), saved.pop("sample")  # a fresh draw, showing what sampling does
        assert mine == saved, (mine, saved)


def test_a_rating_replaces_the_earlier_one_and_a_key_votes_once_per_prompt(fakes, tmp_path):
    with running(settings_for(fakes, tmp_path)) as server:
        cold = route(server, HELD_OUT)["cloud_gain"]["mean"]
        request_id, _ = ask(server, HELD_OUT, "cloud")
        assert rate(server, request_id, "up") == "learned"
        once = route(server, HELD_OUT)["cloud_gain"]["mean"]
        assert once > cold
        for _ in range(30):  # the same request rated again and again counts once
            assert rate(server, request_id, "up") == "replaced"
        assert route(server, HELD_OUT)["cloud_gain"]["mean"] == pytest.approx(once, abs=1e-3)
        for _ in range(10):  # so do other requests of the same prompt by the same key
            again, _ = ask(server, HELD_OUT, "cloud")
            assert rate(server, again, "up") == "replaced"
        assert route(server, HELD_OUT)["cloud_gain"]["mean"] == pytest.approx(once, abs=1e-3)
        assert rate(server, request_id, "down") == "replaced"  # a change of mind replaces
        assert route(server, HELD_OUT)["cloud_gain"]["mean"] < cold


def keyed(fakes, state: Path, keys: Path) -> Any:
    from hydra_coordinator.auth import key_id

    auth = {"api_key_files": [str(keys / n) for n in ("mallory", "alice", "muted")]}
    learned = {"key_weights": {key_id("key-muted"): 0.0}, "key_ratings_per_hour": 20}
    return settings_for(fakes, state, auth=auth, routing={"learned": learned})


def test_one_key_cannot_steer_routing_for_everyone(fakes, tmp_path):
    keys = tmp_path / "keys"
    keys.mkdir()
    for name in ("mallory", "alice", "muted"):
        (keys / name).write_text(f"key-{name}")
    target = SEEDS_CLOUD[1]

    def flood(server: Any, times: int) -> list[str]:
        """mallory asks alice's question and says the cloud's answers are bad, the local good"""
        results = []
        for _ in range(times):
            cloud_id, _ = ask(server, target, "cloud", "key-mallory")
            local_id, _ = ask(server, target, "local", "key-mallory")
            results += [
                rate(server, cloud_id, "down", "key-mallory"),
                rate(server, local_id, "up", "key-mallory"),
            ]
        return results

    with running(keyed(fakes, tmp_path / "once", keys)) as server:
        cold = route(server, target, "key-alice")
        assert flood(server, 1) == ["learned", "learned"]
        once = route(server, target, "key-alice")
    with running(keyed(fakes, tmp_path / "flood", keys)) as server:
        results = flood(server, 150)  # 300 ratings of alice's question by one key ...
        assert results.count("learned") == 2 and results.count("replaced") == 298
        flooded = route(server, target, "key-alice")
        # ... weigh as one vote per backend: what one rating of each does (the same evidence;
        # the mean differs a little because a vote taken back is not always the last one)
        assert flooded["cloud_gain"]["sd"] == once["cloud_gain"]["sd"]
        assert flooded["cloud_gain"]["mean"] == pytest.approx(once["cloud_gain"]["mean"], abs=0.05)
        assert cold["cloud_gain"]["mean"] - flooded["cloud_gain"]["mean"] < 0.5
        # many different prompts: at most key_ratings_per_hour ratings an hour teach
        outcomes = [
            rate(
                server,
                ask(server, f"{target} for shop {i}", "cloud", "key-mallory")[0],
                "down",
                "key-mallory",
            )
            for i in range(25)
        ]
        assert outcomes.count("learned") == 18, outcomes  # 20 an hour, 2 taken by the flood
        assert outcomes.count("limited") == 7
        # a key of weight 0 teaches nothing
        before = route(server, HELD_OUT, "key-alice")["cloud_gain"]
        for text in FAMILY:
            assert teach(server, text, "key-muted", "key-muted") == ["limited", "limited"]
        assert route(server, HELD_OUT, "key-alice")["cloud_gain"] == before


def test_the_cloud_share_follows_the_operators_target(fakes, tmp_path):
    prompts = [
        template.format(n=n)
        for n in range(12)
        for template in (
            "What is {n} plus {n}?",
            "Explain step by step why a distributed database with {n} replicas needs quorum",
            "Write a short poem about the number {n}",
            "Design a fault-tolerant pipeline for {n} sensors, then compare the trade-offs",
            "A shop sells {n} apples at $3 each and 4 pears at $2 each. What is the total?",
        )
    ]
    shares = {}
    for target in (0.2, 0.6):
        state = tmp_path / str(target)
        with running(settings_for(fakes, state, routing={"target_cloud_share": target})) as server:
            routes = [ask(server, text)[1] for text in prompts]
        tail = routes[20:]  # after the first requests the knob has a history
        shares[target] = tail.count("cloud") / len(tail)
        assert abs(shares[target] - target) <= 0.15, (target, shares[target])
    assert shares[0.6] > shares[0.2]


def test_taking_a_rating_back_leaves_no_trace():
    learner = PromptLearner(seed=1, key_ratings_per_hour=0)
    body = {"messages": [{"role": "user", "content": HELD_OUT}]}
    rep = represent(body, cold_score(body))
    fresh = learner.to_json()
    learner.remember_decision("r1", "openai", rep)
    assert learner.rate("r1", 1.0, key_id=None, kind="cloud") == "learned"
    assert learner.to_json() != fresh
    learner.remember_decision("r2", "openai", rep)
    assert learner.rate("r2", 0.0, key_id=None, kind="cloud") == "replaced"  # same key, prompt
    replaced = learner.to_json()
    other = PromptLearner(seed=1, key_ratings_per_hour=0)
    other.remember_decision("r2", "openai", rep)
    other.rate("r2", 0.0, key_id=None, kind="cloud")
    for name in ("shared",):
        for field in ("index", "ratings"):
            assert replaced[name][field] == other.to_json()[name][field]
        for mine, theirs in zip(replaced[name]["mean"], other.to_json()[name]["mean"], strict=True):
            assert mine == pytest.approx(theirs, abs=1e-9)
    assert learner.rate("unknown", 1.0, key_id=None) == "forgotten"


@pytest.mark.parametrize(
    ("text", "label", "sign"),
    [
        ("Implement a binary search algorithm in Python for a sorted list", "asks for code", 1),
        ("What are some tips to improve my time management?", "tips or advice", -1),
        ("Pretend to be a pirate captain and rally your crew", "role-play", -1),
    ],
)
def test_the_scorer_says_what_counted_and_which_way(text, label, sign):
    """The features fitted on real chat requests: asking for code in words raises the cloud's
    estimated gain, asking for tips or role-play lowers it, and /route's reasons say so."""
    body = {"messages": [{"role": "user", "content": text}]}
    score = cold_score(body)
    counted = {name: amount for name, amount in score.contributions}
    feature = {"asks for code": "programming", "tips or advice": "advice", "role-play": "roleplay"}
    assert counted[feature[label]] * sign > 0, counted
    assert any(label in reason for reason in score.explain(limit=10)), score.explain(limit=10)
    plain = cold_score({"messages": [{"role": "user", "content": "Tell me about the sea"}]})
    assert plain.signals[feature[label]] == 0.0

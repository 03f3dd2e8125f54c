"""Feedback and learning end to end: ratings change later decisions and survive a restart."""

from __future__ import annotations

import json
import sqlite3
import urllib.error
import urllib.request

import openai

from .servers import local_and_cloud_settings, running

HARD = (
    "Design the architecture of a distributed cache and compare the trade-offs step by step:\n"
    "```python\nclass Cache: ...\n```"
)


def post(server, path: str, body: dict, key: str | None = None) -> tuple[int, dict]:
    headers = {"content-type": "application/json"}
    if key:
        headers["authorization"] = f"Bearer {key}"
    request = urllib.request.Request(
        f"{server.url}{path}", data=json.dumps(body).encode(), headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        with err:
            return err.code, json.loads(err.read())


settings_for = local_and_cloud_settings


def ask(server, model: str, text: str = HARD):
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0) as client:
        raw = client.chat.completions.with_raw_response.create(
            model=model, messages=[{"role": "user", "content": text}]
        )
        return raw.headers["x-hydra-request-id"], raw.headers["x-hydra-route"]


def route(server, text: str = HARD) -> dict:
    return post(server, "/route", {"query": text})[1]


def test_feedback_changes_later_decisions_and_survives_a_restart(fakes, tmp_path):
    local, cloud = fakes
    # requests take the expected route (no sampling), so the check below is deterministic
    expected = {"routing": {"learned": {"exploration": 0}}}
    with running(settings_for(local, cloud, tmp_path, **expected)) as server:
        assert route(server)["route"] == "cloud"  # cold start: the scorer's estimate
        # a key has one vote per prompt and backend: the lesson comes from variants of it
        for i in range(8):
            variant = f"{HARD}\n# case {i}"
            request_id, routed = ask(server, "local", variant)
            assert routed == "local"
            assert (
                post(server, "/v1/feedback", {"request_id": request_id, "rating": "up"})[0] == 200
            )
            request_id, routed = ask(server, "cloud", variant)
            assert routed == "cloud"
            status, body = post(server, "/v1/feedback", {"request_id": request_id, "rating": -1})
            assert status == 200 and body["backend"] == "openai"
        decision = route(server)
        assert decision["route"] == "local", decision
        assert any("ratings learnt" in reason for reason in decision["reasons"])
        # the learnt gain of the cloud is below the cold-start one (1 - local_confidence)
        assert decision["cloud_gain"]["mean"] < 1 - decision["local_confidence"]
        _rid, routed = ask(server, "auto")
        assert routed == "local", server.runtime.pool.views()
    assert (tmp_path / "router-state.json").exists()
    with running(settings_for(local, cloud, tmp_path)) as server:
        assert route(server)["route"] == "local"  # learned state reloaded
    rows = (
        sqlite3.connect(tmp_path / "telemetry.sqlite3")
        .execute("SELECT count(*), min(rating), max(rating) FROM feedback")
        .fetchone()
    )
    assert rows == (16, -1.0, 1.0)


def test_feedback_errors(fakes, tmp_path):
    local, cloud = fakes
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "a").write_text("key-a")
    (keys / "b").write_text("key-b")
    settings = settings_for(
        local, cloud, tmp_path, auth={"api_key_files": [str(keys / "a"), str(keys / "b")]}
    )
    with running(settings) as server:
        with openai.OpenAI(base_url=f"{server.url}/v1", api_key="key-a", max_retries=0) as client:
            raw = client.chat.completions.with_raw_response.create(
                model="local", messages=[{"role": "user", "content": "hi"}]
            )
            raw.parse()
        request_id = raw.headers["x-hydra-request-id"]
        status, body = post(server, "/v1/feedback", {"request_id": "nope", "rating": 1}, "key-a")
        assert status == 404 and body["error"]["code"] == "request_not_found"
        # another key cannot rate (or even see) this request
        assert (
            post(server, "/v1/feedback", {"request_id": request_id, "rating": 1}, "key-b")[0] == 404
        )
        for bad in (2, "meh", None):
            status, body = post(
                server, "/v1/feedback", {"request_id": request_id, "rating": bad}, "key-a"
            )
            assert status == 400, bad
            assert body["error"]["type"] == "invalid_request_error"
        status, body = post(
            server,
            "/v1/feedback",
            {"request_id": request_id, "rating": 0.5, "comment": "fine"},
            "key-a",
        )
        assert status == 200 and body["rating"] == 0.5 and body["route"] == "local"
        assert post(server, "/v1/feedback", {"request_id": request_id, "rating": 1})[0] == 401

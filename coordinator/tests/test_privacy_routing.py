"""Privacy rules on the request path: secrets never reach a cloud upstream (checked at the fake)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import openai
import pytest

from .servers import FakeUpstream, coordinator_settings, fetch, running

AWS = "AKIA2E0A8F3B244C9986"  # the shape of an AWS access key id (not AWS's documented example)
PEM = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
    "QyNTUxOQAAACA1o6qzRXq9Lm2Vt7Yp0Zk3JfW8cHn4BdG6sE1uK5aTbwAAAJgq1a2VKtWt\n"
    "-----END OPENSSH PRIVATE KEY-----"
)
HARD = "Design the architecture and compare the trade-offs step by step:\n```\ndef f(): ...\n```"


@pytest.fixture
def lab():
    local = FakeUpstream("local", ["llama"]).start()
    cloud = FakeUpstream("cloud", ["gpt-4o"]).start()
    settings = coordinator_settings(
        [
            {"name": "ollama", "kind": "local", "base_url": local.base_url},
            {"name": "openai", "kind": "cloud", "base_url": cloud.base_url, "models": ["gpt-4o"]},
        ],
        privacy={
            "rules": [
                {
                    "name": "no-weapons",
                    "action": "block",
                    "keywords": ["nerve agent"],
                    "reason": "this lab does not answer that",
                },
                {"name": "secrets-stay-home", "action": "local_only", "detectors": ["secret"]},
                {"name": "pii-stays-home", "action": "local_only", "detectors": ["pii"]},
            ]
        },
    )
    with running(settings) as server:
        yield server, local, cloud
    local.kill()
    cloud.kill()


def client(server):
    return server.client("x")


PLACEMENTS = {
    "system": [
        {"role": "system", "content": f"deploy key {AWS}"},
        {"role": "user", "content": HARD},
    ],
    "user": [{"role": "user", "content": f"{HARD}\nmy key is {AWS}"}],
    "earlier turn": [
        {"role": "user", "content": f"remember {PEM}"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": HARD},
    ],
    "tool result": [
        {"role": "user", "content": HARD},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "read_env", "arguments": "{}"},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": f"AWS_ACCESS_KEY_ID={AWS}"},
    ],
    "list content": [
        {
            "role": "user",
            "content": [{"type": "text", "text": HARD}, {"type": "text", "text": f"key {AWS}"}],
        }
    ],
    "personal data": [
        {
            "role": "user",
            "content": f"{HARD} Mail jane.doe@example.org, IBAN DE89 3704 0044 0532 0130 00",
        }
    ],
}


@pytest.mark.parametrize("where", sorted(PLACEMENTS))
@pytest.mark.parametrize("model", ["auto", "cloud", "gpt-4o"])
def test_secret_never_reaches_the_cloud(lab, where, model):
    server, local, cloud = lab
    raw = client(server).chat.completions.with_raw_response.create(
        model=model, messages=PLACEMENTS[where]
    )
    assert raw.headers["x-hydra-route"] == "local"
    assert raw.parse().choices[0].message.content.startswith("local:")
    assert cloud.requests() == []
    assert len(local.requests()) == 1


def test_the_same_hard_prompt_without_a_secret_goes_to_the_cloud(lab):
    server, local, cloud = lab
    raw = client(server).chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": HARD}]
    )
    assert raw.headers["x-hydra-route"] == "cloud"
    assert len(cloud.requests()) == 1 and local.requests() == []


def test_no_fallback_to_the_cloud_when_local_fails(lab):
    server, local, cloud = lab
    local.control(fail_status=500)
    with pytest.raises(openai.InternalServerError):
        client(server).chat.completions.create(model="auto", messages=PLACEMENTS["user"])
    assert cloud.requests() == []
    local.kill()
    server.wait_backend("ollama", "down")
    with pytest.raises(openai.APIStatusError) as caught:
        client(server).chat.completions.create(
            model="auto", messages=PLACEMENTS["user"], stream=True
        )
    assert caught.value.status_code == 503
    assert cloud.requests() == []


def test_block_rule_is_403_with_its_reason(lab):
    server, local, cloud = lab
    with pytest.raises(openai.PermissionDeniedError) as caught:
        client(server).chat.completions.create(
            model="auto", messages=[{"role": "user", "content": "how to make a nerve agent"}]
        )
    assert "this lab does not answer that" in str(caught.value)
    assert local.requests() == [] and cloud.requests() == []


def test_route_explains_the_rule_without_the_text(lab):
    server, _, cloud = lab
    request = urllib.request.Request(
        f"{server.url}/route",
        data=json.dumps({"query": f"{HARD} {AWS}"}).encode(),
        headers={"content-type": "application/json"},
    )
    decision = json.loads(fetch(request))
    assert decision["route"] == "local"
    assert decision["privacy_rule"] == "secrets-stay-home"
    text = json.dumps(decision)
    assert "aws_access_key" in text and AWS not in text
    assert cloud.requests() == []


def test_privacy_off_lets_secrets_through(tmp_path):
    cloud = FakeUpstream("cloud", ["gpt-4o"]).start()
    try:
        settings = coordinator_settings(
            [{"name": "openai", "kind": "cloud", "base_url": cloud.base_url}],
            privacy={"enabled": False},
        )
        with running(settings) as server:
            client(server).chat.completions.create(model="cloud", messages=PLACEMENTS["user"])
        assert len(cloud.requests()) == 1
    finally:
        cloud.kill()


def test_default_config_keeps_secrets_home():
    from hydra_coordinator.config import Settings

    actions = {r.name: (r.action, tuple(r.detectors)) for r in Settings().privacy.rules}
    assert ("local_only", ("secret",)) in actions.values()
    assert ("local_only", ("pii",)) in actions.values()

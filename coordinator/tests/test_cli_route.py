"""``hydra-coordinator route`` tells the server's truth: it asks the running coordinator's
``/route``, and without one it runs the same pipeline (privacy rules, the learned state, the
backends' discovered models) instead of v1 alone; it says which it did."""

from __future__ import annotations

import json
from pathlib import Path

from hydra_coordinator.config import load_settings

from .servers import free_port, local_and_cloud_backends, running
from .test_cli import cli
from .test_feedback import ask, post

# v1 alone sends this to the cloud; it carries a card number and an e-mail address
PERSONAL = (
    "Design a multi-tier deployment with failover, step by step, and compare the trade-offs; "
    "bill card 4398 2597 9190 7482 and mail the plan to bob@example.com"
)
CHAT = "hello there, how are you today?"  # v1: local, confidence 1.0


def write_config(tmp_path: Path, local, cloud, **extra) -> Path:
    config = {
        "listen": {"host": "127.0.0.1", "port": free_port()},
        "state_dir": str(tmp_path / "state"),
        "log": {"level": "warning", "access": False},
        "backends": local_and_cloud_backends(local, cloud),
        **extra,
    }
    path = tmp_path / "hydra.json"
    path.write_text(json.dumps(config))
    return path


def teach_cloud_for_chat(config: Path) -> None:
    """Run the coordinator, rate its local answers to CHAT down and the cloud's up, stop it:
    the learned state is in the state directory."""
    with running(load_settings(config)) as server:
        for i in range(8):  # one key has one vote per prompt: variants of the question
            for model, rating in (("local", "down"), ("cloud", "up")):
                request_id, routed = ask(server, model, f"{CHAT} ({i})")
                assert routed == model
                rated = {"request_id": request_id, "rating": rating}
                assert post(server, "/v1/feedback", rated)[0] == 200
        assert post(server, "/route", {"query": CHAT})[1]["route"] == "cloud"


def route(config: Path, *args: str) -> dict:
    result = cli("route", "--json", "--config", str(config), *args)
    assert result.returncode == 0, result.stderr
    answer: dict = json.loads(result.stdout)
    return answer


def test_offline_route_applies_privacy_learned_state_and_discovered_models(fakes, tmp_path):
    local, cloud = fakes
    config = write_config(tmp_path, local, cloud)
    teach_cloud_for_chat(config)

    personal = route(config, PERSONAL)
    assert personal["source"] == "offline"
    assert (personal["route"], personal["backend"]) == ("local", "ollama")
    assert personal["privacy_rule"] is not None and personal["confidence"] == 1.0

    chat = route(config, CHAT)  # v1 alone: local, confidence 1.0
    assert chat["source"] == "offline"
    assert (chat["route"], chat["backend"]) == ("cloud", "openai")
    assert any("8 ratings learnt" in reason for reason in chat["reasons"])
    assert any("learned state:" in note for note in chat["notes"])

    discovered = route(config, CHAT, "--model", "llama")  # only the backend's /models says so
    assert (discovered["route"], discovered["backend"]) == ("local", "ollama")

    text = cli("route", "--config", str(config), PERSONAL)
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith("source:     evaluated here (no coordinator answered at")
    assert "route:      local" in text.stdout and "privacy:    rule" in text.stdout


def test_route_asks_the_running_coordinator(fakes, tmp_path):
    local, cloud = fakes
    (tmp_path / "keys").write_text("the-key\n")
    config = write_config(tmp_path, local, cloud, auth={"api_key_files": [str(tmp_path / "keys")]})
    settings = load_settings(config)
    with running(settings) as server:
        answer = route(config, PERSONAL)  # with the key of auth.api_key_files
        assert answer["source"] == "server" and answer["server_url"] == server.url
        assert answer["route"] == "local" and answer["privacy_rule"]
        assert server.runtime.recent.latest()[0]["kind"] == "route"  # the server decided
        assert len(server.runtime.recent) == 1

        text = cli("route", "--config", str(config), CHAT)
        assert text.stdout.startswith(f"source:     the coordinator at {server.url}")

        (tmp_path / "wrong").write_text("not-the-key")
        refused = cli(
            "route", "--config", str(config), "--api-key-file", str(tmp_path / "wrong"), CHAT
        )
        assert refused.returncode == 1
        assert f"the coordinator at {server.url} wants an API key" in refused.stderr

        unknown = cli("route", "--config", str(config), "--model", "no-such-model", CHAT)
        assert unknown.returncode == 1  # the server's answer, not an offline guess
        assert "answered HTTP 404" in unknown.stderr and "no-such-model" in unknown.stderr

        offline = route(config, "--offline", CHAT)
        assert offline["source"] == "offline"
        assert len(server.runtime.recent) == 2  # the text query above; not the offline one

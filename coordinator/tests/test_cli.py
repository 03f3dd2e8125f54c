"""The command line, through a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from hydra_coordinator import __version__

from .servers import FakeUpstream, fetch, free_port, wait_http


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 30):
    return subprocess.run(
        [sys.executable, "-m", "hydra_coordinator", *args],
        capture_output=True,
        check=False,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def test_version():
    result = cli("--version")
    assert result.returncode == 0 and __version__ in result.stdout


def test_top_level_help_shows_whole_summaries():
    from hydra_coordinator.cli import main

    result = cli("--help")
    assert result.returncode == 0, result.stderr
    listing = result.stdout.split("Commands:")[1]
    assert "..." not in listing
    for name, command in main.commands.items():
        summary = command.get_short_help_str()
        assert f"{name}  " in listing and summary in listing.replace("\n", " "), (name, listing)
        assert " ".join(summary.split()) == summary and summary.endswith((".", ")")), summary
    assert "Examples:" in result.stdout


def test_every_command_has_an_example():
    from hydra_coordinator.cli import main

    for name in main.commands:
        result = cli(name, "--help")
        assert result.returncode == 0, result.stderr
        example = result.stdout.split("Example")[1] if "Example" in result.stdout else ""
        assert "hydra-coordinator" in example, (name, result.stdout)


def test_help_on_every_command():
    for command in (
        [],
        ["serve"],
        ["check-config"],
        ["route"],
        ["migrate"],
        ["stats"],
        ["mcp"],
        ["key-id"],
    ):
        result = cli(*command, "--help")
        assert result.returncode == 0, result.stderr
        assert "Usage:" in result.stdout


def test_check_config_prints_effective_config(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(
        json.dumps({"backends": [{"name": "o", "kind": "cloud", "base_url": "https://u:pw@x/v1"}]})
    )
    result = cli("check-config", str(path))
    assert result.returncode == 0, result.stderr
    effective = json.loads(result.stdout)
    assert effective["listen"]["host"] == "127.0.0.1"
    assert effective["listen"]["port"] == 8092
    assert effective["backends"][0]["base_url"] == "https://u:***@x/v1"


def test_check_config_takes_config_like_every_command(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"listen": {"port": 9123}}))
    for args, env in (
        (["--config", str(path)], {}),
        ([], {"HYDRA_COORDINATOR_CONFIG": str(path)}),
        ([str(path)], {}),
    ):
        result = cli("check-config", *args, env=env)
        assert result.returncode == 0, (args, result.stderr)
        assert json.loads(result.stdout)["listen"]["port"] == 9123
    other = tmp_path / "other.json"
    other.write_text("{}")
    result = cli("check-config", str(path), "--config", str(other))
    assert result.returncode == 2 and "two config files" in result.stderr


def test_check_config_defaults_prints_the_embedded_defaults(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"listen": {"port": 9123}}))
    result = cli("check-config", "--defaults", env={"HYDRA_COORDINATOR_CONFIG": str(path)})
    assert result.returncode == 0, result.stderr
    defaults = json.loads(result.stdout)
    assert (defaults["listen"]["host"], defaults["listen"]["port"]) == ("127.0.0.1", 8092)
    assert defaults["backends"][0]["base_url"] == "http://127.0.0.1:11434/v1"
    # what it prints is a config file that checks as the same configuration
    copy = tmp_path / "defaults.json"
    copy.write_text(result.stdout)
    again = cli("check-config", str(copy))
    assert again.returncode == 0 and json.loads(again.stdout) == defaults


def test_check_config_rejects_with_the_key(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"listen": {"port": 80, "hots": "x"}}))
    result = cli("check-config", str(path))
    assert result.returncode == 1
    assert "listen.hots: unknown key" in result.stderr


def test_route_prints_the_decision(tmp_path):
    fake = FakeUpstream("local", ["m"]).start()  # the backend is probed: it must answer
    config = tmp_path / "c.json"
    backends = [{"name": "ollama", "kind": "local", "base_url": fake.base_url}]
    settings = {"backends": backends, "state_dir": str(tmp_path), "listen": {"port": free_port()}}
    config.write_text(json.dumps(settings))
    try:
        result = cli("route", "--config", str(config), "What is 2+2?")
        assert result.returncode == 0
        assert "route:      local" in result.stdout and "backend:    ollama" in result.stdout
        as_json = json.loads(cli("route", "--config", str(config), "--json", "hello").stdout)
        assert as_json["route"] == "local" and as_json["reasons"]
    finally:
        fake.kill()


def test_serve_refuses_bad_config_before_listening(tmp_path):
    port = free_port()
    path = tmp_path / "c.json"
    path.write_text(
        json.dumps({"listen": {"port": port}, "auth": {"api_key_files": [str(tmp_path / "nope")]}})
    )
    result = cli("serve", "--config", str(path))
    assert result.returncode == 1
    assert "auth.api_key_files.0: cannot read secret file" in result.stderr


def test_serve_runs_and_stops_on_sigterm(tmp_path):
    fake = FakeUpstream("local", ["m"]).start()
    port = free_port()
    path = tmp_path / "c.toml"
    path.write_text(
        f'[listen]\nport = {port}\n[[backends]]\nname = "ollama"\nkind = "local"\n'
        f'base_url = "{fake.base_url}"\n'
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "hydra_coordinator", "serve"],
        env={
            **os.environ,
            "HYDRA_COORDINATOR_CONFIG": str(path),
            "STATE_DIRECTORY": str(tmp_path / "state"),
        },
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/health")
        deadline = time.monotonic() + 5
        while True:
            health = json.loads(fetch(f"http://127.0.0.1:{port}/health"))
            if health["status"] == "healthy" or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert health["backends"] == {"ollama": "healthy"}
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=10)
        fake.kill()
    # uvicorn re-raises SIGTERM after a graceful shutdown (systemd counts that as a clean stop)
    assert process.returncode in (0, -15)
    assert f"serving on http://127.0.0.1:{port}" in stderr
    assert "hydra-coordinator stopped" in stderr


def test_key_id_prints_the_id_budgets_and_rules_use(tmp_path):
    from hydra_coordinator.auth import key_id

    path = tmp_path / "key"
    path.write_text("sk-hydra-example\n")
    result = cli("key-id", str(path))
    assert result.returncode == 0
    assert result.stdout.strip() == key_id("sk-hydra-example") and len(result.stdout.strip()) == 12
    empty = tmp_path / "empty"
    empty.write_text("# no key yet\n\n")
    result = cli("key-id", str(empty))
    assert result.returncode == 1 and f"{empty} holds no key" in result.stderr


def test_key_id_reads_a_key_file_as_serve_does(tmp_path):
    from hydra_coordinator.auth import key_id

    path = tmp_path / "keys"
    path.write_text("# alice\nsk-alice\n\n  # bob\nsk-bob  \n")
    result = cli("key-id", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [key_id("sk-alice"), key_id("sk-bob")]

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
    assert effective["listen"] == {"host": "127.0.0.1", "port": 8092}
    assert effective["backends"][0]["base_url"] == "https://u:***@x/v1"


def test_check_config_rejects_with_the_key(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"listen": {"port": 80, "hots": "x"}}))
    result = cli("check-config", str(path))
    assert result.returncode == 1
    assert "listen.hots: unknown key" in result.stderr


def test_route_prints_the_decision():
    result = cli("route", "What is 2+2?")
    assert result.returncode == 0
    assert "route:      local" in result.stdout and "backend:    ollama" in result.stdout
    as_json = json.loads(cli("route", "--json", "hello").stdout)
    assert as_json["route"] == "local" and as_json["reasons"]


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
    assert "serving 1 backend" in stderr
    assert "hydra-coordinator stopped" in stderr


def test_key_id_prints_the_id_budgets_and_rules_use(tmp_path):
    from hydra_coordinator.auth import key_id

    path = tmp_path / "key"
    path.write_text("sk-hydra-example\n")
    result = cli("key-id", str(path))
    assert result.returncode == 0
    assert result.stdout.strip() == key_id("sk-hydra-example") and len(result.stdout.strip()) == 12
    empty = tmp_path / "empty"
    empty.write_text("")
    result = cli("key-id", str(empty))
    assert result.returncode == 1 and "empty" in result.stderr

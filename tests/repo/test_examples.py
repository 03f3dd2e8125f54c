"""Every configuration in examples/ is valid: `hydra-coordinator check-config` accepts it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.toml"))
# the secrets the examples name: credentials (lab) and an environment variable (OpenAI)
CREDENTIALS = ("coordinator-api-keys", "tabbyapi-api-key", "openai-api-key")


def check_config(path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hydra_coordinator", "check-config", str(path)],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    for name in CREDENTIALS:
        (credentials / name).write_text(f"secret-{name}\n")
    environment = {k: v for k, v in os.environ.items() if not k.startswith("HYDRA_")}
    environment.update(CREDENTIALS_DIRECTORY=str(credentials), OPENAI_API_KEY="sk-example")
    return environment


def test_the_common_setups_have_an_example() -> None:
    assert {p.name for p in EXAMPLES} >= {
        "ollama.toml",
        "ollama-openai.toml",
        "lab.toml",
    }


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_check_config_accepts_the_example(path: Path, env: dict[str, str]) -> None:
    result = check_config(path, env)
    assert result.returncode == 0, result.stderr
    effective = json.loads(result.stdout)
    written = tomllib.loads(path.read_text(encoding="utf-8"))
    assert [b["name"] for b in effective["backends"]] == [b["name"] for b in written["backends"]]
    # the secrets' values never appear in what check-config prints
    assert "secret-" not in result.stdout and "sk-example" not in result.stdout


def test_a_missing_key_is_reported_by_name(env: dict[str, str]) -> None:
    del env["OPENAI_API_KEY"]
    result = check_config(ROOT / "examples" / "ollama-openai.toml", env)
    assert result.returncode == 1
    assert "backends.1.api_key_env" in result.stderr and "OPENAI_API_KEY" in result.stderr


def test_the_lab_example_uses_every_store(env: dict[str, str]) -> None:
    result = check_config(ROOT / "examples" / "lab.toml", env)
    effective = json.loads(result.stdout)
    assert {b["kind"] for b in effective["backends"]} == {"local", "cloud"}
    assert effective["database"]["url"].startswith("postgresql://")
    assert (
        effective["redis"]["url"] and effective["qdrant"]["url"] and effective["embeddings"]["url"]
    )

"""Secrets never shown: credentials in URLs are masked by parsing the URL (passwords holding
'@' or '/', query-string keys, tokens as user names), in check-config, config errors and
/health; unauthenticated /health names no state-directory path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hydra_coordinator.redaction import redact_text, redact_url

from .servers import CoordinatorServer, FakeUpstream, coordinator_settings, free_port, running

SECRETS = ("Secret99", "TOPSECRETQ", "ghp_TOKENVALUE123", "S3cretPw")
KEY = "health-key-0123456789"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hydra_coordinator", *args],
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "HYDRA_COORDINATOR_CONFIG"},
    )


def secret_urls(local_base_url: str) -> dict[str, object]:
    port = free_port()  # nothing listens: Redis and the embeddings service are down
    return {
        "redis": {"url": f"redis://default:Secret99@x@127.0.0.1:{port}/0"},
        "embeddings": {"url": f"http://127.0.0.1:{port}/v1?api-key=TOPSECRETQ&dim=8"},
        "database": {"url": f"postgresql://hydra:S3cretPw@127.0.0.1:{port}/hydra"},
    }


def test_urls_are_taken_apart_not_pattern_matched() -> None:
    assert redact_url("redis://default:Secret99@x@h:6379/0") == "redis://default:***@h:6379/0"
    assert redact_url("redis://:pa/ss@Secret99@h:6379/0") == "redis://:***@h:6379/0"
    assert redact_url("https://ghp_TOKENVALUE123@github.com/x") == "https://***@github.com/x"
    assert redact_url("https://h/v1?api-key=a&password=b&x=1") == (
        "https://h/v1?api-key=***&password=***&x=1"
    )
    assert redact_url("postgresql://hydra@db/hydra") == "postgresql://hydra@db/hydra"
    assert redact_url("http://h:11434/v1") == "http://h:11434/v1"
    assert redact_text("see redis://u:pw@h:1/0 and https://h/?token=t") == (
        "see redis://u:***@h:1/0 and https://h/?token=***"
    )


def test_check_config_shows_no_secret(tmp_path: Path, local_fake: FakeUpstream) -> None:
    config = tmp_path / "hydra.json"
    data = {
        "backends": [
            {
                "name": "cloud",
                "kind": "cloud",
                "base_url": "https://ghp_TOKENVALUE123@127.0.0.1:9/v1",
            }
        ],
        **secret_urls(local_fake.base_url),
    }
    config.write_text(json.dumps(data))
    result = cli("check-config", "--config", str(config), "--no-secrets")
    assert result.returncode == 0, result.stderr
    for secret in SECRETS:
        assert secret not in result.stdout
    effective = json.loads(result.stdout)
    assert effective["redis"]["url"].startswith("redis://default:***@127.0.0.1:")
    assert "api-key=***" in effective["embeddings"]["url"]


def test_a_password_with_a_slash_is_a_clear_error_that_shows_none_of_it(tmp_path: Path) -> None:
    config = tmp_path / "hydra.json"
    config.write_text(
        json.dumps({"redis": {"url": "redis://default:Wx/Secret99@127.0.0.1:6390/0"}})
    )
    for command in (("check-config", "--config", str(config)), ("serve", "--config", str(config))):
        result = cli(*command)
        assert result.returncode == 1, result
        assert "redis.url" in result.stderr
        assert "percent-encode" in result.stderr
        assert "Traceback" not in result.stderr
        for piece in ("Wx", "Secret99"):
            assert piece not in result.stderr + result.stdout


def test_a_config_error_masks_the_url_it_quotes(tmp_path: Path) -> None:
    config = tmp_path / "hydra.json"
    config.write_text(
        json.dumps(
            {"backends": [{"name": "x", "kind": "cloud", "base_url": "ftp://me:Secret99@h/v1"}]}
        )
    )
    result = cli("check-config", "--config", str(config))
    assert result.returncode == 1
    assert "base_url" in result.stderr
    assert "Secret99" not in result.stderr
    assert "ftp://me:***@h/v1" in result.stderr


@pytest.fixture(scope="module")
def with_secrets(
    local_fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CoordinatorServer]:
    keys = tmp_path_factory.mktemp("keys") / "client-key"
    keys.write_text(KEY + "\n")
    urls = secret_urls(local_fake.base_url)
    urls.pop("database")  # telemetry in the state directory's SQLite file
    settings = coordinator_settings(
        [{"name": "ollama", "kind": "local", "base_url": local_fake.base_url}],
        auth={"api_key_files": [str(keys)]},
        **urls,
    )
    with running(settings) as server:
        yield server


def test_public_health_shows_no_secret_and_no_path(with_secrets: CoordinatorServer) -> None:
    state_dir = str(with_secrets.settings.state_dir)
    public = httpx.get(f"{with_secrets.url}/health")
    assert public.status_code in (200, 503)
    for secret in SECRETS:
        assert secret not in public.text
    assert state_dir not in public.text
    assert "/" + Path(state_dir).name not in public.text
    details = public.json()["dependency_details"]
    assert details["redis"].startswith("redis://127.0.0.1:")
    # with a key: the full details (the paths), still without secrets
    private = httpx.get(f"{with_secrets.url}/health", headers={"authorization": f"Bearer {KEY}"})
    assert state_dir in private.text
    for secret in SECRETS:
        assert secret not in private.text

"""Upstream API keys from a file or from an environment variable reach the upstream."""

from __future__ import annotations

from pathlib import Path

import pytest

from hydra_coordinator.config import ConfigError, check_secrets, load_settings, settings_from_dict

from .servers import FakeUpstream, coordinator_settings, running


def cloud_backend(fake: FakeUpstream, **key: str) -> dict[str, object]:
    return {
        "name": "openai",
        "kind": "cloud",
        "base_url": fake.base_url,
        "models": ["gpt-4o"],
        **key,
    }


def test_a_key_from_the_environment_reaches_the_upstream(
    cloud_fake: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HYDRA_TEST_OPENAI_KEY", "sk-from-the-environment\n")
    settings = coordinator_settings(
        [cloud_backend(cloud_fake, api_key_env="HYDRA_TEST_OPENAI_KEY")]
    )
    with running(settings) as server:
        client = server.client()
        answer = client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hello"}]
        )
    assert answer.choices[0].message.content == "cloud: hello"
    chats = [r for r in cloud_fake.requests() if r["path"] == "/v1/chat/completions"]
    assert [r["authorization"] for r in chats] == ["Bearer sk-from-the-environment"]


def test_a_key_from_a_file_reaches_the_upstream(cloud_fake: FakeUpstream, tmp_path: Path) -> None:
    key_file = tmp_path / "openai-key"
    key_file.write_text("sk-from-a-file\n")
    settings = coordinator_settings([cloud_backend(cloud_fake, api_key_file=str(key_file))])
    with running(settings) as server:
        client = server.client()
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    chats = [r for r in cloud_fake.requests() if r["path"] == "/v1/chat/completions"]
    assert [r["authorization"] for r in chats] == ["Bearer sk-from-a-file"]


def test_an_unset_variable_is_an_error_naming_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HYDRA_TEST_UNSET_KEY", raising=False)
    path = tmp_path / "hydra.toml"
    path.write_text(
        '[[backends]]\nname = "openai"\nkind = "cloud"\nbase_url = "https://api.openai.com/v1"\n'
        'api_key_env = "HYDRA_TEST_UNSET_KEY"\n'
    )
    with pytest.raises(ConfigError, match=r"backends\.0\.api_key_env: .*HYDRA_TEST_UNSET_KEY"):
        load_settings(path)
    # the build-time check reads no secrets, so it does not need the variable either
    assert load_settings(path, secrets=False).backends[0].api_key_env == "HYDRA_TEST_UNSET_KEY"
    monkeypatch.setenv("HYDRA_TEST_UNSET_KEY", "  ")
    with pytest.raises(ConfigError, match="not set or empty"):
        check_secrets(load_settings(path, secrets=False))


@pytest.mark.parametrize(
    ("backend", "message"),
    [
        ({"api_key_file": "k", "api_key_env": "K"}, "set one of them, not both"),
        ({"api_key_env": "NOT-A-NAME"}, "api_key_env"),
    ],
)
def test_bad_key_sources_are_rejected(backend: dict[str, str], message: str) -> None:
    data = {"backends": [{"name": "o", "kind": "cloud", "base_url": "https://x/v1", **backend}]}
    with pytest.raises(ConfigError, match=message):
        settings_from_dict(data)

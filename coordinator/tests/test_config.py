from __future__ import annotations

import json

import pytest

from hydra_coordinator.config import ConfigError, load_settings, redacted, settings_from_dict


def write(tmp_path, data, name="config.json"):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_embedded_defaults_need_no_file(monkeypatch):
    monkeypatch.delenv("HYDRA_COORDINATOR_CONFIG", raising=False)
    settings = load_settings()
    assert (settings.listen.host, settings.listen.port) == ("127.0.0.1", 8092)
    assert [(b.name, b.kind, b.base_url) for b in settings.backends] == [
        ("ollama", "local", "http://127.0.0.1:11434/v1")
    ]
    assert settings.routing.threshold == 0.7


def test_env_names_the_file(tmp_path, monkeypatch):
    path = write(tmp_path, {"listen": {"port": 9999}})
    monkeypatch.setenv("HYDRA_COORDINATOR_CONFIG", str(path))
    assert load_settings().listen.port == 9999


def test_toml_is_accepted(tmp_path):
    path = write(
        tmp_path,
        '[listen]\nport = 9100\n[[backends]]\nname = "tabby"\nkind = "local"\n'
        'base_url = "http://10.0.0.2:5000/v1"\n',
        "config.toml",
    )
    settings = load_settings(path)
    assert settings.listen.port == 9100 and settings.backends[0].name == "tabby"


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"listen": {"prot": 1}}, "listen.prot: unknown key"),
        ({"bogus": 1}, "bogus: unknown key"),
        ({"listen": {"port": "eighty"}}, "listen.port"),
        ({"backends": [{"name": "x", "kind": "edge", "base_url": "http://a"}]}, "backends.0.kind"),
        (
            {"backends": [{"name": "x", "kind": "local"}]},
            "backends.0.base_url: required key is missing",
        ),
        (
            {"backends": [{"name": "x", "kind": "local", "base_url": "ftp://a"}]},
            "backends.0.base_url",
        ),
        ({"routing": {"threshold": 1.5}}, "routing.threshold"),
        ({"backends": []}, "backends"),
    ],
)
def test_bad_config_names_the_key(tmp_path, data, needle):
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, data))
    assert needle in str(caught.value)


def test_duplicate_backend_names():
    backend = {"name": "x", "kind": "local", "base_url": "http://a"}
    with pytest.raises(ConfigError, match="duplicate name"):
        settings_from_dict({"backends": [backend, backend]})


def test_no_auth_only_on_loopback():
    with pytest.raises(ConfigError, match=r"auth\.api_key_files"):
        settings_from_dict({"listen": {"host": "0.0.0.0"}})
    for host in ("127.0.0.1", "::1", "localhost", "127.1.2.3"):
        settings_from_dict({"listen": {"host": host}})


def test_unreadable_secret_is_an_error_naming_the_key(tmp_path):
    path = write(tmp_path, {"auth": {"api_key_files": [str(tmp_path / "missing")]}})
    with pytest.raises(ConfigError, match=r"auth.api_key_files.0: cannot read secret file"):
        load_settings(path)
    load_settings(path, secrets=False)  # build-time checks skip reading secrets


def test_relative_secrets_resolve_in_credentials_directory(tmp_path, monkeypatch):
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "openai-key").write_text("sk-abc\n")
    path = write(
        tmp_path,
        {
            "backends": [
                {
                    "name": "o",
                    "kind": "cloud",
                    "base_url": "https://x/v1",
                    "api_key_file": "openai-key",
                }
            ]
        },
    )
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    assert load_settings(path).backends[0].api_key_file == "openai-key"
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    with pytest.raises(ConfigError, match=r"backends\.0\.api_key_file"):
        load_settings(path)


def test_invalid_json_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_settings(write(tmp_path, "{nope"))
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(tmp_path / "absent.json")


def test_redaction_masks_url_passwords():
    settings = settings_from_dict(
        {
            "backends": [
                {"name": "o", "kind": "cloud", "base_url": "https://user:hunter2@example.com/v1"}
            ]
        }
    )
    dumped = json.dumps(redacted(settings))
    assert "hunter2" not in dumped and "user:***@example.com" in dumped


# --- through the command line: what a user sees --------------------------------------------------


def check_config(path, *args: str, cwd=None, env=None):
    import os
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "hydra_coordinator", "check-config", str(path), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=cwd,
        env={
            k: v
            for k, v in {**os.environ, **(env or {})}.items()
            if k != "CREDENTIALS_DIRECTORY" or env
        },
    )


def test_errors_show_the_bad_value_once_and_never_the_whole_file(tmp_path):
    long_url = "ftp://" + "x" * 500
    path = write(
        tmp_path,
        {
            "listen": {"host": "0.0.0.0"},
            "backends": [{"name": "a", "kind": "local", "base_url": long_url, "models": ["m"]}],
            "routing": {"threshold": 7},
        },
    )
    result = check_config(path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    base_url = next(line for line in lines if "backends.0.base_url" in line)
    assert base_url.count("got") == 1 and base_url.endswith("...)")
    assert len(base_url) < 200
    assert "routing.threshold: Input should be less than or equal to 1 (got 7)" in result.stderr
    # a check of the whole file names its keys, and does not print the file back
    data = {"listen": {"host": "0.0.0.0"}, "backends": [{"name": "a", "kind": "local",
            "base_url": "http://a/v1", "models": ["m"]}]}  # fmt: skip
    result = check_config(write(tmp_path, data))
    assert result.returncode == 1
    assert "auth.api_key_files: listen.host is '0.0.0.0'" in result.stderr
    assert "'backends': [" not in result.stderr and "(top level)" not in result.stderr


def test_yaml_gets_a_hint(tmp_path):
    path = write(tmp_path, "listen:\n  port: 9000\n", "hydra.yaml")
    result = check_config(path)
    assert result.returncode == 1
    assert "use .json or .toml" in result.stderr and "not valid JSON" not in result.stderr


def test_a_key_file_holds_one_key_per_line(tmp_path):
    keys = tmp_path / "client-keys"
    keys.write_text("# alice\nsk-alice\n\n# bob\n  sk-bob\n")
    path = write(tmp_path, {"auth": {"api_key_files": [str(keys)]}})
    assert check_config(path).returncode == 0
    keys.write_text("sk-alice sk-bob\n")
    result = check_config(path)
    assert result.returncode == 1
    assert f"auth.api_key_files.0: line 1 of key file {keys} holds whitespace" in result.stderr
    keys.write_text("# nobody yet\n\n")
    result = check_config(path)
    assert result.returncode == 1
    assert f"key file {keys} holds no key" in result.stderr


def test_relative_secret_paths_resolve_against_the_config_file(tmp_path):
    config_dir = tmp_path / "etc"
    config_dir.mkdir()
    (config_dir / "keys").write_text("sk-alice\n")
    (config_dir / "openai-key").write_text("sk-upstream\n")
    data = {
        "auth": {"api_key_files": ["keys"]},
        "backends": [
            {
                "name": "o",
                "kind": "cloud",
                "base_url": "https://x/v1",
                "api_key_file": "openai-key",
                "models": ["m"],
            }
        ],
    }
    path = write(config_dir, data)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = check_config(path.relative_to(tmp_path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    effective = json.loads(result.stdout)
    assert effective["auth"]["api_key_files"] == [str(config_dir / "keys")]
    assert effective["backends"][0]["api_key_file"] == str(config_dir / "openai-key")
    result = check_config(path, cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    # an error names the absolute path it tried
    (config_dir / "openai-key").unlink()
    result = check_config(path.relative_to(tmp_path), cwd=tmp_path)
    assert result.returncode == 1
    assert f"cannot read secret file {config_dir / 'openai-key'}:" in result.stderr
    # under systemd, a relative path names a credential
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "keys").write_text("sk-alice\n")
    (creds / "openai-key").write_text("sk-upstream\n")
    result = check_config(path, cwd=elsewhere, env={"CREDENTIALS_DIRECTORY": str(creds)})
    assert result.returncode == 0, result.stderr

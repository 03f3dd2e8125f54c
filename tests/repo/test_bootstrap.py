"""coordinator/bootstrap: coordinator/run and tests/run share one .venv; neither reinstalls the
other's extras, and an install says what it does. pip is a stub here that records its calls."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BOOTSTRAP = ROOT / "coordinator" / "bootstrap"


@pytest.fixture
def venv(tmp_path: Path) -> Path:
    """A venv whose pip only appends its arguments to pip.log."""
    bin_dir = tmp_path / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python").symlink_to("/bin/true")
    pip = bin_dir / "pip"
    pip.write_text(f'#!/bin/sh\necho "$*" >> "{tmp_path}/pip.log"\n')
    pip.chmod(0o755)
    return tmp_path / "venv"


def bootstrap(venv: Path, extras: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HYDRA_VENV": str(venv)}
    return subprocess.run(
        [str(BOOTSTRAP), extras], check=True, capture_output=True, text=True, env=env
    )


def installs(venv: Path) -> list[str]:
    log = venv.parent / "pip.log"
    lines = log.read_text().splitlines() if log.exists() else []
    return [line.rsplit("[", 1)[1].rstrip("]") for line in lines]


def test_switching_between_the_two_commands_installs_nothing_again(venv: Path) -> None:
    first = bootstrap(venv, "speed,tokenizer")  # coordinator/run
    assert first.stdout.strip() == str(venv)
    assert "installing dependencies [speed,tokenizer]" in first.stderr
    bootstrap(venv, "test,speed,tokenizer")  # tests/run adds its extra, keeps the others
    for extras in ("speed,tokenizer", "test,speed,tokenizer", "speed", "tokenizer,test"):
        quiet = bootstrap(venv, extras)
        assert quiet.stderr == "", extras
    assert installs(venv) == ["speed,tokenizer", "speed,test,tokenizer"]


def test_a_changed_pyproject_reinstalls_what_is_asked(venv: Path) -> None:
    bootstrap(venv, "speed,test")
    stamp = venv / ".hydra-stamp"
    stamp.write_text("0" * 64 + " speed,test\n")  # as if pyproject.toml had changed since
    bootstrap(venv, "speed")
    assert installs(venv) == ["speed,test", "speed"]

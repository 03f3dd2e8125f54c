"""Where the coordinator keeps its state on disk."""

from __future__ import annotations

import os
from pathlib import Path

from .config import Settings

__all__ = ["state_directory"]


def state_directory(settings: Settings) -> Path:
    """``$STATE_DIRECTORY`` (systemd ``StateDirectory=``; the first of several), else the
    ``state_dir`` key, else ``~/.local/state/hydra-coordinator``."""
    from_env = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    if from_env:
        return Path(from_env)
    if settings.state_dir:
        return Path(settings.state_dir).expanduser()
    return Path.home() / ".local" / "state" / "hydra-coordinator"

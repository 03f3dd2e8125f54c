"""Logging: one structured JSON line per request (no prompt text), plain lines otherwise."""

from __future__ import annotations

import logging
import sys
from typing import Any

import orjson

__all__ = ["access_log", "setup_logging"]

_access = logging.getLogger("hydra_coordinator.access")


def setup_logging(level: str, access: bool = True) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("hydra_coordinator")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    lines = logging.StreamHandler(sys.stderr)
    lines.setFormatter(logging.Formatter("%(message)s"))
    _access.handlers[:] = [lines]
    _access.propagate = False
    _access.setLevel(logging.INFO if access else logging.WARNING)


def access_log(**fields: Any) -> None:
    if _access.isEnabledFor(logging.INFO):
        _access.info(orjson.dumps({"event": "request", **fields}).decode())

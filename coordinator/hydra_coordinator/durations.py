"""Durations like ``30m``, ``24h`` or ``7d``, as the MCP tools and the CLI take them."""

from __future__ import annotations

import re

__all__ = ["MAX_SINCE_S", "parse_since"]

_SINCE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
MAX_SINCE_S = 366 * 86400


def parse_since(text: str) -> float:
    """``"30m"``, ``"24h"``, ``"7d"`` (also ``s`` and ``w``) to seconds; ValueError when invalid."""
    match = _SINCE.match(text)
    if match is None:
        raise ValueError(
            f"since must be a number and a unit (s, m, h, d or w), like '30m', '24h' or '7d';"
            f" got {text!r}"
        )
    seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2).lower()]
    if not 0 < seconds <= MAX_SINCE_S:
        raise ValueError(f"since must be more than 0 and at most 366d; got {text!r}")
    return seconds

"""Durations like ``30m``, ``24h`` or ``7d``, as the MCP tools and the CLI take them."""

from __future__ import annotations

import re

__all__ = ["MAX_SINCE_S", "parse_since", "unit_seconds"]

_SINCE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
MAX_SINCE_S = 366 * 86400


def unit_seconds(text: str) -> float | None:
    """``"30m"``, ``"24h"``, ``"7d"`` (also ``s`` and ``w``) to seconds; None when not that form."""
    match = _SINCE.match(text)
    if match is None:
        return None
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2).lower()]


def parse_since(text: str) -> float:
    """A window for the MCP tools: :func:`unit_seconds`, at most 366 days; ValueError when
    invalid."""
    seconds = unit_seconds(text)
    if seconds is None:
        raise ValueError(
            f"since must be a number and a unit (s, m, h, d or w), like '30m', '24h' or '7d';"
            f" got {text!r}"
        )
    if not 0 < seconds <= MAX_SINCE_S:
        raise ValueError(f"since must be more than 0 and at most 366d; got {text!r}")
    return seconds

"""The most recent routing decisions, kept in memory for inspection (the MCP resource
``hydra://decisions/recent``). Never any prompt text: ids, route, backend, confidence, reasons.
Each remembers the key id that made it, so a key is shown its own decisions only."""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from .router import Decision

__all__ = ["RecentDecisions"]


class RecentDecisions:
    """A bounded, newest-last log of routing decisions (cheap: one deque append per decision)."""

    def __init__(self, maxlen: int = 100) -> None:
        self._items: deque[tuple[str | None, dict[str, Any]]] = deque(maxlen=maxlen)

    def add(
        self,
        decision: Decision,
        *,
        kind: str,
        model: str,
        request_id: str | None = None,
        key_id: str | None = None,
    ) -> None:
        """Remember ``decision``; ``kind`` is ``chat`` (a real request) or ``route`` (a preview)."""
        item = {
            "time": time.time(),
            "kind": kind,
            "request_id": request_id,
            "model": model,
            **decision.as_dict(),
        }
        self._items.append((key_id, item))

    def latest(
        self, limit: int | None = None, *, key_id: str | None = None, everyone: bool = True
    ) -> list[dict[str, Any]]:
        """The most recent decisions, newest first: every key's, or only ``key_id``'s."""
        items = [dict(item) for key, item in reversed(self._items) if everyone or key == key_id]
        return items if limit is None else items[: max(limit, 0)]

    def __len__(self) -> int:
        return len(self._items)

"""Similar past questions from the knowledge base, on the request path: their ratings guide the
learned router (``neighbours``), and the optional semantic cache answers a near-duplicate with a
highly rated answer (``stores/hooks.py``).

Both are off by default: they cost one embedding and one search per request. The search is
bounded by ``routing.knowledge_timeout_s`` and only ever sees the caller's own API key's entries.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from ..config import Settings
from ..stores.knowledge import KnowledgeBase
from .features import last_user_text

__all__ = ["describe_votes", "neighbour_votes", "neighbours", "similar_questions", "single_turn"]


def single_turn(body: dict[str, Any]) -> bool:
    messages = body.get("messages") or []
    return sum(1 for m in messages if isinstance(m, dict) and m.get("role") != "system") == 1


async def similar_questions(
    settings: Settings,
    knowledge: KnowledgeBase | None,
    body: dict[str, Any],
    key_id: str | None,
    *,
    stream: bool,
) -> list[dict[str, Any]]:
    """The caller's past questions most like the last user message (at most 5, within
    ``routing.knowledge_timeout_s``); none when neither consumer wants them."""
    wanted = settings.routing.knowledge_neighbours or (
        settings.cache.semantic.enabled and not stream and single_turn(body)
    )
    if not wanted or knowledge is None or not knowledge.enabled:
        return []
    text = last_user_text(body.get("messages") or [])
    if not text:
        return []
    try:
        found: list[dict[str, Any]] = await asyncio.wait_for(
            knowledge.search(text, 5, key_id), settings.routing.knowledge_timeout_s
        )
    except TimeoutError:
        return []
    return found


def neighbours(similar: list[dict[str, Any]]) -> list[tuple[str, float, float]]:
    """(backend, rating, similarity) of the similar questions that were rated."""
    return [
        (str(s["backend"]), float(s["rating"]), max(0.0, min(1.0, float(s["score"]))))
        for s in similar
        if s.get("rating") is not None and s.get("backend")
    ]


def neighbour_votes(
    found: Sequence[tuple[str, float, float]], names: set[str], weight: float
) -> dict[str, tuple[float, float]]:
    """Pseudo-votes (good, bad) per backend in ``names`` from similar past questions
    (backend, rating in [-1, 1], similarity): a rated question of similarity 1 adds ``weight``."""
    votes: dict[str, tuple[float, float]] = {}
    for backend, rating, similarity in found:
        if backend not in names:
            continue
        strength = weight * min(1.0, max(0.0, similarity))
        reward = min(1.0, max(0.0, (rating + 1.0) / 2.0))
        good, bad = votes.get(backend, (0.0, 0.0))
        votes[backend] = (good + strength * reward, bad + strength * (1.0 - reward))
    return votes


def describe_votes(votes: Mapping[str, tuple[float, float]]) -> str:
    parts = [f"'{name}' +{good:.1f}/-{bad:.1f}" for name, (good, bad) in sorted(votes.items())]
    return "similar past queries: " + ", ".join(parts)

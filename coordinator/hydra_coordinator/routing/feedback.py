"""Ratings of earlier requests: ``POST /v1/feedback`` and the MCP tool ``record_feedback``.

:class:`Feedback` stores a rating with the request's telemetry, teaches the per-prompt learner
(:mod:`.bandit`) and rates the answer in the knowledge base.
"""

from __future__ import annotations

import contextlib
from typing import Any

from ..errors import NotFound
from ..stores.knowledge import KnowledgeBase
from ..telemetry.record import RequestInfo
from ..telemetry.store import TelemetryStore
from .bandit import PromptLearner
from .learning import RecentRequests, outcome_kind

__all__ = ["Feedback", "parse_rating", "rating_reward"]

_THUMBS = {"up": 1.0, "thumbs_up": 1.0, "+1": 1.0, "down": -1.0, "thumbs_down": -1.0, "-1": -1.0}


def parse_rating(value: float | str) -> float:
    """A rating in [-1, 1], or thumbs (``up``/``down``); ValueError otherwise."""
    if isinstance(value, str):
        try:
            return _THUMBS[value.strip().lower()]
        except KeyError:
            raise ValueError(
                f"rating must be a number in [-1, 1] or up/down, got {value!r}"
            ) from None
    rating = float(value)
    if not -1.0 <= rating <= 1.0:
        raise ValueError(f"rating must be between -1 and 1, got {rating}")
    return rating


def rating_reward(rating: float) -> float:
    """A rating in [-1, 1] (thumbs down .. up) as a reward in [0, 1]."""
    return min(1.0, max(0.0, (rating + 1.0) / 2.0))


class Feedback:
    def __init__(
        self,
        recent: RecentRequests,
        telemetry: TelemetryStore,
        knowledge: KnowledgeBase,
        prompts: PromptLearner | None = None,
    ) -> None:
        self.prompts = prompts
        self.recent = recent
        self.telemetry = telemetry
        self.knowledge = knowledge

    async def _find(self, request_id: str) -> RequestInfo | None:
        found = self.recent.get(request_id)
        if found is not None:
            return found
        return await self.telemetry.lookup(request_id)

    async def record(
        self, request_id: str, rating: float | str, comment: str | None, key_id: str | None
    ) -> dict[str, Any]:
        """Rate an earlier request. Only the API key that made a request may rate it; rating
        it again replaces its rating everywhere (table, learners, knowledge base)."""
        value = parse_rating(rating)
        info = await self._find(request_id)
        if info is None or info.key_id != key_id:
            raise NotFound(f"no request {request_id!r} to rate", code="request_not_found")
        previous = await self.telemetry.record_feedback(request_id, value, comment, key_id)
        learnt = "not learnt"
        if self.prompts is not None:  # a re-rating replaces; the learner bounds each key
            learnt = self.prompts.rate(
                request_id, rating_reward(value), key_id=key_id, kind=outcome_kind(info.route)
            )
        with contextlib.suppress(Exception):  # the rating is recorded; the KB is a bonus
            await self.knowledge.rate(request_id, value)
        return {
            "request_id": request_id,
            "rating": value,
            "backend": info.backend,
            "route": info.route,
            "task_class": info.task_class,
            "recorded": True,
            "replaced": previous is not None,
            "learned": learnt,
        }

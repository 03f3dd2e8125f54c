"""How the router learns: outcomes of every request, ratings from feedback, state kept on disk.

- :class:`Outcomes` is a telemetry sink: the outcome of every request (ok, error, timeout,
  truncated) teaches the learned router's reliability posterior at once; it also remembers
  recent requests so feedback can find them. Cache hits and refused (4xx) requests say
  nothing about a backend and are not taught.
- :class:`Feedback` takes a rating for an earlier request (``POST /v1/feedback`` and the MCP
  tool ``record_feedback`` share it), stores it with the request's telemetry, teaches the
  router's satisfaction posterior and rates the answer in the knowledge base.
- :class:`RouterState` loads the learned state at start and saves it periodically and at stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any, Literal

import orjson

from .errors import NotFound
from .routing.learned import LearnedRouter, rating_reward
from .telemetry.record import RequestInfo, RequestRecord

__all__ = ["Feedback", "Outcomes", "RequestInfo", "RouterState", "parse_rating"]

log = logging.getLogger("hydra_coordinator.learning")

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


def _outcome(record: RequestRecord) -> Literal["ok", "error", "timeout", "truncated"] | None:
    """How the backend did on a request; None when the request says nothing about it."""
    if record.error and "timeout" in record.error:
        return "timeout"
    if record.status >= 500 or (record.error or "").startswith("stream_"):
        return "error"
    if record.status >= 400:
        return None  # the client's request was refused: says nothing about the backend
    if record.finish_reason == "length":
        return "truncated"
    return "ok"


class Outcomes:
    """A telemetry sink that teaches the router from outcomes and remembers recent requests."""

    def __init__(self, router: LearnedRouter, remember: int = 20_000) -> None:
        self.router = router
        self._recent: OrderedDict[str, RequestInfo] = OrderedDict()
        self._remember = remember
        self.changed = False

    def emit(self, record: RequestRecord) -> None:
        if record.cache_hit:
            return
        info = RequestInfo(record.backend, record.route, record.task_class, record.key_id)
        self._recent[record.request_id] = info
        if len(self._recent) > self._remember:
            self._recent.popitem(last=False)
        outcome = _outcome(record)
        if outcome is not None and record.task_class and record.backend:
            self.router.record_outcome(
                record.task_class, record.backend, outcome, kind=_kind(record.route)
            )
            self.changed = True

    def get(self, request_id: str) -> RequestInfo | None:
        return self._recent.get(request_id)


def _kind(route: str) -> Literal["local", "cloud"]:
    return "cloud" if route == "cloud" else "local"


class Feedback:
    def __init__(self, runtime: Any, outcomes: Outcomes) -> None:
        self.runtime = runtime
        self.outcomes = outcomes

    async def _find(self, request_id: str) -> RequestInfo | None:
        found = self.outcomes.get(request_id)
        if found is not None or self.runtime.telemetry is None:
            return found
        info: RequestInfo | None = await self.runtime.telemetry.lookup(request_id)
        return info

    async def record(
        self, request_id: str, rating: float | str, comment: str | None, key_id: str | None
    ) -> dict[str, Any]:
        """Rate an earlier request. Only the API key that made a request may rate it."""
        value = parse_rating(rating)
        info = await self._find(request_id)
        if info is None or info.key_id != key_id:
            raise NotFound(f"no request {request_id!r} to rate", code="request_not_found")
        telemetry = self.runtime.telemetry
        if telemetry is not None:
            await telemetry.record_feedback(request_id, value, comment, key_id)
        if info.task_class:
            self.outcomes.router.update(
                info.task_class, info.backend, rating_reward(value), kind=_kind(info.route)
            )
            self.outcomes.changed = True
        knowledge = getattr(self.runtime, "knowledge", None)
        if knowledge is not None:
            with contextlib.suppress(Exception):  # the rating is recorded; the KB is a bonus
                await knowledge.rate(request_id, value)
        return {
            "request_id": request_id,
            "rating": value,
            "backend": info.backend,
            "route": info.route,
            "task_class": info.task_class,
            "recorded": True,
        }


class RouterState:
    """The learned router's state in ``<state dir>/router-state.json``."""

    def __init__(self, path: Path, outcomes: Outcomes, interval_s: float = 30.0) -> None:
        self.path = path
        self.outcomes = outcomes
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    def load(self) -> LearnedRouter | None:
        try:
            data = orjson.loads(self.path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, orjson.JSONDecodeError) as exc:
            log.error(
                "cannot read the learned router state %s (%s); starting fresh", self.path, exc
            )
            return None
        try:
            return LearnedRouter.from_json(data)
        except (KeyError, TypeError, ValueError) as exc:
            log.error(
                "the learned router state %s is not usable (%s); starting fresh", self.path, exc
            )
            return None

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps(self.outcomes.router.to_json()))
        os.replace(tmp, self.path)
        self.outcomes.changed = False

    async def _save_forever(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            if self.outcomes.changed:
                try:
                    await asyncio.to_thread(self.save)
                except OSError as exc:
                    log.error("cannot save the learned router state to %s: %s", self.path, exc)

    def start(self) -> None:
        self._task = asyncio.create_task(self._save_forever(), name="hydra-router-state")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        try:
            self.save()
        except OSError as exc:
            log.error("cannot save the learned router state to %s: %s", self.path, exc)


def setup(runtime: Any) -> None:
    """The learned router (restored from the state directory), its outcome sink and feedback."""
    from .paths import state_directory

    knobs = {
        **runtime.settings.routing.learned.model_dump(),
        "threshold": runtime.settings.routing.threshold,
    }
    outcomes = Outcomes(LearnedRouter(**knobs))
    state = RouterState(state_directory(runtime.settings) / "router-state.json", outcomes)
    restored = state.load()
    if restored is not None:
        for name, value in knobs.items():  # the config's knobs win over saved ones
            setattr(restored, name, value)
        outcomes.router = restored
    runtime.router.learned = outcomes.router
    runtime.recorder.sinks.append(outcomes)
    runtime.feedback = Feedback(runtime, outcomes)
    runtime.router_state = state


async def start(runtime: Any) -> None:
    runtime.router_state.start()


async def stop(runtime: Any) -> None:
    await runtime.router_state.stop()

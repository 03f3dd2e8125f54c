"""How the learned router is fed and kept: outcomes of every request, state kept on disk.

- :class:`Outcomes` is a telemetry sink: the outcome of every request (ok, error, timeout,
  truncated) teaches the learned router's reliability posterior at once; it also remembers
  recent requests so feedback can find them. Cache hits and refused (4xx) requests say
  nothing about a backend and are not taught.
- :class:`RouterState` loads the learned state at start and saves it periodically and at stop.
- :func:`open_learner` makes the learned router a runtime's :class:`~.service.Router` uses.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import OrderedDict
from pathlib import Path
from typing import Literal

import orjson

from ..config import Settings
from ..paths import state_directory
from ..telemetry import Recorder
from ..telemetry.record import RequestInfo, RequestRecord
from .bandit import PromptLearner
from .learned import LearnedRouter
from .service import Router

__all__ = ["Outcomes", "RequestInfo", "RouterState", "open_learner", "outcome_kind"]

log = logging.getLogger("hydra_coordinator.learning")


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
                record.task_class, record.backend, outcome, kind=outcome_kind(record.route)
            )
            self.changed = True

    def get(self, request_id: str) -> RequestInfo | None:
        return self._recent.get(request_id)


def outcome_kind(route: str) -> Literal["local", "cloud"]:
    """The backend kind a request's ``route`` names."""
    return "cloud" if route == "cloud" else "local"


class RouterState:
    """The learned router's state in ``<state dir>/router-state.json``."""

    def __init__(
        self,
        path: Path,
        outcomes: Outcomes,
        prompts: PromptLearner | None = None,
        interval_s: float = 30.0,
    ) -> None:
        self.path = path
        self.outcomes = outcomes
        self.prompts = prompts
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
        if self.prompts is not None and isinstance(data.get("prompts"), dict):
            try:
                self.prompts.load_json(data["prompts"])
            except ValueError as exc:
                log.error(
                    "the per-prompt state in %s is not usable (%s); it starts fresh", self.path, exc
                )
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
        state = self.outcomes.router.to_json()
        if self.prompts is not None:
            state["prompts"] = self.prompts.to_json()
            self.prompts.changed = False
        tmp.write_bytes(orjson.dumps(state))
        os.replace(tmp, self.path)
        self.outcomes.changed = False

    async def _save_forever(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            if self.outcomes.changed or (self.prompts is not None and self.prompts.changed):
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


def open_learner(settings: Settings, router: Router, recorder: Recorder) -> RouterState:
    """The learned router, restored from the state directory, as ``router``'s learner, with its
    outcome sink on ``recorder``; the returned keeper saves it (start and stop it)."""
    learned = settings.routing.learned
    knobs: dict[str, float] = {
        "cost_weight": learned.cost_weight,
        "local_margin": learned.local_margin,
        "threshold": settings.routing.threshold,
    }
    outcomes = Outcomes(
        LearnedRouter(
            cost_weight=learned.cost_weight,
            local_margin=learned.local_margin,
            threshold=settings.routing.threshold,
        )
    )
    state = RouterState(state_directory(settings) / "router-state.json", outcomes, router.prompts)
    restored = state.load()
    if restored is not None:
        for name, value in knobs.items():  # the config's knobs win over saved ones
            setattr(restored, name, value)
        outcomes.router = restored
    router.learned = outcomes.router
    recorder.sinks.append(outcomes)
    return state

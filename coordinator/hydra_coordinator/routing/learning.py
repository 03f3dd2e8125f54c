"""How the learned router is fed and kept: outcomes of every request, state kept on disk.

- :class:`Outcomes` is a telemetry sink: the outcome of every request (ok, error, timeout,
  truncated) teaches the learned router's reliability posterior at once; it also remembers
  recent requests so feedback can find them. Cache hits and refused (4xx) requests say
  nothing about a backend and are not taught.
- :class:`RouterState` loads the learned state at start and saves it periodically and at stop,
  with the month's cloud spend when the router paces to a monthly one.
- :func:`open_learner` makes the learned router a runtime's :class:`~.service.Router` uses.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any, Literal

import orjson

from ..config import Settings
from ..paths import state_directory
from ..telemetry import Recorder
from ..telemetry.record import NO_BACKEND, RequestInfo, RequestRecord
from .bandit import PromptLearner
from .knobs import Pacer
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
    """A telemetry sink that teaches the router from outcomes and remembers recent requests.
    It also learns from failed attempts that failover moved on from (``attempts``)."""

    attempts = True

    def __init__(self, router: LearnedRouter, remember: int = 20_000) -> None:
        self.router = router
        self._recent: OrderedDict[str, RequestInfo] = OrderedDict()
        self._remember = remember
        self.changed = False

    def emit(self, record: RequestRecord) -> None:
        if record.cache_hit or record.backend == NO_BACKEND:
            return  # says nothing about a backend
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


def _read_state(path: Path) -> dict[str, Any] | None:
    try:
        data = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, orjson.JSONDecodeError) as exc:
        log.error("cannot read the learned router state %s (%s); starting fresh", path, exc)
        return None
    if not isinstance(data, dict):
        log.error("the learned router state %s is not a JSON object; starting fresh", path)
        return None
    return data


class RouterState:
    """The learned router's state in ``<state dir>/router-state.json``."""

    def __init__(
        self,
        path: Path,
        outcomes: Outcomes,
        prompts: PromptLearner | None = None,
        interval_s: float = 30.0,
        pacer: Pacer | None = None,
    ) -> None:
        self.path = path
        self.outcomes = outcomes
        self.prompts = prompts
        self.pacer = pacer
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        state = self.outcomes.router.to_json()
        if self.prompts is not None:
            state["prompts"] = self.prompts.to_json()
            self.prompts.changed = False
        if self.pacer is not None:
            state["pacing"] = self.pacer.to_json()
        tmp.write_bytes(orjson.dumps(state))
        os.replace(tmp, self.path)
        self.outcomes.changed = False

    async def _save_forever(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            if (
                self.outcomes.changed
                or (self.prompts is not None and self.prompts.changed)
                or (self.pacer is not None and self.pacer.changed)
            ):
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


def _state_path(settings: Settings) -> Path:
    return state_directory(settings) / "router-state.json"


def load_learner(settings: Settings, router: Router, path: Path | None = None) -> LearnedRouter:
    """``router``'s learned state from ``path`` (default: the state directory's
    ``router-state.json``): its per-prompt learner's is restored in place, the per-class
    learned router is returned, with the configuration's knobs."""
    learned = settings.routing.learned
    knobs: dict[str, float] = {
        "cost_weight": learned.cost_weight,
        "local_margin": learned.local_margin,
        "threshold": settings.routing.threshold,
    }
    where = path or _state_path(settings)
    data = _read_state(where)
    if data is not None and isinstance(data.get("prompts"), dict):
        try:
            router.prompts.load_json(data["prompts"])
        except ValueError as exc:
            log.error("the per-prompt state in %s is not usable (%s); it starts fresh", where, exc)
    if data is not None and router.pacer is not None and isinstance(data.get("pacing"), dict):
        try:
            router.pacer.load_json(data["pacing"])
        except ValueError as exc:
            log.error("the month's spend in %s is not usable (%s); counted from 0", where, exc)
    restored = None
    if data is not None:
        try:
            restored = LearnedRouter.from_json(data)
        except (KeyError, TypeError, ValueError) as exc:
            log.error("the learned router state %s is not usable (%s); starting fresh", where, exc)
    if restored is None:
        return LearnedRouter(
            cost_weight=learned.cost_weight,
            local_margin=learned.local_margin,
            threshold=settings.routing.threshold,
        )
    for name, value in knobs.items():  # the config's knobs win over saved ones
        setattr(restored, name, value)
    return restored


def open_learner(settings: Settings, router: Router, recorder: Recorder) -> RouterState:
    """The learned router, restored from the state directory, as ``router``'s learner, with its
    outcome sink on ``recorder``; the returned keeper saves it (start and stop it)."""
    path = _state_path(settings)
    outcomes = Outcomes(load_learner(settings, router, path))
    state = RouterState(path, outcomes, router.prompts, pacer=router.pacer)
    router.learned = outcomes.router
    recorder.sinks.append(outcomes)
    if router.pacer is not None:
        recorder.sinks.append(router.pacer)  # the real cost of each cloud request
    return state

"""How the learned router is fed and kept: recent requests for ratings, state kept on disk.

- :class:`RecentRequests` is a telemetry sink that remembers recent requests so that a rating
  (:mod:`.feedback`) can find its request. What the router learns from is ratings
  (:class:`~.bandit.PromptLearner`); errors, timeouts and truncated answers are handled by
  health checks, the circuit breaker and failover.
- :class:`RouterState` saves the learned state periodically and at stop; :func:`load_state`
  reads it back (the server at start, ``hydra-coordinator route`` offline), with the month's
  cloud spend when the router paces to a monthly one.
- :func:`open_learner` restores a runtime's :class:`~.service.Router` and plugs in its sinks.
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
from .service import Router

__all__ = [
    "RecentRequests",
    "RequestInfo",
    "RouterState",
    "load_state",
    "open_learner",
    "outcome_kind",
]

log = logging.getLogger("hydra_coordinator.learning")


class RecentRequests:
    """A telemetry sink that remembers recent requests (backend, route, task class, key), so
    that a rating can find its request before telemetry has stored it. Cache hits say nothing
    about a backend and are not kept."""

    def __init__(self, remember: int = 20_000) -> None:
        self._recent: OrderedDict[str, RequestInfo] = OrderedDict()
        self._remember = remember

    def emit(self, record: RequestRecord) -> None:
        if record.cache_hit or record.backend == NO_BACKEND:
            return
        info = RequestInfo(record.backend, record.route, record.task_class, record.key_id)
        self._recent[record.request_id] = info
        if len(self._recent) > self._remember:
            self._recent.popitem(last=False)

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
    """The learned state in ``<state dir>/router-state.json``: the per-prompt learner's weights
    and, when the router paces to a monthly spend, the month's spend."""

    def __init__(
        self,
        path: Path,
        prompts: PromptLearner,
        pacer: Pacer | None = None,
        interval_s: float = 30.0,
    ) -> None:
        self.path = path
        self.prompts = prompts
        self.pacer = pacer
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    @property
    def changed(self) -> bool:
        return self.prompts.changed or (self.pacer is not None and self.pacer.changed)

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        state: dict[str, Any] = {"prompts": self.prompts.to_json()}
        self.prompts.changed = False
        if self.pacer is not None:
            state["pacing"] = self.pacer.to_json()
        tmp.write_bytes(orjson.dumps(state))
        os.replace(tmp, self.path)

    async def _save_forever(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            if self.changed:
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


def load_state(settings: Settings, router: Router, path: Path | None = None) -> None:
    """Restore ``router``'s learned state from ``path`` (default: the state directory's
    ``router-state.json``): the per-prompt learner's weights and the month's cloud spend. A
    state that cannot be used is logged and the router starts fresh."""
    where = path or _state_path(settings)
    data = _read_state(where)
    if data is None:
        return
    if isinstance(data.get("prompts"), dict):
        try:
            router.prompts.load_json(data["prompts"])
        except ValueError as exc:
            log.error("the per-prompt state in %s is not usable (%s); it starts fresh", where, exc)
    if router.pacer is not None and isinstance(data.get("pacing"), dict):
        try:
            router.pacer.load_json(data["pacing"])
        except ValueError as exc:
            log.error("the month's spend in %s is not usable (%s); counted from 0", where, exc)


def open_learner(
    settings: Settings, router: Router, recorder: Recorder
) -> tuple[RouterState, RecentRequests]:
    """``router``'s learned state, restored from the state directory, and the sinks on
    ``recorder`` that feed it: the recent requests a rating looks up and, with pacing, the
    real cost of each cloud request. The returned keeper saves the state (start and stop it)."""
    path = _state_path(settings)
    load_state(settings, router, path)
    recent = RecentRequests()
    recorder.sinks.append(recent)
    if router.pacer is not None:
        recorder.sinks.append(router.pacer)  # the real cost of each cloud request
    return RouterState(path, router.prompts, router.pacer), recent

"""One record per answered request, fanned out to metrics, the access log and sinks.

Every chat request answered, whatever its status, is recorded exactly once: by the proxy when a
backend answered (or the last one failed), else by :meth:`Recorder.record_failure` from the
request's :class:`~..exchange.Exchange` (refused before any backend was tried: 400, 401, 403,
404, 413, 429, 503). A failed attempt that failover moved on from is an *attempt*
(:meth:`Recorder.attempt`): the sinks that learn from backends' outcomes see it, nothing counts
it as a request.

Sinks get the record synchronously and must not block: a sink that writes to a database queues
the record and writes it in the background.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from ..exchange import Exchange
from ..logs import access_log
from ..metrics import Metrics

__all__ = ["NO_BACKEND", "NO_ROUTE", "EventSink", "Recorder", "RequestInfo", "RequestRecord"]

# route and backend of a request that no backend was tried for
NO_ROUTE = NO_BACKEND = "none"

log = logging.getLogger("hydra_coordinator.telemetry")


# Not slots=True: orjson serializes a dataclass with a __dict__ about 3x faster (0.6 vs 2.0 µs),
# and TelemetryStore.emit serializes one per request.
@dataclass
class RequestRecord:
    request_id: str
    key_id: str | None
    route: str
    backend: str
    model: str
    status: int
    stream: bool
    latency_s: float
    ttft_s: float | None = None
    confidence: float | None = None
    reasons: tuple[str, ...] = ()
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost_usd: float | None = None
    error: str | None = None  # error class, never a message with user text
    cache_hit: bool = False
    task_class: str | None = None
    finish_reason: str | None = None  # stop, length (truncated), tool_calls, ...
    usage_estimated: bool = False  # tokens counted by the coordinator, not reported upstream
    timestamp: float = field(default_factory=time.time)
    prompt: str | None = None  # the messages as JSON, only with telemetry.store_prompts
    endpoint: str = "chat"  # chat, completions (legacy) or embeddings

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """What feedback needs to know about an earlier request."""

    backend: str
    route: str
    task_class: str | None
    key_id: str | None


class EventSink(Protocol):
    """Gets every request's record; a sink with a true ``attempts`` attribute also gets
    failed attempts (:meth:`Recorder.attempt`)."""

    def emit(self, record: RequestRecord) -> None: ...


class Recorder:
    def __init__(self, metrics: Metrics, sinks: list[EventSink] | None = None) -> None:
        self.metrics = metrics
        self.sinks: list[EventSink] = list(sinks or [])
        # labels() builds and hashes its key on every call; a dict hit is cheaper. Children are
        # created on first use, exactly as labels() would (a series appears when first touched).
        self._requests: dict[tuple[str, str, int], Any] = {}
        self._latency: dict[tuple[str, str], Any] = {}
        self._ttft: dict[tuple[str, str], Any] = {}

    def record(self, r: RequestRecord) -> None:
        m = self.metrics
        key = (r.route, r.backend)
        requests = self._requests.get((r.route, r.backend, r.status))
        if requests is None:
            requests = m.requests.labels(r.route, r.backend, str(r.status))
            self._requests[(r.route, r.backend, r.status)] = requests
        requests.inc()
        latency = self._latency.get(key)
        if latency is None:
            latency = self._latency[key] = m.latency.labels(r.route, r.backend)
        latency.observe(r.latency_s)
        if r.ttft_s is not None:
            ttft = self._ttft.get(key)
            if ttft is None:
                ttft = self._ttft[key] = m.ttft.labels(r.route, r.backend)
            ttft.observe(r.ttft_s)
        if r.prompt_tokens:
            m.tokens.labels(r.backend, "prompt").inc(r.prompt_tokens)
        if r.completion_tokens:
            m.tokens.labels(r.backend, "completion").inc(r.completion_tokens)
        if r.cost_usd:
            m.cost.labels(r.backend).inc(r.cost_usd)
        access_log(
            request_id=r.request_id,
            route=r.route,
            backend=r.backend,
            model=r.model,
            status=r.status,
            stream=r.stream,
            latency_ms=round(r.latency_s * 1000, 2),
            error=r.error,
            endpoint=r.endpoint,
        )
        for sink in self.sinks:
            try:
                sink.emit(r)
            except Exception:  # a broken sink must not fail the request
                log.exception("telemetry sink %s failed", type(sink).__name__)

    def attempt(self, r: RequestRecord) -> None:
        """A failed attempt that failover moved on from: only for the sinks that learn from
        each backend's outcomes (``attempts = True``); not a request, not counted or logged."""
        for sink in self.sinks:
            if getattr(sink, "attempts", False):
                try:
                    sink.emit(r)
                except Exception:
                    log.exception("telemetry sink %s failed", type(sink).__name__)

    def record_failure(self, exchange: Exchange) -> None:
        """Record a request the coordinator refused or could not answer, once, from what its
        exchange knows (the decision when routing got that far, the backend tried last)."""
        if exchange.recorded:
            return
        exchange.recorded = True
        decision = exchange.decision
        self.record(
            RequestRecord(
                request_id=exchange.request_id,
                key_id=exchange.key_id,
                route=decision.route if decision is not None else NO_ROUTE,
                backend=exchange.backend or NO_BACKEND,
                model=exchange.model,
                status=exchange.status or 500,
                stream=exchange.stream,
                latency_s=time.perf_counter() - exchange.started,
                confidence=decision.confidence if decision is not None else None,
                reasons=decision.reasons if decision is not None else (),
                error=exchange.error or "internal_error",
                task_class=decision.task_class if decision is not None else None,
                endpoint=exchange.endpoint,
            )
        )

"""Prometheus metrics, one registry per app (no process-global state).

Per-backend gauges (in flight, queue depth, up) are read from the live backends at scrape time,
so the request path never updates them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from . import __version__
from .backends.backend import Backend

__all__ = ["CONTENT_TYPE", "Metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class _BackendCollector(Collector):
    def __init__(self, backends: Iterable[Backend]) -> None:
        self._backends = list(backends)

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "hydra_backend_up", "1 when the backend can take requests", labels=["backend"]
        )
        in_flight = GaugeMetricFamily(
            "hydra_backend_in_flight", "Requests being served", labels=["backend"]
        )
        queue = GaugeMetricFamily(
            "hydra_backend_queue_depth", "Requests waiting for a slot", labels=["backend"]
        )
        for backend in self._backends:
            up.add_metric([backend.name], 0.0 if backend.status == "down" else 1.0)
            in_flight.add_metric([backend.name], backend.in_flight)
            queue.add_metric([backend.name], backend.waiting)
        yield from (up, in_flight, queue)


class _DependencyCollector(Collector):
    """``hydra_dependency_up``: read from ``runtime.dependencies`` at scrape time."""

    def __init__(self, dependencies: Mapping[str, Callable[[], str]]) -> None:
        self._dependencies = dependencies

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "hydra_dependency_up",
            "1 when the dependency works (healthy or degraded), 0 when down",
            labels=["dependency"],
        )
        for name, check in list(self._dependencies.items()):
            up.add_metric([name], 0.0 if check() == "down" else 1.0)
        yield up


class _TelemetryEventsCollector(Collector):
    """``hydra_telemetry_events_total``: plain counts that the telemetry store keeps, read at
    scrape time. A ``Counter`` takes a lock on every increment, and ``spooled`` counts every
    request."""

    def __init__(self, counts: Callable[[], Mapping[str, int]]) -> None:
        self._counts = counts

    def collect(self) -> Iterator[Metric]:
        events = CounterMetricFamily(
            "hydra_telemetry_events",
            "Telemetry events by outcome: spooled (on disk), written or replayed (in the "
            "database), dropped (spool full)",
            labels=["outcome"],
        )
        for outcome, count in self._counts().items():
            events.add_metric([outcome], count)
        yield events


class Metrics:
    def __init__(self, backends: Iterable[Backend]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        # process_* (resident memory, CPU seconds, open files, start time) from /proc
        ProcessCollector(registry=r)
        self.requests = Counter(
            "hydra_requests", "Chat requests answered", ["route", "backend", "status"], registry=r
        )
        self.latency = Histogram(
            "hydra_request_duration_seconds",
            "Time to the last byte",
            ["route", "backend"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "hydra_time_to_first_token_seconds",
            "Time to the first upstream byte",
            ["route", "backend"],
            buckets=_TTFT_BUCKETS,
            registry=r,
        )
        self.upstream_errors = Counter(
            "hydra_upstream_errors", "Failed upstream calls", ["backend", "kind"], registry=r
        )
        self.tokens = Counter(
            "hydra_tokens", "Tokens reported by upstreams", ["backend", "direction"], registry=r
        )
        self.cost = Counter(
            "hydra_cost_usd", "Estimated cost in US dollars", ["backend"], registry=r
        )
        self.decisions = Counter(
            "hydra_route_decisions", "Routing decisions", ["route"], registry=r
        )
        self.connections_refused = Counter(
            "hydra_connections_refused",
            "Client connections closed before reaching the API: too many connections, a request "
            "head too large or too slow",
            ["reason"],
            registry=r,
        )
        for reason in ("too_many_connections", "header_too_large", "header_timeout"):
            self.connections_refused.labels(reason)
        # telemetry (see telemetry/store.py)
        # counted by the telemetry store on the event loop's thread; "spooled" is the spool's own
        # line count (telemetry_spooled), so the request path counts nothing
        self.telemetry_events = dict.fromkeys(("written", "replayed", "dropped"), 0)
        self.telemetry_spooled: Callable[[], int] = lambda: 0
        r.register(
            _TelemetryEventsCollector(
                lambda: {"spooled": self.telemetry_spooled(), **self.telemetry_events}
            )
        )
        self.telemetry_spool_bytes = Gauge(
            "hydra_telemetry_spool_bytes", "Bytes in the telemetry spool on disk", registry=r
        )
        self.telemetry_spool_limit = Gauge(
            "hydra_telemetry_spool_limit_bytes", "The telemetry spool's size cap", registry=r
        )
        info = Gauge("hydra_build_info", "The coordinator's version", ["version"], registry=r)
        info.labels(__version__).set(1)
        r.register(_BackendCollector(backends))
        # stores
        self.cache_requests = Counter(
            "hydra_cache_requests",
            "Response cache lookups of eligible requests",
            ["result"],
            registry=r,
        )
        for result in ("hit", "miss"):
            self.cache_requests.labels(result)
        self._dependencies_watched = False

    def watch_dependencies(self, dependencies: Mapping[str, Callable[[], str]]) -> None:
        """Export ``hydra_dependency_up`` for the (live) mapping ``runtime.dependencies``."""
        if not self._dependencies_watched:
            self._dependencies_watched = True
            self.registry.register(_DependencyCollector(dependencies))

    def render(self) -> bytes:
        return generate_latest(self.registry)

"""Prometheus metrics of an app: ``bootstrap(app, metrics=True)`` serves them at ``/metrics``.

What is measured: requests by kind of route (``read``, ``write``, ``admin``, ``stream``), route
template and status, and their latency; the database's connection pool and how long work waits
for a connection (and, on SQLite, for the writer lock); rows written and audit rows by
component; the live-feed streams open. Extensions add their own (``programs`` adds runs by
status and their duration) through :func:`metrics_of` and :meth:`StorageMetrics.register`.

Each :class:`StorageMetrics` has a registry of its own (not prometheus-client's global one), so
two apps in one process do not clash. Under several worker processes each has its own figures,
unless ``PROMETHEUS_MULTIPROC_DIR`` is set: then counters and histograms are summed over the
workers (prometheus-client's multiprocess mode) and the live gauges are those of the worker
that answers. See docs/metrics.md.

prometheus-client is an optional dependency (``pip install 'machine-storage[metrics]'``).
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from fastapi import Response
from fastapi.params import Depends
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from storage import changes, feed
from storage import database as storage_database
from storage._pool import off_wait, on_wait
from storage.errors import MissingDependencyError

if TYPE_CHECKING:
    from fastapi import FastAPI
    from prometheus_client import CollectorRegistry
    from prometheus_client.registry import Collector

    from storage.database import Database

__all__ = ["StorageMetrics", "install", "metrics_of"]

INSTALL_HINT = "pip install 'machine-storage[metrics]'"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
WAIT_BUCKETS = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30)
UNMATCHED = "unmatched"
"""The ``route`` label of a request no route matched (a 404): never the raw path."""


def _prometheus() -> Any:
    try:
        import prometheus_client
    except ModuleNotFoundError as exc:
        raise MissingDependencyError(
            f"metrics need prometheus-client, which is not installed: {INSTALL_HINT}"
        ) from exc
    return prometheus_client


class StorageMetrics:
    """The metrics of one app, in a registry of their own.

    Args:
        database: the database whose pool is reported; default
            :func:`storage.database.get_database`, at scrape time.
        multiprocess_dir: prometheus-client's ``PROMETHEUS_MULTIPROC_DIR``, when the app runs
            in several worker processes (read from the environment by ``bootstrap``).
        latency_buckets: histogram buckets of request latency, in seconds.

    Raises:
        MissingDependencyError: prometheus-client is not installed.
    """

    def __init__(
        self,
        *,
        database: Database | None = None,
        multiprocess_dir: str | None = None,
        latency_buckets: Sequence[float] = LATENCY_BUCKETS,
    ) -> None:
        prom = _prometheus()
        self.registry: CollectorRegistry = prom.CollectorRegistry()
        self.multiprocess_dir = multiprocess_dir
        self._collectors: list[Collector] = [_ProcessCollector(database)]
        self.requests = self.counter(
            "storage_http_requests",
            "HTTP requests answered, by kind of route, route template, method and status.",
            ("kind", "route", "method", "status"),
        )
        self.latency = self.histogram(
            "storage_http_request_duration_seconds",
            "Time to answer a request (streams excluded), by kind, route template and method.",
            ("kind", "route", "method"),
            buckets=latency_buckets,
        )
        self.writes = self.counter(
            "storage_writes",
            "Rows written through accessors and committed, by component and operation.",
            ("component", "operation"),
        )
        self.audit_rows = self.counter(
            "storage_audit_rows",
            "Audit rows committed, by component and operation.",
            ("component", "operation"),
        )
        self.waits = self.histogram(
            "storage_db_wait_seconds",
            "Time spent waiting for a pooled connection (connection) or SQLite's writer lock "
            "(writer).",
            ("resource",),
            buckets=WAIT_BUCKETS,
        )
        self.registry.register(self._collectors[0])
        _hooks.attach(self)

    def counter(self, name: str, documentation: str, labels: Iterable[str]) -> Any:
        """A counter in this registry (``name`` without ``_total``)."""
        return _prometheus().Counter(name, documentation, tuple(labels), registry=self.registry)

    def histogram(
        self,
        name: str,
        documentation: str,
        labels: Iterable[str],
        *,
        buckets: Sequence[float] = LATENCY_BUCKETS,
    ) -> Any:
        """A histogram in this registry."""
        return _prometheus().Histogram(
            name, documentation, tuple(labels), buckets=tuple(buckets), registry=self.registry
        )

    def register(self, collector: Collector) -> None:
        """Add a collector whose figures are read when scraped (gauges of this process, or
        counts read from the database); they are served in multiprocess mode too."""
        self._collectors.append(collector)
        self.registry.register(collector)

    def render(self) -> bytes:
        """The metrics in Prometheus' text format."""
        prom = _prometheus()
        if not self.multiprocess_dir:
            return bytes(prom.generate_latest(self.registry))
        from prometheus_client import multiprocess

        registry = prom.CollectorRegistry()
        multiprocess.MultiProcessCollector(  # type: ignore[no-untyped-call]
            registry, path=self.multiprocess_dir
        )
        for collector in self._collectors:
            registry.register(collector)
        return bytes(prom.generate_latest(registry))

    def observe_request(
        self, kind: str, route: str, method: str, status: int, seconds: float
    ) -> None:
        """Count one answered request (and its latency, unless it was a stream)."""
        self.requests.labels(kind, route, method, str(status)).inc()
        if kind != "stream":
            self.latency.labels(kind, route, method).observe(seconds)

    def _count(self, tallies: list[changes.Tally]) -> None:
        for kind, component, operation, rows in tallies:
            counter = self.writes if kind == "write" else self.audit_rows
            counter.labels(component, operation).inc(rows)

    def _waited(self, resource: str, seconds: float) -> None:
        self.waits.labels(resource).observe(seconds)


class _Hooks:
    """One listener each on the write tallies and the waits, while any metrics are alive;
    writes pay nothing for metrics once none are."""

    def __init__(self) -> None:
        self.live: weakref.WeakSet[StorageMetrics] = weakref.WeakSet()
        self.count = 0
        self.lock = threading.Lock()

    def attach(self, metrics: StorageMetrics) -> None:
        with self.lock:
            self.live.add(metrics)
            self.count += 1
            if self.count == 1:
                changes.on_committed_tally(self.count_writes)
                on_wait(self.count_wait)
        weakref.finalize(metrics, self.detach)

    def detach(self) -> None:
        with self.lock:
            self.count -= 1
            if self.count == 0:
                changes.off_committed_tally(self.count_writes)
                off_wait(self.count_wait)

    def count_writes(self, tallies: list[changes.Tally]) -> None:
        for metrics in list(self.live):
            metrics._count(tallies)

    def count_wait(self, resource: str, seconds: float) -> None:
        for metrics in list(self.live):
            metrics._waited(resource, seconds)


_hooks = _Hooks()


class _ProcessCollector:
    """Gauges read when scraped: the connection pool and the live-feed streams."""

    def __init__(self, database: Database | None) -> None:
        self._database = database

    def collect(self) -> Iterable[Any]:
        from prometheus_client.core import GaugeMetricFamily

        db = self._database or storage_database.get_database()
        engine_pool = db.engine.pool
        for name, documentation, method in (
            ("storage_db_pool_size", "Connections the pool keeps.", "size"),
            ("storage_db_pool_checked_out", "Pooled connections in use now.", "checkedout"),
            ("storage_db_pool_overflow", "Connections open beyond the pool size.", "overflow"),
        ):
            read = getattr(engine_pool, method, None)
            if callable(read):  # a SQLite memory database has a single static connection
                yield GaugeMetricFamily(name, documentation, value=max(0, int(read())))
        yield GaugeMetricFamily(
            "storage_feed_subscribers",
            "Live change streams of this process (SSE clients, subscribe()).",
            value=feed.subscribers(),
        )


def _route_kind(route: Any) -> str:
    """``read``, ``write``, ``admin`` or ``stream``: what a route does, for metrics labels."""
    kind = getattr(route, "kind", None)
    if isinstance(kind, str):
        return kind
    if not isinstance(route, APIRoute):
        return "other"
    if getattr(route.response_class, "media_type", None) == "text/event-stream":
        return "stream"
    return "read" if (route.methods or set()) <= {"GET", "HEAD"} else "write"


class _MetricsMiddleware:
    """Times each HTTP request and counts it by the route that answered it."""

    def __init__(self, app: ASGIApp, metrics: StorageMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def sent(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sent)
        finally:
            route = scope.get("route")  # set by the router once a route matched
            self.metrics.observe_request(
                _route_kind(route) if route is not None else "other",
                getattr(route, "path", None) or UNMATCHED,
                scope["method"],
                status,
                time.perf_counter() - start,
            )


def install(
    app: FastAPI,
    metrics: StorageMetrics,
    *,
    path: str = "/metrics",
    dependencies: Sequence[Depends] = (),
) -> StorageMetrics:
    """Measure ``app``'s requests and serve the metrics at ``path`` (what ``bootstrap`` does
    with ``metrics=True``); :func:`metrics_of` finds them afterwards.

    Args:
        app: the app, before it starts.
        metrics: where to count.
        path: the route of the Prometheus text.
        dependencies: guards of that route (``bootstrap`` passes its ``auth.read``).
    """
    app.add_middleware(_MetricsMiddleware, metrics=metrics)
    media_type = _prometheus().CONTENT_TYPE_LATEST

    def scrape() -> Response:
        return Response(metrics.render(), media_type=media_type)

    app.add_api_route(
        path,
        scrape,
        methods=["GET"],
        dependencies=list(dependencies),
        include_in_schema=False,
        name="metrics",
    )
    app.state.storage_metrics = metrics
    return metrics


def metrics_of(app: Any) -> StorageMetrics | None:
    """The metrics :func:`install` put on ``app``, or ``None`` when it has none (for
    extensions that add their own figures)."""
    state = getattr(app, "state", None)
    found = getattr(state, "storage_metrics", None)
    return found if isinstance(found, StorageMetrics) else None

"""Run metrics, added to an app's :class:`storage.metrics.StorageMetrics` when it has them.

``programs_runs{status}``: runs in the database by status (every process's, read when
scraped); ``programs_run_duration_seconds{status}``: how long the runs this process executed
ran, by how they ended.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from sqlalchemy import func, select
from sqlmodel import col

from programs._tables import ProgramRun, RunStatus
from programs.runner import Runner
from programs.store import ProgramStore
from storage.errors import StorageError
from storage.metrics import StorageMetrics

__all__ = ["RUN_BUCKETS", "add_run_metrics"]

logger = logging.getLogger("programs._metrics")

RUN_BUCKETS = (0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600)


def add_run_metrics(metrics: StorageMetrics, store: ProgramStore, runner: Runner | None) -> None:
    """Count runs by status in the store's database, and time the runs of ``runner`` (when
    there is one)."""
    metrics.register(_RunsCollector(store))
    if runner is None:
        return
    durations = metrics.histogram(
        "programs_run_duration_seconds",
        "How long the runs this process executed ran, by final status.",
        ("status",),
        buckets=RUN_BUCKETS,
    )
    runner.on_run_finished(lambda status, seconds: durations.labels(status).observe(seconds))


class _RunsCollector:
    def __init__(self, store: ProgramStore) -> None:
        self._store = store  # its database, read at each scrape

    def collect(self) -> Iterable[Any]:
        from prometheus_client.core import GaugeMetricFamily

        family = GaugeMetricFamily(
            "programs_runs", "Runs in the database, by status.", labels=["status"]
        )
        statement = select(col(ProgramRun.status), func.count()).group_by(col(ProgramRun.status))
        try:
            with self._store.database.read_session() as session:
                counts = {status: count for status, count in session.execute(statement)}
        except StorageError as exc:
            logger.warning("runs by status not read for the metrics: %s", exc)
            return
        for status in RunStatus:
            family.add_metric([status.value], counts.get(status.value, 0))
        yield family

"""``RunnerConfig``: how programs run (backend, concurrency, stopping, logs), read at the edge."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from programs.backends import NovaSettings, RunnerBackend

__all__ = ["RunnerConfig"]


@dataclass(frozen=True, kw_only=True)
class RunnerConfig:
    """How programs run.

    Attributes:
        backend: ``"local"`` (in this process), ``"nova"`` (needs ``nova``), or a
            :class:`~programs.backends.RunnerBackend` of your own.
        nova: how to reach NOVA, for the nova backend.
        max_concurrent: runs going at once (a robot cell runs one program at a time).
        when_busy: ``"reject"`` a start while all slots are taken (409), or ``"queue"`` it.
        max_queued: runs waiting at most with ``"queue"`` (409 beyond).
        stop_wait: seconds ``POST /runs/{id}/stop`` waits for a running run to end before it
            answers 202 (stop requested) instead of 200 (stopped).
        shutdown_timeout: seconds the app's shutdown waits for stopped runs to end.
        log_limit: characters kept of a run's logs and of its output (the newest).
        log_level: the lowest level of log records kept in a run's logs.
        echo_output: also write what runs print to the server's console.
        recover: at startup, mark runs this runner left active (a crash) as failed.
        name: the runner's name, stored with its runs; processes sharing one database need
            different names, or one would mark the other's live runs failed at startup.
        component: the audit-log component of run rows.
    """

    backend: str | RunnerBackend = "local"
    nova: NovaSettings | None = None
    max_concurrent: int = 1
    when_busy: Literal["reject", "queue"] = "reject"
    max_queued: int = 100
    stop_wait: float = 2.0
    shutdown_timeout: float = 10.0
    log_limit: int = 1_000_000
    log_level: int = logging.INFO
    echo_output: bool = True
    recover: bool = True
    name: str = "default"
    component: str = "program_runs"

    def __post_init__(self) -> None:
        if self.max_concurrent < 1 or self.max_queued < 0 or self.log_limit < 1:
            raise ValueError("max_concurrent and log_limit must be positive, max_queued >= 0")
        if self.when_busy not in ("reject", "queue"):
            raise ValueError(f"when_busy must be 'reject' or 'queue', not {self.when_busy!r}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **options: Any) -> RunnerConfig:
        """A configuration from the environment, for the edge of an app.

        The backend is ``PROGRAMS_RUNNER_BACKEND`` when set, else ``nova`` when ``NOVA_API``
        is set, else ``local``; NOVA settings come from ``NOVA_API``, ``NOVA_ACCESS_TOKEN``
        and ``CELL_NAME``; ``PROGRAMS_RUNNER_WHEN_BUSY`` is ``reject`` or ``queue``.
        ``options`` override any of it.
        """
        env = os.environ if environ is None else environ
        backend = env.get("PROGRAMS_RUNNER_BACKEND") or ("nova" if env.get("NOVA_API") else "local")
        values: dict[str, Any] = {"backend": backend}
        if backend == "nova":
            values["nova"] = NovaSettings.from_env(env)
        if env.get("PROGRAMS_RUNNER_WHEN_BUSY"):
            values["when_busy"] = env["PROGRAMS_RUNNER_WHEN_BUSY"]
        return cls(**{**values, **options})

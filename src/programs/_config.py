"""``RunnerConfig``: how programs run (backend, concurrency, stopping, logs), read at the edge."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from programs._tables import NAME_LENGTH
from programs.backends import NovaSettings, RunnerBackend

__all__ = ["RunnerConfig"]


@dataclass(frozen=True, kw_only=True)
class RunnerConfig:
    """How programs run, and how a process takes part in its cell.

    Every process that serves a cell (an app server, a worker) shares one queue, one set of
    running runs and one history with the others through the database; give them the same
    ``cell``, ``max_concurrent`` and ``when_busy``.

    Attributes:
        backend: ``"local"`` (in this process), ``"nova"`` (needs ``nova``), or a
            :class:`~programs.backends.RunnerBackend` of your own.
        nova: how to reach NOVA, for the nova backend.
        cell: the robot cell this runner serves (``CELL_NAME``, else ``"default"``).
        max_concurrent: runs going at once in the cell, across every process (a robot cell
            runs one program at a time).
        when_busy: ``"reject"`` a start while all slots are taken (409), or ``"queue"`` it.
        max_queued: runs waiting at most with ``"queue"`` (409 beyond).
        execute: run programs in this process; ``False`` serves the API only (start, stop,
            read) while another process of the cell executes.
        stop_wait: seconds ``POST /runs/{id}/stop`` waits for a running run to end before it
            answers 202 (stop requested) instead of 200 (stopped).
        shutdown_timeout: seconds the app's shutdown waits for stopped runs to end.
        log_limit: characters kept of a run's logs and of its output (the newest).
        log_level: the lowest level of log records kept in a run's logs.
        echo_output: also write what runs print to the server's console.
        recover: at startup, end at once the runs whose process is gone (see
            :attr:`lease_timeout` for the others).
        lease_timeout: seconds without a heartbeat after which a running run is ended as
            ``failed`` by any other live process, and its slot is free again.
        heartbeat_interval: seconds between two heartbeats of this process (default a fifth
            of ``lease_timeout``: 3 s).
        poll_interval: seconds between two looks at the cell for stop requests and queued
            runs (PostgreSQL wakes runners at once with ``LISTEN/NOTIFY``; this is a fallback).
        flush_interval: seconds a run's output waits at most before it is written to the
            database, where every process reads it.
        name: a label for this process in its instance id (default: the host name).
        component: the audit-log component of run rows.
    """

    backend: str | RunnerBackend = "local"
    nova: NovaSettings | None = None
    cell: str = "default"
    max_concurrent: int = 1
    when_busy: Literal["reject", "queue"] = "reject"
    max_queued: int = 100
    execute: bool = True
    stop_wait: float = 2.0
    shutdown_timeout: float = 10.0
    log_limit: int = 1_000_000
    log_level: int = logging.INFO
    echo_output: bool = True
    recover: bool = True
    lease_timeout: float = 15.0
    heartbeat_interval: float | None = None
    poll_interval: float = 0.25
    flush_interval: float = 0.2
    name: str | None = None
    component: str = "program_runs"

    def __post_init__(self) -> None:
        if self.max_concurrent < 1 or self.max_queued < 0 or self.log_limit < 1:
            raise ValueError("max_concurrent and log_limit must be positive, max_queued >= 0")
        if self.when_busy not in ("reject", "queue"):
            raise ValueError(f"when_busy must be 'reject' or 'queue', not {self.when_busy!r}")
        if not self.cell or len(self.cell) > NAME_LENGTH:
            raise ValueError(f"cell must be 1 to {NAME_LENGTH} characters")
        if min(self.poll_interval, self.flush_interval, self.heartbeat) <= 0:
            raise ValueError(
                "poll_interval, flush_interval, heartbeat_interval and lease_timeout must be > 0"
            )
        if self.lease_timeout < 2 * self.heartbeat:
            raise ValueError(
                "lease_timeout must be at least twice heartbeat_interval, or a slow heartbeat "
                "would end live runs"
            )

    @property
    def heartbeat(self) -> float:
        """Seconds between two heartbeats (:attr:`heartbeat_interval`, resolved)."""
        return self.heartbeat_interval or self.lease_timeout / 5

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **options: Any) -> RunnerConfig:
        """A configuration from the environment, for the edge of an app.

        The backend is ``PROGRAMS_RUNNER_BACKEND`` when set, else ``nova`` when ``NOVA_API``
        is set, else ``local``; NOVA settings come from ``NOVA_API``, ``NOVA_ACCESS_TOKEN``
        and ``CELL_NAME``; the cell is ``CELL_NAME`` (else ``default``);
        ``PROGRAMS_RUNNER_WHEN_BUSY`` is ``reject`` or ``queue``; ``PROGRAMS_RUNNER_EXECUTE=0``
        makes an API-only process; ``PROGRAMS_RUNNER_LEASE_TIMEOUT`` is in seconds.
        ``options`` override any of it.
        """
        env = os.environ if environ is None else environ
        backend = env.get("PROGRAMS_RUNNER_BACKEND") or ("nova" if env.get("NOVA_API") else "local")
        values: dict[str, Any] = {"backend": backend, "cell": env.get("CELL_NAME") or "default"}
        if backend == "nova":
            values["nova"] = NovaSettings.from_env(env)
        if env.get("PROGRAMS_RUNNER_WHEN_BUSY"):
            values["when_busy"] = env["PROGRAMS_RUNNER_WHEN_BUSY"]
        if env.get("PROGRAMS_RUNNER_LEASE_TIMEOUT"):
            values["lease_timeout"] = float(env["PROGRAMS_RUNNER_LEASE_TIMEOUT"])
        if env.get("PROGRAMS_RUNNER_EXECUTE"):
            values["execute"] = env["PROGRAMS_RUNNER_EXECUTE"].strip().lower() not in _FALSE
        return cls(**{**values, **options})


_FALSE = frozenset({"0", "false", "no", "off"})

"""``Runner``: runs stored programs on a backend, one at a time per cell, and records them.

The runner lives on the app's event loop between its lifespan's startup and shutdown
(:meth:`Runner.lifespan`). A start validates the program and stores a ``queued`` run in the
cell (:class:`programs._cells.CellLedger`); whichever process of the cell has a free slot
claims it (:class:`programs._coordinator.Coordinator`) and runs it in a task of its own
(:class:`programs._jobs.RunExecutor`): the backend runs it with its output and log records
captured (:mod:`programs._capture`) and written to the database as it goes
(:mod:`programs._lines`), and the end is recorded. A stop, from any process, is recorded on the
run; the process executing it cancels the task, which the backend turns into a stopped program.
Database work happens in worker threads, so the loop never waits for the database.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from programs._capture import capture_routing
from programs._cells import CellLedger, Instance
from programs._config import RunnerConfig
from programs._coordinator import Coordinator
from programs._history import RUNNER_ACTOR, RunHistory
from programs._jobs import Job, RunExecutor, in_thread
from programs._lines import Stream, read_lines, read_text
from programs._tables import ProgramRun, ProgramRunLine, RunStatus
from programs.backends import RunnerBackend, create_backend
from programs.errors import RunnerUnavailableError
from programs.store import ProgramStore
from programs.template import Template
from storage.database import Database
from storage.errors import StorageError

__all__ = ["Runner"]

logger = logging.getLogger("programs.runner")


class Runner(RunExecutor):
    """Runs the programs of a :class:`ProgramStore` in a cell, and keeps their history.

    Any number of processes, on any number of machines, can run a ``Runner`` for the same
    cell on one database: they share its queue, its running runs and its history through the
    database (:mod:`programs._cells`), and any of them reads and stops any run.

    Args:
        store: where programs and templates come from.
        config: how they run (default: local, one at a time per cell, a second start refused).
        database: the :class:`~storage.database.Database` of the programs and their runs; the
            store is bound to it (:meth:`ProgramStore.bind`). Default: the store's database
            (the default one, at the time of each call, while the store follows it).

    Raises:
        BackendMissingError: the backend needs a package that is not installed.
        ConfigurationError: the store belongs to another database than ``database``.
    """

    def __init__(
        self,
        store: ProgramStore,
        config: RunnerConfig | None = None,
        *,
        database: Database | None = None,
    ) -> None:
        if database is not None:
            store.bind(database)
        self.store = store
        self.config = config if config is not None else RunnerConfig()
        self.backend: RunnerBackend = create_backend(self.config.backend, self.config.nova)
        self.history = RunHistory(self.config.component, database=store.bound_database)
        self.instance = Instance.this_process(self.config.name)
        self.ledger = CellLedger(self.config, self.history, self.instance)
        self._jobs: dict[int, Job] = {}
        self._coordinator: Coordinator | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._accepting = False
        self._finished_listeners: list[Callable[[str, float], None]] = []

    def __repr__(self) -> str:
        return (
            f"Runner({self.backend!r}, cell={self.config.cell!r}, "
            f"max_concurrent={self.config.max_concurrent}, execute={self.config.execute})"
        )

    def on_run_finished(self, fn: Callable[[str, float], None]) -> None:
        """Call ``fn(status, seconds)`` (quickly) when a run this process executed has ended
        and its end is recorded: its final status and how long it ran."""
        self._finished_listeners.append(fn)

    def bind(self, database: Database) -> None:
        """Run on ``database`` from now on: the store and the run history are bound to it.

        Raises:
            ConfigurationError: they already belong to another database.
        """
        self.store.bind(database)
        self.history.runs.bind(database)

    @property
    def started(self) -> bool:
        """Whether the runner takes runs (between :meth:`start` and :meth:`shutdown`)."""
        return self._accepting

    # -- lifecycle -------------------------------------------------------------------------

    @asynccontextmanager
    async def lifespan(self, app: Any = None) -> AsyncIterator[None]:
        """Start for the block, shut down after it: a FastAPI/Starlette lifespan."""
        await self.start()
        try:
            yield
        finally:
            await self.shutdown()

    async def start(self) -> None:
        """Prepare the backend, join the cell, end what dead processes left, take runs."""
        if self._accepting:
            return
        if self.config.execute:
            await self.backend.open()
        ended = await in_thread(self.ledger.register)
        if self.config.recover:
            ended += await in_thread(self.ledger.expire)
        if ended:
            logger.warning("ended %d runs left behind by processes that are gone", len(ended))
        run_logger = logging.getLogger("programs.run")
        if run_logger.level == logging.NOTSET:
            run_logger.setLevel(self.config.log_level)
        capture_routing.acquire()
        self._loop = asyncio.get_running_loop()
        self._accepting = True
        self._coordinator = Coordinator(
            self.ledger,
            self.config,
            executing=lambda: [job.run_id for job in list(self._jobs.values())],
            buffers=lambda: [
                job.capture.lines for job in list(self._jobs.values()) if job.capture.lines
            ],
            on_claimed=self._claimed,
            on_stop=lambda run: self._from_thread(self._stop_requested, run),
            on_lost=lambda run_id: self._from_thread(self._lease_lost, run_id),
        )
        self._coordinator.start()

    async def shutdown(self) -> None:
        """Stop this process's runs (recorded as cancelled), leave the cell, release the
        backend. Runs other processes execute are not touched."""
        if not self._accepting:
            return
        self._accepting = False
        try:
            if self._coordinator is not None:
                # Claims made before it stopped reach the loop first (they were sent first).
                await in_thread(self._coordinator.stop)
            jobs = list(self._jobs.values())
            for job in jobs:
                job.request_stop(RUNNER_ACTOR, "stopped: the app shut down")
            tasks = {job.task for job in jobs if job.task is not None}
            if tasks:
                _, pending = await asyncio.wait(tasks, timeout=self.config.shutdown_timeout)
                for job in jobs:
                    job.call.abandon()
                if pending:
                    await asyncio.wait(pending, timeout=1.0)
            for job in list(self._jobs.values()):
                logger.error("run %d did not stop within the shutdown timeout", job.run_id)
                await self._record(job, RunStatus.cancelled, job.stopped_by, None, None, None)
            try:
                cancelled = await in_thread(self.ledger.unregister)
            except StorageError as exc:
                # The database is gone or changed under a shutting-down process: its lease
                # runs out and the other processes take over, as after a kill.
                logger.warning("could not leave the cell on shutdown: %s", exc)
                cancelled = []
            if cancelled:
                logger.warning("cancelled %d queued runs: nobody executes them", len(cancelled))
        finally:
            capture_routing.release()
            if self.config.execute:
                await self.backend.close()

    # -- runs ------------------------------------------------------------------------------

    async def start_run(self, program_name: str, *, actor: str = "internal") -> ProgramRun:
        """Start a run of a stored program in the cell (queued until a process takes it).

        Raises:
            RunnerUnavailableError: the runner is not started, or no live process executes
                programs in the cell.
            RunnerBusyError: no slot is free and the configuration rejects or the queue is full.
            ProgramNotFound, TemplateNotFound, TemplateUnavailableError: nothing to run.
            ProgramDataError: the stored data no longer matches the template.
            ProgramNotRunnable: the template needs what the backend lacks (NOVA).
        """
        self._check_started()
        template, params = await in_thread(self._validate, program_name)
        run = await in_thread(
            self.ledger.enqueue,
            program_name=program_name,
            template_name=template.name,
            backend=self.backend.name,
            parameters=params.model_dump(mode="json"),
            actor=actor,
        )
        if self._coordinator is not None:
            self._coordinator.wake()
        logger.info("run %s of program %r queued by %s", run.id, program_name, actor)
        return run

    async def stop_run(self, run_id: int, *, actor: str = "internal") -> tuple[ProgramRun, bool]:
        """Stop a run, whichever process executes it: a queued one is cancelled at once, a
        running one is asked to stop, and the answer waits up to ``stop_wait`` for its end.

        Returns:
            the run as it is now, and whether it has ended (else the stop is still going on).

        Raises:
            RunNotFound: no such run.
            RunStateError: it has already ended.
        """
        outcome = await in_thread(self.ledger.request_stop, run_id, actor)
        if outcome.ended:
            return outcome.run, True
        job = self._jobs.get(run_id)
        if job is not None:  # ours: no need to wait for the coordinator to notice
            job.request_stop(actor, f"stopped by {actor}", outcome.run.stop_requested_at)
        elif self._coordinator is not None:
            self._coordinator.wake()
        run = await self.wait_for_run(run_id, timeout=self.config.stop_wait)
        return run, RunStatus(run.status).is_final

    async def wait_for_run(self, run_id: int, timeout: float | None = None) -> ProgramRun:
        """Wait until the run has ended (or ``timeout`` passed) and return it; the run may
        execute in any process.

        Raises:
            RunNotFound: no such run.
        """
        deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
        while True:
            job = self._jobs.get(run_id)
            left = (
                None if deadline is None else max(0.0, deadline - asyncio.get_running_loop().time())
            )
            if job is not None and job.task is not None:
                await asyncio.wait({job.task}, timeout=left)
            run = await in_thread(self.get_run, run_id)
            if RunStatus(run.status).is_final or (left is not None and left <= 0):
                return run
            await asyncio.sleep(min(0.05, left) if left is not None else 0.05)

    def get_run(self, run_id: int) -> ProgramRun:
        """A run; while it goes on, with the logs and output so far (from memory in the
        process that executes it, from the database in the others).

        Raises:
            RunNotFound: no such run.
        """
        job = self._jobs.get(run_id)  # before the row: a run claimed meanwhile reads as running
        row = self.history.get(run_id)
        if job is not None:
            return job.live(row)
        if row.status != RunStatus.running.value:
            return row
        texts = read_text(self.database, run_id)
        return ProgramRun.model_validate(
            {**row.model_dump(), "output": texts["output"], "logs": texts["log"]}
        )

    def list_runs(
        self,
        *,
        program_name: str | None = None,
        statuses: Sequence[RunStatus] = (),
        limit: int | None = None,
        offset: int = 0,
    ) -> tuple[list[ProgramRun], int]:
        """Runs, newest first, filtered by program and status; and how many match in all.

        The rows are as stored: the output of runs still going on is in :meth:`get_run`.
        """
        return self.history.find(
            program_name=program_name, statuses=statuses, limit=limit, offset=offset
        )

    def run_lines(
        self, run_id: int, *, after: int = 0, limit: int = 1000, stream: Stream | None = None
    ) -> list[ProgramRunLine]:
        """A page of a run's output lines and log records, as written while it ran.

        Raises:
            RunNotFound: no such run.
        """
        self.history.get(run_id)
        return read_lines(self.database, run_id, after=after, limit=limit, stream=stream)

    # -- internals -------------------------------------------------------------------------

    def _check_started(self) -> None:
        if not self._accepting:
            raise RunnerUnavailableError(
                "the program runner is not running: start the app's lifespan (for tests: "
                "`with TestClient(app)`), or it is shutting down"
            )

    def _validate(self, program_name: str) -> tuple[Template, Any]:
        instance = self.store.get_program(program_name)
        return self._runnable(instance.template_name, instance.data)

"""The runs this process executes: ``Job``, and ``RunExecutor``, the part of
:class:`programs.runner.Runner` that launches, drives and records them.

A run this process claimed starts in a task of its own on the runner's loop; the backend runs
it with its output and log records captured (:mod:`programs._capture`) and written to the
database as it goes (:mod:`programs._lines`), and its end is recorded in the cell. A stop,
from any process, cancels the task, which the backend turns into a stopped program.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
import traceback
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import anyio.to_thread

from programs._capture import RunCapture, capture_routing
from programs._cells import CellLedger
from programs._config import RunnerConfig
from programs._context import ProgramCall, RunContext, check_runnable
from programs._coordinator import Coordinator
from programs._history import ACTIVE, RUNNER_ACTOR, RunHistory
from programs._lines import LineBuffer, write_lines
from programs._tables import ProgramRun, RunStatus
from programs.backends import RunnerBackend
from programs.errors import RunCancelled
from programs.store import ProgramStore
from programs.template import Template
from storage._listeners import call_listeners
from storage.auditor import to_json_safe, utcnow
from storage.database import Database

__all__ = ["Job", "RunExecutor", "in_thread"]

logger = logging.getLogger("programs.runner")

T = TypeVar("T")


class Job:
    """A run this process executes."""

    def __init__(self, run_id: int, call: ProgramCall, capture: RunCapture) -> None:
        self.run_id = run_id
        self.call = call
        self.capture = capture
        self.task: asyncio.Task[None] | None = None
        self.stopped_by: str | None = None
        self.stop_requested_at: datetime | None = None
        self.stop_reason = ""
        self.finishing = False
        self.began = time.monotonic()

    def request_stop(self, actor: str, reason: str, requested_at: datetime | None = None) -> None:
        # Cancel the task once, and not once it records the end: a cancel then would cut the
        # bookkeeping short.
        if self.stopped_by is not None or self.finishing:
            return
        self.stopped_by, self.stop_reason = actor, reason
        self.stop_requested_at = requested_at or utcnow()
        self.call.context.request_stop()
        if self.task is not None:
            self.task.cancel()

    def live(self, row: ProgramRun) -> ProgramRun:
        # The stored row plus the output kept in memory while the run goes on.
        if row.status not in ACTIVE:
            return row
        return ProgramRun.model_validate(
            {**row.model_dump(), "logs": self.capture.logs, "output": self.capture.output}
        )


class RunExecutor:
    """Launches the runs this process claims, drives each on the backend and records its end;
    :class:`programs.runner.Runner` builds on it and sets what it works with (the runs are
    written to :attr:`database`, the history's)."""

    store: ProgramStore
    config: RunnerConfig
    backend: RunnerBackend
    ledger: CellLedger
    history: RunHistory
    _jobs: dict[int, Job]
    _coordinator: Coordinator | None
    _loop: asyncio.AbstractEventLoop | None
    _accepting: bool
    _finished_listeners: list[Callable[[str, float], None]]

    @property
    def database(self) -> Database:
        """The database of the runs: the store's (see :attr:`ProgramStore.database`)."""
        return self.history.database

    def _runnable(self, template_name: str, data: dict[str, Any]) -> tuple[Template, Any]:
        # The template as this process's code has it, the parameters validated against it.
        template = self.store.usable_template(template_name)
        params = template.validate(data)
        check_runnable(template, self.backend.name, self.backend.resources)
        return template, params

    def _from_thread(self, callback: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(callback, *args)

    def _claimed(self, run: ProgramRun) -> None:
        # In the coordinator's thread: a run this process claimed; its template and parameters
        # as this process's code has them (another process validated them at the start).
        if run.id is None:  # never: a stored row has its id
            return
        try:
            template, params = self._runnable(run.template_name, run.parameters)
        except Exception as exc:
            self.ledger.finish(run.id, RunStatus.failed, actor=RUNNER_ACTOR, error=_describe(exc))
            logger.warning("run %d cannot run in this process: %s", run.id, exc)
            return
        context = RunContext(
            run_id=run.id,
            program_name=run.program_name,
            template_name=template.name,
            backend=self.backend.name,
            parameters=params,
        )
        self._from_thread(self._launch, ProgramCall(template, context))

    def _launch(self, call: ProgramCall) -> None:
        # On the loop: the claimed run starts now.
        run_id = call.context.run_id
        capture = RunCapture(
            limit=self.config.log_limit,
            level=self.config.log_level,
            echo=self.config.echo_output,
            lines=LineBuffer(run_id, self.config.log_limit),
        )
        job = Job(run_id, call, capture)
        self._jobs[run_id] = job
        # A fresh context: nothing of the caller's (an open transaction) leaks into the run.
        job.task = asyncio.get_running_loop().create_task(
            self._drive(job), name=f"program-run-{run_id}", context=contextvars.Context()
        )
        if not self._accepting:
            job.request_stop(RUNNER_ACTOR, "stopped: the app shut down")

    def _stop_requested(self, run: ProgramRun) -> None:
        job = self._jobs.get(run.id or 0)
        if job is not None:
            actor = run.stopped_by or "internal"
            job.request_stop(actor, f"stopped by {actor}", run.stop_requested_at)

    def _lease_lost(self, run_id: int) -> None:
        job = self._jobs.get(run_id)
        if job is not None:
            job.request_stop(RUNNER_ACTOR, "stopped: another process ended this run")

    async def _drive(self, job: Job) -> None:
        status, error, trace, result = RunStatus.completed, None, None, None
        try:
            job.call.context.raise_if_stopped()  # stopped before it began: never start it
            capture_routing.ensure()  # sys.stdout may have been replaced since startup
            with job.capture.active():
                result = await self.backend.run(job.call)
            if job.stopped_by is not None:
                status = RunStatus.cancelled
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            if job.stopped_by is None:  # not ours: something inside the program cancelled it
                status, error, trace = RunStatus.failed, "the program was cancelled", _trace(exc)
            else:
                status = RunStatus.cancelled
        except RunCancelled:
            status = RunStatus.cancelled
        except Exception as exc:
            status, error, trace = RunStatus.failed, _describe(exc), _trace(exc)
            logger.info("run %d failed: %s", job.run_id, error)
        job.finishing = True
        if status is RunStatus.cancelled:
            error = job.stop_reason or "stopped"
        await self._record(job, status, job.stopped_by, error, trace, result)

    async def _record(
        self,
        job: Job,
        status: RunStatus,
        actor: str | None,
        error: str | None,
        trace: str | None,
        result: Any,
    ) -> None:
        if self._jobs.get(job.run_id) is not job:
            return  # recorded already
        try:
            recorded = await in_thread(
                self._finish,
                job,
                status,
                actor=actor or RUNNER_ACTOR,
                error=error,
                traceback=trace,
                result=to_json_safe(result),
                output=job.capture.output,
                logs=job.capture.logs,
                stopped_by=job.stopped_by,
                stop_requested_at=job.stop_requested_at,
            )
            if recorded:
                logger.info("run %d %s", job.run_id, status.value)
                seconds = time.monotonic() - job.began
                call_listeners(list(self._finished_listeners), status.value, seconds)
            else:
                logger.error(
                    "run %d ended %s, but another process had ended it", job.run_id, status
                )
        except Exception:
            logger.exception("could not record the end of run %d", job.run_id)
        finally:
            self._jobs.pop(job.run_id, None)
            if self._coordinator is not None:
                self._coordinator.wake()  # a slot is free: claim the next queued run

    def _finish(self, job: Job, status: RunStatus, *, actor: str, **fields: Any) -> bool:
        lines = job.capture.lines
        if lines is not None:
            write_lines(self.database, lines.take())
        return self.ledger.finish(job.run_id, status, actor=actor, **fields)


async def in_thread(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    # Database work off the loop, in an empty context (no caller's session); not abandoned
    # when the task is cancelled, so a later write never overtakes an earlier one.
    def call() -> T:
        return contextvars.Context().run(function, *args, **kwargs)

    return await anyio.to_thread.run_sync(call)


def _describe(exc: BaseException) -> str:
    pretty = getattr(exc, "to_pretty_string", None)  # the SDK's planning errors explain more
    if callable(pretty):
        try:
            return f"{type(exc).__name__}: {pretty()}"
        except Exception:
            pass
    return f"{type(exc).__name__}: {exc}"


def _trace(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))

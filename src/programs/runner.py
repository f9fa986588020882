"""``Runner``: runs stored programs on a backend, one at a time by default, and records them.

The runner lives on the app's event loop between its lifespan's startup and shutdown
(:meth:`Runner.lifespan`). A start validates the program, stores a ``queued`` run and hands it
to a task of its own; the task waits for a slot, marks the run ``running``, lets the backend
run it with its output and log records captured (:mod:`programs.capture`), and records how it
ended. A stop cancels that task, which the backend turns into a stopped program. Database work
happens in worker threads, so the loop never waits for the database.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import traceback
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, TypeVar

import anyio.to_thread

from programs.backends import RunnerBackend, create_backend
from programs.capture import RunCapture, capture_routing
from programs.config import RunnerConfig
from programs.context import ProgramCall, RunContext, check_runnable
from programs.errors import (
    RunCancelled,
    RunnerBusyError,
    RunnerUnavailableError,
    RunStateError,
)
from programs.history import ACTIVE, RUNNER_ACTOR, RunHistory
from programs.store import ProgramStore
from programs.tables import ProgramRun, RunStatus
from programs.template import Template
from storage.auditor import to_json_safe, utcnow

__all__ = ["Runner"]

logger = logging.getLogger("programs.runner")

T = TypeVar("T")


class _Job:
    """A run this process is handling (queued or running)."""

    def __init__(self, run_id: int, call: ProgramCall, capture: RunCapture) -> None:
        self.run_id = run_id
        self.call = call
        self.capture = capture
        self.task: asyncio.Task[None] | None = None
        self.running = False
        self.stopped_by: str | None = None
        self.stop_requested_at: datetime | None = None
        self.stop_reason = ""
        self.finishing = False

    def request_stop(self, actor: str, reason: str) -> None:
        # Cancel the task once, and not once it records the end: a cancel then would cut the
        # bookkeeping short.
        if self.stopped_by is not None or self.finishing:
            return
        self.stopped_by, self.stop_requested_at, self.stop_reason = actor, utcnow(), reason
        self.call.context.request_stop()
        if self.task is not None:
            self.task.cancel()

    def live(self, row: ProgramRun) -> ProgramRun:
        # The stored row plus what is only in memory while the run goes on.
        if row.status not in ACTIVE:
            return row
        return ProgramRun.model_validate(
            {
                **row.model_dump(),
                "logs": self.capture.logs,
                "output": self.capture.output,
                "stopped_by": self.stopped_by,
                "stop_requested_at": self.stop_requested_at,
            }
        )


class Runner:
    """Runs the programs of a :class:`ProgramStore` and keeps their history.

    Args:
        store: where programs and templates come from.
        config: how they run (default: local, one at a time, a second start refused).

    Raises:
        BackendMissingError: the backend needs a package that is not installed.
    """

    def __init__(self, store: ProgramStore, config: RunnerConfig | None = None) -> None:
        self.store = store
        self.config = config if config is not None else RunnerConfig()
        self.backend: RunnerBackend = create_backend(self.config.backend, self.config.nova)
        self.history = RunHistory(self.config.component)
        self._jobs: dict[int, _Job] = {}
        self._reserved = 0
        self._slots: asyncio.Semaphore | None = None
        self._accepting = False

    def __repr__(self) -> str:
        return f"Runner({self.backend!r}, max_concurrent={self.config.max_concurrent})"

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
        """Prepare the backend, fail the runs a crash left active, take runs."""
        if self._accepting:
            return
        await self.backend.open()
        if self.config.recover:
            failed = await _in_thread(self.history.recover, self.config.name)
            if failed:
                logger.warning("marked %d runs left active by a crash as failed", len(failed))
        run_logger = logging.getLogger("programs.run")
        if run_logger.level == logging.NOTSET:
            run_logger.setLevel(self.config.log_level)
        capture_routing.acquire()
        self._slots = asyncio.Semaphore(self.config.max_concurrent)
        self._accepting = True

    async def shutdown(self) -> None:
        """Stop every run (recorded as cancelled) and release the backend."""
        if not self._accepting:
            return
        self._accepting = False
        try:
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
        finally:
            capture_routing.release()
            await self.backend.close()

    # -- runs ------------------------------------------------------------------------------

    async def start_run(self, program_name: str, *, actor: str = "internal") -> ProgramRun:
        """Start a run of a stored program (queued until a slot is free).

        Raises:
            RunnerUnavailableError: the runner is not started.
            RunnerBusyError: no slot is free and the configuration rejects or the queue is full.
            ProgramNotFound, TemplateNotFound, TemplateUnavailableError: nothing to run.
            ProgramDataError: the stored data no longer matches the template.
            ProgramNotRunnable: the template needs what the backend lacks (NOVA).
        """
        slots = self._slots
        if not self._accepting or slots is None:
            raise RunnerUnavailableError(
                "the program runner is not running: start the app's lifespan (for tests: "
                "`with TestClient(app)`), or it is shutting down"
            )
        self._check_capacity()
        self._reserved += 1  # holds the place while the run is stored (no await before this)
        try:
            template, params = await _in_thread(self._validate, program_name)
            run = await _in_thread(
                self.history.create,
                program_name=program_name,
                template_name=template.name,
                backend=self.backend.name,
                runner=self.config.name,
                parameters=params.model_dump(mode="json"),
                actor=actor,
            )
        finally:
            self._reserved -= 1
        if run.id is None:  # never: a stored row has its id
            raise RunStateError("the run was stored without an id")
        if not self._accepting:  # the app began to shut down while the run was stored
            reason = "stopped: the app shut down"
            await _in_thread(
                self.history.finish, run.id, RunStatus.cancelled, actor=RUNNER_ACTOR, error=reason
            )
            raise RunnerUnavailableError("the program runner is shutting down")
        context = RunContext(
            run_id=run.id,
            program_name=program_name,
            template_name=template.name,
            backend=self.backend.name,
            parameters=params,
        )
        capture = RunCapture(
            limit=self.config.log_limit, level=self.config.log_level, echo=self.config.echo_output
        )
        job = _Job(run.id, ProgramCall(template, context), capture)
        self._jobs[run.id] = job
        # A fresh context: nothing of the caller's (an open transaction) leaks into the run.
        job.task = asyncio.get_running_loop().create_task(
            self._drive(job, slots), name=f"program-run-{run.id}", context=contextvars.Context()
        )
        logger.info("run %d of program %r queued by %s", run.id, program_name, actor)
        return run

    async def stop_run(self, run_id: int, *, actor: str = "internal") -> tuple[ProgramRun, bool]:
        """Stop a run: a queued one is cancelled at once, a running one is asked to stop.

        Returns:
            the run as it is now, and whether it has ended (else the stop is still going on).

        Raises:
            RunNotFound: no such run.
            RunStateError: it has already ended, or another runner has it.
        """
        job = self._jobs.get(run_id)
        if job is None or job.task is None:
            row = await _in_thread(self.history.get, run_id)
            if RunStatus(row.status).is_final:
                raise RunStateError(f"run {run_id} has already ended ({row.status})")
            raise RunStateError(
                f"run {run_id} is {row.status} but not handled by this process's runner "
                f"(runner {row.runner!r}); a crashed runner marks it failed when it starts again"
            )
        job.request_stop(actor, f"stopped by {actor}")
        timeout = None if not job.running else self.config.stop_wait
        await asyncio.wait({job.task}, timeout=timeout)
        return await _in_thread(self.get_run, run_id), job.task.done()

    async def wait_for_run(self, run_id: int, timeout: float | None = None) -> ProgramRun:
        """Wait until the run has ended (or ``timeout`` passed) and return it."""
        job = self._jobs.get(run_id)
        if job is not None and job.task is not None:
            await asyncio.wait({job.task}, timeout=timeout)
        return await _in_thread(self.get_run, run_id)

    def get_run(self, run_id: int) -> ProgramRun:
        """A run, with the logs and output so far while it is going on.

        Raises:
            RunNotFound: no such run.
        """
        job = self._jobs.get(run_id)
        row = self.history.get(run_id)
        return job.live(row) if job is not None else row

    def list_runs(
        self,
        *,
        program_name: str | None = None,
        statuses: Sequence[RunStatus] = (),
        limit: int | None = None,
        offset: int = 0,
    ) -> tuple[list[ProgramRun], int]:
        """Runs, newest first, filtered by program and status; and how many match in all."""
        rows, total = self.history.find(
            program_name=program_name, statuses=statuses, limit=limit, offset=offset
        )
        jobs = dict(self._jobs)
        return [jobs[r.id].live(r) if r.id in jobs else r for r in rows], total

    # -- internals -------------------------------------------------------------------------

    def _check_capacity(self) -> None:
        active = len(self._jobs) + self._reserved
        slots = self.config.max_concurrent
        if self.config.when_busy == "reject" and active >= slots:
            raise RunnerBusyError(
                f"a program is already running ({active} of {slots} slots taken); stop it or "
                "try again when it has ended"
            )
        if active >= slots + self.config.max_queued:
            raise RunnerBusyError(f"the run queue is full ({self.config.max_queued} waiting)")

    def _validate(self, program_name: str) -> tuple[Template, Any]:
        instance = self.store.get_program(program_name)
        template = self.store.usable_template(instance.template_name)
        params = template.validate(instance.data)
        check_runnable(template, self.backend.name, self.backend.resources)
        return template, params

    async def _drive(self, job: _Job, slots: asyncio.Semaphore) -> None:
        status, error, trace, result = RunStatus.completed, None, None, None
        try:
            async with slots:
                job.running = True
                await _in_thread(self.history.mark_running, job.run_id)
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
        job: _Job,
        status: RunStatus,
        actor: str | None,
        error: str | None,
        trace: str | None,
        result: Any,
    ) -> None:
        if self._jobs.get(job.run_id) is not job:
            return  # recorded already
        try:
            await _in_thread(
                self.history.finish,
                job.run_id,
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
            logger.info("run %d %s", job.run_id, status.value)
        except Exception:
            logger.exception("could not record the end of run %d", job.run_id)
        finally:
            self._jobs.pop(job.run_id, None)


async def _in_thread(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
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

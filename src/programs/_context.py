"""What a running program sees (:class:`RunContext`) and how its function is called.

A template function gets its validated parameters as its first parameter, as always. It can
ask for more by naming further parameters:

- ``ctx`` or ``context`` (or any name, annotated ``RunContext``): the :class:`RunContext`;
- ``nova`` and ``cell``: the opened ``nova.Nova`` and its cell, on the NOVA backend only.

A parameter the backend cannot fill keeps its default, so ``cell=None`` runs unchanged on the
local backend; without a default the run is refused up front (:class:`ProgramNotRunnable`).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel

from programs.errors import ProgramNotRunnable, RunCancelled
from programs.template import Template

__all__ = ["CONTEXT_NAMES", "NOVA_RESOURCES", "ProgramCall", "RunContext", "check_runnable"]

CONTEXT_NAMES = frozenset({"ctx", "context"})
NOVA_RESOURCES = frozenset({"nova", "cell"})
"""The parameter names only the NOVA backend fills."""

_SKIP = object()


class RunContext:
    """A run as its program sees it: who it is, a logger, the stop request, NOVA if there.

    The attributes mirror ``nova.ProgramContext`` (``nova``, ``cell``, ``program_id``), so
    code written for the SDK reads the same.

    Attributes:
        run_id: the run's id (``GET /runs/{run_id}``).
        program_name: the stored program that runs.
        template_name: its template.
        backend: ``local``, ``nova`` or a custom backend's name.
        parameters: the validated parameters (the template's model).
        logger: a logger whose records always reach the run's logs at the runner's level.
    """

    def __init__(
        self,
        *,
        run_id: int,
        program_name: str,
        template_name: str,
        backend: str,
        parameters: BaseModel,
    ) -> None:
        self.run_id = run_id
        self.program_name = program_name
        self.template_name = template_name
        self.backend = backend
        self.parameters = parameters
        self.logger = logging.getLogger(f"programs.run.{template_name}")
        self._stop = threading.Event()
        self._resources: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"RunContext(run_id={self.run_id}, program_name={self.program_name!r})"

    @property
    def program_id(self) -> str:
        """The template's name (what ``nova.ProgramContext.program_id`` holds)."""
        return self.template_name

    @property
    def nova(self) -> Any:
        """The opened ``nova.Nova`` on the NOVA backend; ``None`` elsewhere."""
        return self._resources.get("nova")

    @property
    def cell(self) -> Any:
        """The configured NOVA cell (``nova.cell(CELL_NAME)``); ``None`` elsewhere."""
        return self._resources.get("cell")

    @property
    def stop_requested(self) -> bool:
        """Whether someone asked the run to stop. Plain ``def`` templates must check it."""
        return self._stop.is_set()

    def raise_if_stopped(self) -> None:
        """Raise :class:`RunCancelled` once a stop was requested (the run ends cancelled)."""
        if self._stop.is_set():
            raise RunCancelled(f"run {self.run_id} was stopped")

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds, less when a stop is requested.

        For plain ``def`` templates: ``while not ctx.wait(0.5): ...``.

        Returns:
            whether a stop was requested.
        """
        return self._stop.wait(timeout)

    def request_stop(self) -> None:
        """Set the stop request (the runner calls this on ``POST /runs/{id}/stop``)."""
        self._stop.set()

    def attach(self, resources: Mapping[str, Any]) -> None:
        """Make a backend's resources (``nova``, ``cell``) available to the program."""
        self._resources = dict(resources)


def check_runnable(template: Template, backend: str, resources: frozenset[str]) -> None:
    """Refuse a template whose function asks for what ``backend`` does not provide.

    Raises:
        ProgramNotRunnable: a parameter without default cannot be filled.
    """
    _plan(template, backend, resources)


def _is_context(parameter: inspect.Parameter) -> bool:
    annotation = parameter.annotation
    return (
        parameter.name in CONTEXT_NAMES
        or annotation is RunContext
        or (isinstance(annotation, str) and annotation.rsplit(".", 1)[-1] == "RunContext")
    )


def _plan(template: Template, backend: str, resources: frozenset[str]) -> list[tuple[str, str]]:
    # (parameter name, what fills it): "params", "context", a resource name, or "" (default).
    plan: list[tuple[str, str]] = []
    params_given = False
    for parameter in inspect.signature(template.function).parameters.values():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        if _is_context(parameter):
            source = "context"
        elif parameter.name in resources:
            source = parameter.name
        elif not params_given and parameter.name not in NOVA_RESOURCES:
            source, params_given = "params", True
        elif parameter.default is not parameter.empty:
            source = ""
        else:
            raise ProgramNotRunnable(_unfillable(template, backend, parameter.name))
        plan.append((parameter.name, source))
    return plan


def _unfillable(template: Template, backend: str, name: str) -> str:
    if name in NOVA_RESOURCES:
        return (
            f"template {template.name!r} needs NOVA (its parameter {name!r}), and the runner "
            f"uses the {backend} backend: configure the nova backend, or give {name!r} a "
            "default to run without a robot"
        )
    return (
        f"template {template.name!r} has a parameter {name!r} the runner cannot fill: the "
        "first parameter gets the parameters, 'ctx' or 'context' the run context, and on "
        "NOVA 'nova' and 'cell' the connection and the cell"
    )


class ProgramCall:
    """One call of a template function for one run: what a backend executes.

    Args:
        template: the template whose function runs.
        context: the run's context (it holds the validated parameters).
    """

    def __init__(self, template: Template, context: RunContext) -> None:
        self.template = template
        self.context = context
        self._abandoned = asyncio.Event()

    async def invoke(self, **resources: Any) -> Any:
        """Call the function with the parameters, the context and ``resources``.

        ``async def`` functions run in the current task, so cancelling the task stops them.
        Plain functions run in their own daemon thread with a copy of the context: on
        cancellation the stop request is set and the call waits for the function to notice
        (``ctx.stop_requested``), unless the runner abandons it at shutdown.

        Raises:
            ProgramNotRunnable: the function asks for a resource that was not given.
            Exception: whatever the function raises.
        """
        self.context.attach(resources)
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        parameters = inspect.signature(self.template.function).parameters
        plan = _plan(self.template, self.context.backend, frozenset(resources))
        for name, source in plan:
            value = self._value(source, resources)
            if value is _SKIP:
                continue
            if parameters[name].kind is inspect.Parameter.POSITIONAL_ONLY:
                args.append(value)
            else:
                kwargs[name] = value
        call = functools.partial(self.template.function, *args, **kwargs)
        if self.template.is_async:
            return await call()
        return await self._in_thread(call)

    def abandon(self) -> None:
        """Stop waiting for a plain function that ignores the stop request (at shutdown)."""
        self._abandoned.set()

    def _value(self, source: str, resources: Mapping[str, Any]) -> Any:
        if source == "params":
            return self.context.parameters
        if source == "context":
            return self.context
        return resources[source] if source else _SKIP

    async def _in_thread(self, call: Callable[[], Any]) -> Any:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Any] = loop.create_future()
        # Marks the outcome as seen even when nobody awaits it any more (abandoned).
        done.add_done_callback(lambda future: future.cancelled() or future.exception())
        context = contextvars.copy_context()

        def settle(result: Any, error: BaseException | None) -> None:
            if done.done():
                return
            if error is None:
                done.set_result(result)
            else:
                done.set_exception(error)

        def target() -> None:
            result: Any = None
            error: BaseException | None = None
            try:
                result = context.run(call)
            except BaseException as exc:  # handed to the awaiting task, which re-raises it
                error = exc
            try:
                loop.call_soon_threadsafe(settle, result, error)
            except RuntimeError:  # the loop closed while the function ran (abandoned)
                pass

        name = f"program-run-{self.context.run_id}"
        threading.Thread(target=target, name=name, daemon=True).start()
        try:
            return await asyncio.shield(done)
        except asyncio.CancelledError:
            self.context.request_stop()
            abandoned = asyncio.ensure_future(self._abandoned.wait())
            try:
                await asyncio.wait({done, abandoned}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                abandoned.cancel()
            error = done.exception() if done.done() else None
            if error is not None and not isinstance(error, RunCancelled):
                raise error from None  # it failed while stopping: a failure, not a stop
            raise

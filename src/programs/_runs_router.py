"""``build_runs_router``: start, watch and stop program runs over HTTP.

Routes, under ``/api/v2`` by default::

    POST /programs/{program_name}/runs   start a run (202, the run; Location: /runs/{id})
    GET  /programs/{program_name}/runs   the program's runs, newest first
    GET  /runs                           every run, newest first
    GET  /runs/{run_id}                  one run, with its logs so far while it runs
    GET  /runs/{run_id}/logs             its output lines and log records, paged by ``seq``
    GET  /runs/{run_id}/events           Server-Sent Events: its state and lines, live
    GET  /runs/events                    Server-Sent Events: every run's changes of state
    POST /runs/{run_id}/stop             stop it (200 ended, 202 stop requested, 409 ended)

Every route works on every process of the cell, whichever process executes the run. Lists
take ``status`` (repeatable), ``limit`` and ``offset``; the total is in ``X-Total-Count``; they
leave out the output, the logs and the traceback (``GET /runs/{run_id}`` has them).
The ``X-User`` header of a start or stop is its audit actor, stored as ``started_by`` /
``stopped_by``; without it the router's ``default_actor`` (``"anonymous"``, or a 400 when the app
requires the header). The router's lifespan starts and stops the runner, so mounting
it with ``app.include_router`` is all the wiring an app needs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any, Literal

import anyio
import fastapi
from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import BaseModel, ConfigDict, Field

from programs._run_events import RunEvents
from programs._tables import NAME_LENGTH, ProgramRun, RunStatus
from programs.runner import Runner
from storage._auth import actor_dependency
from storage._endpoints import typed_endpoint
from storage._openapi import LOCATION, TOTAL_COUNT
from storage._streams import (
    STREAM_RESPONSES,
    After,
    EventStreamResponse,
    Follow,
    LastEventId,
    StreamRoute,
    change_stream,
    feed_position,
    parse_cursor,
    resume_after_in,
)
from storage.feed import get_feed
from storage.http import ANONYMOUS_ACTOR, RouteAuth, StorageRoute

__all__ = ["MAX_LIMIT", "MAX_LINES", "RunLineRead", "RunRead", "RunSummary", "build_runs_router"]

ProgramName = Annotated[
    str, Path(min_length=1, max_length=NAME_LENGTH, description="The program's name.")
]
RunId = Annotated[int, Path(ge=1, le=2**63 - 1, description="The run's id.")]
Statuses = Annotated[
    list[RunStatus] | None, Query(alias="status", description="Only runs in these states.")
]
MAX_LIMIT = 500
Limit = Annotated[
    int, Query(ge=1, le=MAX_LIMIT, description=f"Runs per page (at most {MAX_LIMIT}).")
]
Offset = Annotated[int, Query(ge=0, le=2**31, description="Runs to skip.")]
MAX_LINES = 10_000
AfterLine = Annotated[int, Query(ge=0, le=2**31, description="Only lines after this ``seq``.")]
LineLimit = Annotated[
    int, Query(ge=1, le=MAX_LINES, description=f"Lines per page (at most {MAX_LINES}).")
]
StreamFilter = Annotated[
    Literal["output", "log"] | None,
    Query(description="Only printed output, or only log records."),
]

# Lists always say how many runs match, over every page.
_COUNTED: dict[int | str, Any] = {
    200: {"headers": {"X-Total-Count": {**TOTAL_COUNT, "required": True}}}
}

_ERRORS: dict[int, str] = {
    200: "The run has ended (a queued run is cancelled at once)",
    202: "Stop requested: the run is still stopping (its function has not returned yet)",
    400: "The X-User header is missing",
    404: "No such program or run",
    409: "A run is going in the cell (or the queue is full), the run has ended, the template "
    "is not in the code or needs NOVA, the runner is not started, or no process executes "
    "programs in the cell",
    422: "The program's stored data no longer matches its template",
}


class RunSummary(BaseModel):
    """A program run, as lists show it: without its output, logs and traceback."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    program_name: str
    template_name: str
    backend: str = Field(description="local, nova, or a custom backend's name.")
    cell: str = Field(description="The robot cell it runs in.")
    status: RunStatus
    parameters: dict[str, Any] = Field(description="The parameters the run was started with.")
    result: Any = Field(default=None, description="What the function returned (JSON-safe).")
    error: str | None = Field(default=None, description="Why it failed, or who or what stopped it.")
    runner: str = Field(description="The process that accepted the start (host:pid:start).")
    owner: str | None = Field(
        default=None, description="The process that executes (or executed) it."
    )
    started_by: str
    stopped_by: str | None = None
    created_at: datetime
    started_at: datetime | None = None
    stop_requested_at: datetime | None = None
    finished_at: datetime | None = None


class RunRead(RunSummary):
    """A program run, with what it printed and logged."""

    traceback: str | None = None
    logs: str = Field(description="Log records, one a line; so far while the run goes on.")
    output: str = Field(description="What the program printed; so far while it goes on.")


class RunLineRead(BaseModel):
    """A piece of a run's output (a printed line) or one of its log records."""

    model_config = ConfigDict(from_attributes=True)

    seq: int = Field(description="Its place in the run; pass the last one seen as ``after``.")
    stream: Literal["output", "log"]
    text: str
    created_at: datetime


def _responses(*codes: int) -> dict[int | str, Any]:
    return {code: {"description": _ERRORS[code]} for code in codes}


# Endpoint (a method of _RunRoutes): HTTP method, path, operation id, the guards it takes
# (RouteAuth's read or write), and its options; in the order they are matched.
_ROUTES: dict[str, tuple[str, str, str, str, dict[str, Any]]] = {
    "start_run": (
        "POST",
        "/programs/{program_name}/runs",
        "start_run",
        "write",
        {
            "status_code": 202,
            "response_model": RunRead,
            "responses": {
                **_responses(400, 404, 409, 422),
                202: {"headers": {"Location": LOCATION}},
            },
        },
    ),
    "list_program_runs": (
        "GET",
        "/programs/{program_name}/runs",
        "list_program_runs",
        "read",
        {"responses": _COUNTED},
    ),
    "list_runs": ("GET", "/runs", "list_runs", "read", {"responses": _COUNTED}),
    # Before "/runs/{run_id}", which would take "events" for an id.
    "all_run_events": (
        "GET",
        "/runs/events",
        "stream_all_run_events",
        "read",
        {
            "response_class": Response,
            "responses": STREAM_RESPONSES,
            "route_class_override": StreamRoute,
        },
    ),
    "run_events": (
        "GET",
        "/runs/{run_id}/events",
        "stream_run_events",
        "read",
        {"response_class": EventSourceResponse, "responses": _responses(404)},
    ),
    "get_run": ("GET", "/runs/{run_id}", "get_run", "read", {"responses": _responses(404)}),
    "get_run_lines": (
        "GET",
        "/runs/{run_id}/logs",
        "get_run_lines",
        "read",
        {"responses": _responses(404)},
    ),
    "stop_run": (
        "POST",
        "/runs/{run_id}/stop",
        "stop_run",
        "write",
        {
            "response_model": RunRead,
            "responses": {
                **_responses(200, 400, 404, 409),
                202: {"description": _ERRORS[202], "model": RunRead},
            },
        },
    ),
}


def build_runs_router(
    runner: Runner,
    *,
    prefix: str = "/api/v2",
    auth: RouteAuth | None = None,
    default_limit: int = 50,
    tags: list[str] | None = None,
    default_actor: str | None = ANONYMOUS_ACTOR,
) -> APIRouter:
    """The run routes of ``runner`` (see the module docstring); its lifespan runs the runner.

    Args:
        runner: the runner that starts and stops runs.
        prefix: where the routes live.
        auth: ``read`` guards the GET routes, ``write`` starting and stopping.
        default_limit: runs per page when ``limit`` is not given (at most 500 are accepted).
        tags: OpenAPI tags; default ``["program runs"]``.
        default_actor: who starts or stops a run when the client sends no ``X-User``;
            ``None`` requires the header (400 without).
    """
    routes = _RunRoutes(runner)
    guard = auth or RouteAuth()
    router = APIRouter(
        prefix=prefix,
        tags=list(tags or ["program runs"]),
        route_class=StorageRoute,
        lifespan=runner.lifespan,
    )
    guards = {"read": list(guard.read), "write": list(guard.write)}
    actor = {"actor": (str, fastapi.Depends(actor_dependency(default_actor)))}
    limit = {"limit": (Limit, default_limit)}
    types: dict[str, dict[str, Any]] = {
        "start_run": actor,
        "stop_run": actor,
        "list_program_runs": limit,
        "list_runs": limit,
        "run_events": {"start": (tuple[int, int], fastapi.Depends(routes.run_cursor))},
        "all_run_events": {"start": (int, fastapi.Depends(routes.resume_after))},
    }
    for name, (method, path, operation_id, kind, options) in _ROUTES.items():
        router.add_api_route(
            path,
            typed_endpoint(getattr(routes, name), **types.get(name, {})),
            methods=[method],
            dependencies=guards[kind],
            operation_id=operation_id,
            **options,
        )
    return router


class _RunRoutes:
    """The endpoint bodies; ``build_runs_router`` registers them, with its actor dependency,
    its ``default_limit``, and :meth:`run_cursor` and :meth:`resume_after` as the dependencies
    of the streams; they read the runner's database."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self.events = RunEvents(runner, RunSummary, RunLineRead)

    # -- starting and stopping -------------------------------------------------------------

    async def start_run(self, request: Request, program_name: ProgramName, actor: str) -> Response:
        """Start a run of the program with its stored parameters; it runs in the background."""
        run = await self.runner.start_run(program_name, actor=actor)
        location = str(request.url_for("get_run", run_id=run.id))
        return _respond(run, 202, {"Location": location})

    async def stop_run(self, run_id: RunId, actor: str) -> Response:
        """Stop a run: a queued run is cancelled at once; a running one is cancelled and the
        answer waits a moment for it to end (202 when it has not yet)."""
        run, ended = await self.runner.stop_run(run_id, actor=actor)
        return _respond(run, 200 if ended else 202)

    # -- reads -----------------------------------------------------------------------------

    def list_program_runs(
        self,
        response: Response,
        program_name: ProgramName,
        status: Statuses = None,
        limit: Limit = 50,  # build_runs_router's default_limit
        offset: Offset = 0,
    ) -> list[RunSummary]:
        """The runs of one program, newest first (also those of a deleted program)."""
        rows, total = self.runner.list_runs(
            program_name=program_name, statuses=status or (), limit=limit, offset=offset
        )
        response.headers["X-Total-Count"] = str(total)
        return [RunSummary.model_validate(row) for row in rows]

    def list_runs(
        self,
        response: Response,
        status: Statuses = None,
        limit: Limit = 50,  # build_runs_router's default_limit
        offset: Offset = 0,
    ) -> list[RunSummary]:
        """Every run, newest first."""
        rows, total = self.runner.list_runs(statuses=status or (), limit=limit, offset=offset)
        response.headers["X-Total-Count"] = str(total)
        return [RunSummary.model_validate(row) for row in rows]

    def get_run(self, run_id: RunId) -> RunRead:
        """One run; while it goes on, with its logs and output so far."""
        return RunRead.model_validate(self.runner.get_run(run_id))

    def get_run_lines(
        self,
        run_id: RunId,
        after: AfterLine = 0,
        limit: LineLimit = 1000,
        stream: StreamFilter = None,
    ) -> list[RunLineRead]:
        """The run's printed lines and log records in order, from ``seq`` ``after`` on; written
        while it runs (every ``flush_interval``), so another server sees them too."""
        lines = self.runner.run_lines(run_id, after=after, limit=limit, stream=stream)
        return [RunLineRead.model_validate(line) for line in lines]

    # -- streams ---------------------------------------------------------------------------

    async def run_cursor(self, run_id: RunId, last_event_id: LastEventId = None) -> tuple[int, int]:
        # Where a run's stream starts ("<audit id>.<line seq>", else now and its first line):
        # checked, with the run's existence, before the stream starts (422, 404, 503).
        resume = parse_cursor(last_event_id, parts=2)
        head = await feed_position(self.runner.database)
        await anyio.to_thread.run_sync(self.runner.history.get, run_id)
        return (resume[0], resume[1]) if resume else (head, 0)

    async def resume_after(self, after: After = None, last_event_id: LastEventId = None) -> int:
        # Where the stream of every run starts, in the runner's database's audit log.
        return await resume_after_in(self.runner.database)(after, last_event_id)

    async def all_run_events(self, start: int, follow: Follow = True) -> EventStreamResponse:
        """Server-Sent Events: a ``status`` event each time a run is queued, starts, is asked
        to stop or ends, on any server; ``data`` is the run as lists show it. Resumable with
        ``Last-Event-ID`` (the audit id)."""
        return change_stream(
            get_feed(self.runner.database),
            after=start,
            components=[self.events.component],
            follow=follow,
            shape=self.events.status_event,
        )

    async def run_events(
        self, run_id: RunId, start: tuple[int, int]
    ) -> AsyncIterator[ServerSentEvent]:
        """Server-Sent Events of one run, from any server: ``status`` (the run as lists show
        it), then ``output`` and ``log`` lines as they are written and each change of state;
        the stream ends after the final state. Resumable with ``Last-Event-ID``."""
        async for event in self.events.of_run(run_id, *start):
            yield event


def _respond(run: ProgramRun, status_code: int, headers: dict[str, str] | None = None) -> Response:
    body = RunRead.model_validate(run).model_dump(mode="json")
    return JSONResponse(body, status_code=status_code, headers=headers)

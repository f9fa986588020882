"""Run events: what runs do, as Server-Sent Events, from whichever server runs them.

Both streams are built on the change feed (:mod:`storage.feed`), since every change of a run
is an audited write, and so work on every server of the database:

- ``GET /runs/events``: ``status`` events, one each time a run changes state (queued, running,
  ended) or is asked to stop; ``data`` is the run as lists show it. ``id`` is the audit id:
  resume with ``Last-Event-ID``.
- ``GET /runs/{run_id}/events``: one run: its state first, then its output and log lines as they
  are written (``output`` and ``log`` events, ``data`` a line with its ``seq``) and each change
  of state; it ends after the final state, once every line is sent. ``id`` is
  ``"<audit id>.<line seq>"``: resume with ``Last-Event-ID`` (a run that has ended sends its
  remaining lines and its final state again, then ends).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi.sse import ServerSentEvent
from pydantic import BaseModel

from programs._lines import read_lines
from programs._tables import ProgramRun, ProgramRunLine, RunStatus
from programs.runner import Runner
from storage._streams import RETRY_MS
from storage.changes import RESET, ChangeEvent
from storage.feed import get_feed

__all__ = ["RunEvents"]

_PAGE = 1000


class RunEvents:
    """The run streams of one runner.

    Args:
        runner: whose runs (its database's change feed, its history's audit component, its
            ``flush_interval``).
        summary: the model a run is sent as (``RunSummary``).
        line: the model a line is sent as (``RunLineRead``).
    """

    def __init__(self, runner: Runner, summary: type[BaseModel], line: type[BaseModel]) -> None:
        self.runner = runner
        self.summary = summary
        self.line = line
        self.component = runner.history.runs.component

    def status_event(self, event: ChangeEvent) -> ServerSentEvent | None:
        """The ``status`` event of a change of a run; ``None`` for changes that are not one."""
        if event.operation == RESET:
            return ServerSentEvent(event=RESET, id=str(event.id), raw_data="{}")
        before, after = event.before or {}, event.after
        if after is None or event.component != self.component:
            return None
        if before and all(before.get(key) == after.get(key) for key in _STATE):
            return None  # bookkeeping (a claim of the owner, a heartbeat)
        data = self.summary.model_validate(after).model_dump_json()
        return ServerSentEvent(event="status", id=str(event.id), raw_data=data)

    async def of_run(self, run_id: int, audit: int, seq: int) -> AsyncIterator[ServerSentEvent]:
        """The events of one run after audit id ``audit`` and line ``seq`` (see the module
        docstring)."""
        # The run is read after the feed's position was fixed: a change made in between is
        # then sent twice (harmless: it is a state), never lost.
        run: ProgramRun | dict[str, Any] = await asyncio.to_thread(self.runner.history.get, run_id)
        yield ServerSentEvent(comment="ready", retry=RETRY_MS)
        changes: asyncio.Queue[ChangeEvent] = asyncio.Queue()
        pump = asyncio.ensure_future(self._pump(run_id, audit, changes))
        try:
            final = _is_final(run)
            if not final:
                yield self._state(run, f"{audit}.{seq}")
            while True:
                lines = await asyncio.to_thread(
                    read_lines, self.runner.database, run_id, after=seq, limit=_PAGE
                )
                for line in lines:
                    seq = line.seq
                    yield self._line_event(line, audit)
                if len(lines) == _PAGE:
                    continue
                if final:
                    yield self._state(run, f"{audit}.{seq}")
                    return
                change = await self._next_change(changes)
                if change is None:
                    if pump.done():  # the feed closed: the server is stopping
                        return
                    continue
                audit = change.id
                if change.operation == RESET:
                    yield ServerSentEvent(event=RESET, id=f"{audit}.{seq}", raw_data="{}")
                    return
                if self.status_event(change) is None or change.after is None:
                    continue
                run, final = change.after, _is_final(change.after)
                if not final:  # the final state goes last, after the lines
                    yield self._state(run, f"{audit}.{seq}")
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump

    def _state(self, run: ProgramRun | dict[str, Any], id: str) -> ServerSentEvent:
        data = self.summary.model_validate(run).model_dump_json()
        return ServerSentEvent(event="status", id=id, raw_data=data)

    def _line_event(self, line: ProgramRunLine, audit: int) -> ServerSentEvent:
        data = self.line.model_validate(line).model_dump_json()
        return ServerSentEvent(event=line.stream, id=f"{audit}.{line.seq}", raw_data=data)

    async def _next_change(self, states: asyncio.Queue[ChangeEvent]) -> ChangeEvent | None:
        try:
            return await asyncio.wait_for(states.get(), self.runner.config.flush_interval)
        except TimeoutError:
            return None  # look for new lines

    async def _pump(self, run_id: int, after: int, states: asyncio.Queue[ChangeEvent]) -> None:
        record = str(run_id)
        feed = get_feed(self.runner.database)
        async for event in feed.subscribe(after=after, components=[self.component]):
            if event.operation == RESET or event.record_id == record:
                await states.put(event)


_STATE = ("status", "stop_requested_at")
"""The columns whose change is a ``status`` event."""


def _is_final(run: ProgramRun | dict[str, Any]) -> bool:
    status = run["status"] if isinstance(run, dict) else run.status
    return RunStatus(status).is_final

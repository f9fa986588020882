"""``RunHistory``: the ``program_runs`` table, read and written through an audited accessor.

Every change of a run is one audited write: created ``queued`` by the actor who started it,
``running`` and the final status by the runner (``actor="runner"``), or by whoever stopped it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement
from sqlmodel import col

from programs.errors import RunNotFound
from programs.tables import ProgramRun, RunStatus
from storage.accessor import ModelAccessor
from storage.auditor import utcnow

__all__ = ["ACTIVE", "RUNNER_ACTOR", "RunHistory"]

RUNNER_ACTOR = "runner"
"""The audit actor of the changes the runner makes on its own."""

ACTIVE = (RunStatus.queued.value, RunStatus.running.value)


class RunHistory:
    """The stored runs.

    Args:
        component: the audit-log component of run rows.
    """

    def __init__(self, component: str = "program_runs") -> None:
        self.runs: ModelAccessor[ProgramRun] = ModelAccessor(ProgramRun, component)

    def __repr__(self) -> str:
        return f"RunHistory({self.runs.component!r})"

    def create(
        self,
        *,
        program_name: str,
        template_name: str,
        backend: str,
        runner: str,
        parameters: dict[str, Any],
        actor: str,
    ) -> ProgramRun:
        """Store a new ``queued`` run started by ``actor``."""
        row = ProgramRun(
            program_name=program_name,
            template_name=template_name,
            backend=backend,
            runner=runner,
            status=RunStatus.queued.value,
            parameters=parameters,
            started_by=actor,
            created_at=utcnow(),
        )
        return self.runs.insert(row, actor=actor)

    def mark_running(self, run_id: int) -> None:
        """The run got its slot and starts now."""
        self.runs.update(
            run_id, actor=RUNNER_ACTOR, status=RunStatus.running.value, started_at=utcnow()
        )

    def finish(self, run_id: int, status: RunStatus, *, actor: str, **fields: Any) -> None:
        """Record how the run ended (``fields``: error, traceback, result, output, logs, ...)."""
        self.runs.update(run_id, actor=actor, status=status.value, finished_at=utcnow(), **fields)

    def get(self, run_id: int) -> ProgramRun:
        """The run with this id.

        Raises:
            RunNotFound: there is none.
        """
        row = self.runs.get(run_id)
        if row is None:
            raise RunNotFound(f"run {run_id} not found")
        return row

    def find(
        self,
        *,
        program_name: str | None = None,
        statuses: Sequence[RunStatus] = (),
        limit: int | None = None,
        offset: int = 0,
    ) -> tuple[list[ProgramRun], int]:
        """Runs matching the filters, newest first, and how many match in all."""
        conditions = self._conditions(program_name, statuses)
        rows = self.runs.find_ordered(
            *conditions, order=[col(ProgramRun.id).desc()], limit=limit, offset=offset
        )
        return rows, self.runs.count(*conditions)

    def recover(self, runner: str) -> list[int]:
        """Mark as failed the runs ``runner`` left queued or running (it crashed, was killed).

        Returns:
            the ids of the runs that were marked.
        """
        rows = self.runs.find(col(ProgramRun.status).in_(ACTIVE), col(ProgramRun.runner) == runner)
        recovered: list[int] = []
        for row in rows:
            if row.id is None:  # never for a stored row; keeps the type checker honest
                continue
            self.finish(
                row.id,
                RunStatus.failed,
                actor=RUNNER_ACTOR,
                error=(
                    f"the app stopped while this run was {row.status} (a crash or a kill); "
                    "it was marked failed when the runner started again"
                ),
            )
            recovered.append(row.id)
        return recovered

    @staticmethod
    def _conditions(
        program_name: str | None, statuses: Sequence[RunStatus]
    ) -> list[ColumnElement[bool]]:
        conditions: list[ColumnElement[bool]] = []
        if program_name is not None:
            conditions.append(col(ProgramRun.program_name) == program_name)
        if statuses:
            values = [RunStatus(status).value for status in statuses]
            conditions.append(col(ProgramRun.status).in_(values))
        return conditions

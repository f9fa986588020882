"""``RunHistory``: the ``program_runs`` table, read and written through an audited accessor.

Every change of a run is one audited write (made by :class:`programs._cells.CellLedger`):
created ``queued`` by the actor who started it, ``running`` and the final status by the runner
(``actor="runner"``), the stop request and the final status by whoever stopped it.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import ColumnElement
from sqlmodel import col

from programs._tables import ProgramRun, RunStatus
from programs.errors import RunNotFound
from storage.accessor import ModelAccessor
from storage.database import Database
from storage.errors import require_found

__all__ = ["ACTIVE", "RUNNER_ACTOR", "RunHistory"]

RUNNER_ACTOR = "runner"
"""The audit actor of the changes the runner makes on its own."""

ACTIVE = (RunStatus.queued.value, RunStatus.running.value)


class RunHistory:
    """The stored runs.

    Args:
        component: the audit-log component of run rows.
        database: the database of the runs; default :func:`storage.database.get_database`,
            at the time of each call.
    """

    def __init__(self, component: str = "program_runs", database: Database | None = None) -> None:
        self.runs: ModelAccessor[ProgramRun] = ModelAccessor(
            ProgramRun, component, database=database
        )

    def __repr__(self) -> str:
        return f"RunHistory({self.runs.component!r})"

    @property
    def database(self) -> Database:
        """The database of the runs (see :attr:`storage.accessor.ModelAccessor.database`)."""
        return self.runs.database

    def get(self, run_id: int) -> ProgramRun:
        """The run with this id.

        Raises:
            RunNotFound: there is none.
        """
        return require_found(self.runs.get(run_id), RunNotFound(f"run {run_id} not found"))

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

    def get_for_update(self, run_id: int) -> ProgramRun:
        """The run with this id, locked until the current transaction ends.

        Raises:
            RunNotFound: there is none.
        """
        row = self.runs.get_for_update(run_id)
        return require_found(row, RunNotFound(f"run {run_id} not found"))

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

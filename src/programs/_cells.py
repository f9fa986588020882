"""``CellLedger``: the database's record of a cell, and every change to it, made atomically.

Every process serving a cell (app servers, workers, on any machine) keeps its runner state in
the database, never only in memory:

- **One program per cell slot.** A running run holds a ``slot`` (``0 .. max_concurrent-1``);
  the unique index on ``program_runs (cell, slot)`` makes the database refuse a second running
  run in a slot, whatever the processes believe. Starts and claims also take the cell's row
  lock (``SELECT ... FOR UPDATE`` on PostgreSQL and MariaDB; SQLite's ``BEGIN IMMEDIATE``
  serialises writers), so counting and inserting are one atomic step.
- **The queue is rows.** A start inserts a ``queued`` run; an executing process claims the
  oldest one when it has a free slot (``FOR UPDATE SKIP LOCKED``, so a stop that holds a queued
  row is passed over, never waited for).
- **Leases.** Each process renews a lease on itself and on the runs it executes; the runs of a
  process that is gone are ended by the live ones (:class:`programs._leases.CellLeases`, which
  the ledger extends).
- **Wake-ups.** Every change bumps the cell's ``version`` (what idle runners poll) and, on
  PostgreSQL, sends ``NOTIFY machine_storage_runs, '<cell>'`` when it commits.

Run rows change through the audited accessor (created, running, stop requested, ended);
heartbeats do not, they are bookkeeping.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlmodel import Session, col

from programs._history import RUNNER_ACTOR
from programs._leases import CHANNEL, CellLeases, Instance, database_now, lock_cell, signal
from programs._tables import ProgramCell, ProgramRun, RunStatus
from programs.errors import RunnerBusyError, RunnerUnavailableError, RunStateError
from storage._retries import retry_on_deadlock
from storage.auditor import utcnow

__all__ = ["CHANNEL", "CellLedger", "Instance", "StopOutcome"]

_RUNNING = RunStatus.running.value
_QUEUED = RunStatus.queued.value


@dataclass(frozen=True)
class StopOutcome:
    """What a stop request did: ``run`` as it is now; ``ended`` when it was queued (and so
    cancelled at once)."""

    run: ProgramRun
    ended: bool


class CellLedger(CellLeases):
    """The database operations of one process's runner in its cell. Every method runs one
    short transaction and may be called from any thread (never from an event loop).

    Args:
        config: the runner's configuration (cell, slots, queueing, lease).
        history: the audited run rows; the ledger works on their database.
        instance: this process.
    """

    def __repr__(self) -> str:
        return f"CellLedger(cell={self.cell!r}, instance={self.instance.id!r})"

    # -- runs ------------------------------------------------------------------------------

    @retry_on_deadlock
    def enqueue(
        self,
        *,
        program_name: str,
        template_name: str,
        backend: str,
        parameters: dict[str, Any],
        actor: str,
    ) -> ProgramRun:
        """Store a new ``queued`` run in the cell, if the cell takes it.

        Raises:
            RunnerUnavailableError: no live process executes programs in the cell.
            RunnerBusyError: every slot is taken (``reject``), or the queue is full.
        """
        slots = self.config.max_concurrent
        with self.database.transaction(savepoints=False) as session:
            lock_cell(session, self.cell)
            now = database_now(session)
            if not self.config.execute and not self._executors_alive(session, now, self.cell):
                raise RunnerUnavailableError(
                    f"no process executes programs in cell {self.cell!r}: start a worker (or "
                    "an app server whose runner executes) for this cell"
                )
            running, queued = self._counts(session)
            if self.config.when_busy == "reject" and running + queued >= slots:
                raise RunnerBusyError(
                    f"a program is already running in cell {self.cell!r} ({running + queued} of "
                    f"{slots} slots taken); stop it or try again when it has ended"
                )
            if running + queued >= slots and queued >= self.config.max_queued:
                raise RunnerBusyError(
                    f"the run queue is full in cell {self.cell!r} "
                    f"({self.config.max_queued} waiting)"
                )
            run = self.history.runs.insert(
                ProgramRun(
                    program_name=program_name,
                    template_name=template_name,
                    backend=backend,
                    runner=self.instance.id,
                    cell=self.cell,
                    status=_QUEUED,
                    parameters=parameters,
                    started_by=actor,
                    created_at=utcnow(),
                ),
                actor=actor,
            )
            signal(session, self.cell)
        return run

    @retry_on_deadlock
    def claim(self) -> ProgramRun | None:
        """Take the oldest queued run of the cell into a free slot, for this process.

        Returns:
            the run, now ``running`` and owned by this process; ``None`` when no slot is free
            or nothing is queued.
        """
        with self.database.transaction(savepoints=False) as session:
            lock_cell(session, self.cell)
            taken = set(
                session.scalars(
                    select(col(ProgramRun.slot)).where(
                        col(ProgramRun.cell) == self.cell, col(ProgramRun.slot).is_not(None)
                    )
                )
            )
            free = [slot for slot in range(self.config.max_concurrent) if slot not in taken]
            if not free:
                return None
            oldest = session.scalars(
                select(ProgramRun)
                .where(col(ProgramRun.cell) == self.cell, col(ProgramRun.status) == _QUEUED)
                .order_by(col(ProgramRun.id))
                .limit(1)
                .with_for_update(skip_locked=True)
            ).first()
            if oldest is None:
                return None
            now = database_now(session)
            run = self.history.runs.update(
                oldest.id,
                actor=RUNNER_ACTOR,
                status=_RUNNING,
                started_at=utcnow(),
                owner=self.instance.id,
                slot=free[0],
                heartbeat_at=now,
            )
            signal(session, self.cell)
        return run

    @retry_on_deadlock
    def request_stop(self, run_id: int, actor: str) -> StopOutcome:
        """Record a stop request: a queued run is cancelled at once, a running one is marked
        for its process to stop (who asked first is kept).

        Raises:
            RunNotFound: no such run.
            RunStateError: it has already ended.
        """
        with self.database.transaction(savepoints=False) as session:
            row = self.history.get_for_update(run_id)
            status = RunStatus(row.status)
            if status.is_final:
                raise RunStateError(f"run {run_id} has already ended ({row.status})")
            now = utcnow()
            if status is RunStatus.queued:
                run = self.history.runs.update(
                    run_id,
                    actor=actor,
                    status=RunStatus.cancelled.value,
                    stopped_by=actor,
                    stop_requested_at=now,
                    finished_at=now,
                    error=f"stopped by {actor}",
                )
                ended = True
            elif row.stop_requested_at is None:
                run = self.history.runs.update(
                    run_id, actor=actor, stopped_by=actor, stop_requested_at=now
                )
                ended = False
            else:
                run, ended = row, False
            signal(session, row.cell)
        return StopOutcome(run=run or row, ended=ended)

    def stop_requests(self) -> list[ProgramRun]:
        """This process's running runs that someone asked to stop."""
        with self.database.read_session() as session:
            return list(
                session.scalars(
                    select(ProgramRun).where(
                        col(ProgramRun.owner) == self.instance.id,
                        col(ProgramRun.status) == _RUNNING,
                        col(ProgramRun.stop_requested_at).is_not(None),
                    )
                )
            )

    @retry_on_deadlock
    def finish(self, /, run_id: int, status: RunStatus, *, actor: str, **fields: Any) -> bool:
        """Record how a run of this process ended and free its slot.

        Returns:
            ``False`` when the run is no longer this process's (another process ended it
            after this one missed its heartbeats); nothing is written then.
        """
        with self.database.transaction(savepoints=False) as session:
            row = self.history.get_for_update(run_id)
            if row.status != _RUNNING or row.owner != self.instance.id:
                return False
            if row.stop_requested_at is not None:  # who asked first stays on record
                fields.pop("stopped_by", None)
                fields.pop("stop_requested_at", None)
            self.history.runs.update(
                run_id, actor=actor, status=status.value, finished_at=utcnow(), slot=None, **fields
            )
            signal(session, row.cell)
        return True

    def version(self) -> int:
        """The cell's change counter (what idle runners poll)."""
        with self.database.read_session() as session:
            found = session.scalar(
                select(col(ProgramCell.version)).where(col(ProgramCell.name) == self.cell)
            )
            return int(found or 0)

    def _counts(self, session: Session) -> tuple[int, int]:
        rows = session.execute(
            select(col(ProgramRun.status), func.count())
            .where(
                col(ProgramRun.cell) == self.cell, col(ProgramRun.status).in_([_RUNNING, _QUEUED])
            )
            .group_by(col(ProgramRun.status))
        ).all()
        counts = {status: int(count) for status, count in rows}
        return counts.get(_RUNNING, 0), counts.get(_QUEUED, 0)

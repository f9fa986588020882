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
- **Leases.** Each process has an instance id (host, pid, start time) and a row in
  ``program_runners`` whose heartbeat it renews, together with the heartbeat of every run it
  executes. A run whose heartbeat is older than the lease timeout is ended ``failed`` by any
  other live process, and its slot is free again; so is a run whose process, on this host, no
  longer exists. Times come from the database's clock, so machines whose clocks differ agree.
- **Wake-ups.** Every change bumps the cell's ``version`` (what idle runners poll) and, on
  PostgreSQL, sends ``NOTIFY machine_storage_runs, '<cell>'`` when it commits.

Run rows change through the audited accessor (created, running, stop requested, ended);
heartbeats do not, they are bookkeeping.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Table, and_, delete, func, or_, select, text, update
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlmodel import Session, col

from programs._config import RunnerConfig
from programs._history import RUNNER_ACTOR, RunHistory
from programs._tables import ProgramCell, ProgramRun, RunnerInstance, RunStatus
from programs.errors import RunnerBusyError, RunnerUnavailableError, RunStateError
from storage._processes import is_running
from storage._retries import retry_on_deadlock
from storage.auditor import utcnow
from storage.database import Database

__all__ = ["CHANNEL", "CellLedger", "Instance", "StopOutcome"]

CHANNEL = "machine_storage_runs"
"""The PostgreSQL ``NOTIFY`` channel; the payload is the cell's name."""

_RUNNING = RunStatus.running.value
_QUEUED = RunStatus.queued.value


@dataclass(frozen=True)
class Instance:
    """This process, as other processes see it: ``id`` is ``host:pid:start-ms``."""

    id: str
    host: str
    pid: int

    @classmethod
    def this_process(cls, label: str | None = None) -> Instance:
        """A new identity for the current process (``label`` replaces the host name in it)."""
        host = socket.gethostname()[:60]
        name = (label or host)[:60]
        return cls(id=f"{name}:{os.getpid()}:{_start_stamp()}", host=host, pid=os.getpid())


class _Stamps:
    lock = threading.Lock()
    last = 0


def _start_stamp() -> int:
    # Milliseconds since the epoch, never the same twice in a process: two runners started in
    # one millisecond (apps built one after another, as tests do) get distinct ids.
    with _Stamps.lock:
        _Stamps.last = max(int(time.time() * 1000), _Stamps.last + 1)
        return _Stamps.last


@dataclass(frozen=True)
class StopOutcome:
    """What a stop request did: ``run`` as it is now; ``ended`` when it was queued (and so
    cancelled at once)."""

    run: ProgramRun
    ended: bool


def process_is_gone(owner: str | None, host: str) -> bool:
    """Whether ``owner`` (an instance id) names a process on ``host`` that no longer exists."""
    parts = (owner or "").rsplit(":", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return False
    label, pid = parts[0], int(parts[1])
    if label != host[:60] or pid == os.getpid():
        return False
    return not is_running(pid)


class CellLedger:
    """The database operations of one process's runner in its cell. Every method runs one
    short transaction and may be called from any thread (never from an event loop).

    Args:
        config: the runner's configuration (cell, slots, queueing, lease).
        history: the audited run rows; the ledger works on their database.
        instance: this process.
    """

    def __init__(self, config: RunnerConfig, history: RunHistory, instance: Instance) -> None:
        self.config = config
        self.cell = config.cell
        self.history = history
        self.instance = instance

    def __repr__(self) -> str:
        return f"CellLedger(cell={self.cell!r}, instance={self.instance.id!r})"

    @property
    def database(self) -> Database:
        """The database of the cell: its history's, so that the run rows the history writes
        join the ledger's transactions."""
        return self.history.database

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.config.lease_timeout)

    # -- this process ----------------------------------------------------------------------

    @retry_on_deadlock
    def register(self) -> list[int]:
        """Make sure the cell exists and announce this process (its first heartbeat).

        When this process executes programs and no other live process does, the runs queued
        in the cell were left by processes that are gone: they end ``failed`` rather than
        start long after they were asked for (a machine that was switched off, say).

        Returns:
            the ids of those runs.
        """
        with self.database.transaction(savepoints=False) as session:
            _lock_cell(session, self.cell)
            now = database_now(session)
            left: list[int] = []
            alone = not self._others_execute(session, now, self.cell)
            if self.config.recover and self.config.execute and alone:
                reason = (
                    f"no process executed programs in cell {self.cell!r} when it was queued "
                    "(its server stopped); it was not run when the cell started again"
                )
                left = self._end_queued(session, self.cell, RunStatus.failed, reason)
            self._announce(session, now)
        return left

    @retry_on_deadlock
    def heartbeat(self, executing: Sequence[int]) -> set[int]:
        """Renew this process's lease and that of its runs.

        Args:
            executing: the runs this process is executing.

        Returns:
            those of them that are no longer this process's running runs (another process
            ended them after this one missed its heartbeats): they must be stopped at once.
        """
        with self.database.transaction(savepoints=False) as session:
            now = database_now(session)
            renewed = session.execute(
                update(RunnerInstance)
                .where(col(RunnerInstance.id) == self.instance.id)
                .values(heartbeat_at=now)
            )
            if not getattr(renewed, "rowcount", 1):  # taken for dead meanwhile: here again
                self._announce(session, now)
            mine = and_(
                col(ProgramRun.owner) == self.instance.id, col(ProgramRun.status) == _RUNNING
            )
            session.execute(update(ProgramRun).where(mine).values(heartbeat_at=now))
            held = set(session.scalars(select(col(ProgramRun.id)).where(mine)))
        return {run_id for run_id in executing if run_id not in held}

    def _announce(self, session: Session, now: datetime) -> None:
        # merge: a runner started again (a second lifespan of the same app, as test clients
        # run) takes over its row if a shutdown did not remove it.
        session.merge(
            RunnerInstance(
                id=self.instance.id,
                cell=self.cell,
                host=self.instance.host,
                pid=self.instance.pid,
                executes=self.config.execute,
                slots=self.config.max_concurrent,
                started_at=now,
                heartbeat_at=now,
            )
        )

    @retry_on_deadlock
    def unregister(self) -> list[int]:
        """Leave the cell (a clean shutdown). When no other process executes its programs,
        its queued runs are cancelled: nobody would run them.

        Returns:
            the ids of the cancelled queued runs.
        """
        with self.database.transaction(savepoints=False) as session:
            session.execute(
                delete(RunnerInstance).where(col(RunnerInstance.id) == self.instance.id)
            )
            if self._others_execute(session, database_now(session), self.cell):
                return []
            # The last process that executes the cell's programs: nobody would run them.
            reason = "stopped: the app shut down"
            return self._end_queued(session, self.cell, RunStatus.cancelled, reason)

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
            _lock_cell(session, self.cell)
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
            _signal(session, self.cell)
        return run

    @retry_on_deadlock
    def claim(self) -> ProgramRun | None:
        """Take the oldest queued run of the cell into a free slot, for this process.

        Returns:
            the run, now ``running`` and owned by this process; ``None`` when no slot is free
            or nothing is queued.
        """
        with self.database.transaction(savepoints=False) as session:
            _lock_cell(session, self.cell)
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
            _signal(session, self.cell)
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
            _signal(session, row.cell)
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
            _signal(session, row.cell)
        return True

    def version(self) -> int:
        """The cell's change counter (what idle runners poll)."""
        with self.database.read_session() as session:
            found = session.scalar(
                select(col(ProgramCell.version)).where(col(ProgramCell.name) == self.cell)
            )
            return int(found or 0)

    # -- other processes -------------------------------------------------------------------

    @retry_on_deadlock
    def expire(self) -> list[int]:
        """End what dead processes left behind, in every cell.

        A running run whose heartbeat is older than the lease, or whose process on this host
        no longer exists, ends ``failed`` and frees its slot; queued runs of a cell that no
        live process executes any more end ``failed`` too; dead processes are forgotten.

        Returns:
            the ids of the runs that were ended.
        """
        with self.database.transaction(savepoints=False) as session:
            now = database_now(session)
            cutoff = now - self.lease
            ended = self._expire_running(session, cutoff)
            dead = session.scalars(
                select(RunnerInstance).where(col(RunnerInstance.id) != self.instance.id)
            ).all()
            gone = [
                r.id
                for r in dead
                if _aware(r.heartbeat_at) < cutoff or process_is_gone(r.id, self.instance.host)
            ]
            if gone:
                session.execute(delete(RunnerInstance).where(col(RunnerInstance.id).in_(gone)))
            waiting = set(
                session.scalars(
                    select(col(ProgramRun.cell)).where(col(ProgramRun.status) == _QUEUED).distinct()
                )
            )
            for cell in sorted(waiting):
                if not self._executors_alive(session, now, cell):
                    reason = (
                        f"no process executes programs in cell {cell!r} any more (the last one "
                        "stopped answering)"
                    )
                    ended += self._end_queued(session, cell, RunStatus.failed, reason)
        return ended

    def _expire_running(self, session: Session, cutoff: datetime) -> list[int]:
        running = session.scalars(
            select(ProgramRun)
            .where(
                col(ProgramRun.status) == _RUNNING,
                or_(col(ProgramRun.owner).is_(None), col(ProgramRun.owner) != self.instance.id),
            )
            .with_for_update(skip_locked=True)
        ).all()
        ended: list[int] = []
        for run in running:
            reason = self._why_dead(run, cutoff)
            if reason is None or run.id is None:
                continue
            self.history.runs.update(
                run.id,
                actor=RUNNER_ACTOR,
                status=RunStatus.failed.value,
                finished_at=utcnow(),
                slot=None,
                error=reason,
            )
            _signal(session, run.cell)
            ended.append(run.id)
        return ended

    def _why_dead(self, run: ProgramRun, cutoff: datetime) -> str | None:
        if process_is_gone(run.owner, self.instance.host):
            return (
                f"the server running it ({run.owner}) is gone: its process no longer exists "
                "(a crash or a kill)"
            )
        beat = _aware(run.heartbeat_at) if run.heartbeat_at is not None else None
        if beat is not None and beat >= cutoff:
            return None
        last = f"last heartbeat at {beat.isoformat()}" if beat else "it never sent a heartbeat"
        return (
            f"the server running it ({run.owner or 'unknown'}) stopped answering; {last}, "
            f"more than {self.config.lease_timeout:g} s ago"
        )

    def _executors_alive(self, session: Session, now: datetime, cell: str) -> bool:
        if cell == self.cell and self.config.execute:
            return True
        return self._others_execute(session, now, cell)

    def _others_execute(self, session: Session, now: datetime, cell: str) -> bool:
        found = session.scalars(
            select(col(RunnerInstance.id)).where(
                col(RunnerInstance.cell) == cell,
                col(RunnerInstance.executes).is_(True),
                col(RunnerInstance.heartbeat_at) >= now - self.lease,
                col(RunnerInstance.id) != self.instance.id,
            )
        )
        return any(not process_is_gone(other, self.instance.host) for other in found)

    def _end_queued(self, session: Session, cell: str, status: RunStatus, reason: str) -> list[int]:
        ids: list[int] = list(
            session.scalars(
                select(col(ProgramRun.id))
                .where(col(ProgramRun.cell) == cell, col(ProgramRun.status) == _QUEUED)
                .with_for_update(skip_locked=True)
            )
        )
        now = utcnow()
        stop = {"stopped_by": RUNNER_ACTOR, "stop_requested_at": now}
        for run_id in ids:
            self.history.runs.update(
                run_id,
                actor=RUNNER_ACTOR,
                status=status.value,
                finished_at=now,
                error=reason,
                **(stop if status is RunStatus.cancelled else {}),
            )
        if ids:
            _signal(session, cell)
        return ids

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


def database_now(session: Session) -> datetime:
    """The database server's clock, in UTC (this machine's clock on SQLite, a local file)."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        value = session.scalar(text("SELECT clock_timestamp() AT TIME ZONE 'UTC'"))
    elif dialect in ("mysql", "mariadb"):
        value = session.scalar(text("SELECT UTC_TIMESTAMP(6)"))
    else:
        return utcnow()
    return _aware(value)


def _aware(value: Any) -> datetime:
    moment: datetime = value
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _ensure_cell(session: Session, cell: str) -> None:
    table: Table = ProgramCell.__table__  # type: ignore[attr-defined]
    dialect = session.get_bind().dialect.name
    values = {"name": cell, "version": 0}
    if dialect == "postgresql":
        statement: Any = postgresql.insert(table).values(values).on_conflict_do_nothing()
    elif dialect == "sqlite":
        statement = sqlite.insert(table).values(values).on_conflict_do_nothing()
    else:
        statement = mysql.insert(table).values(values).prefix_with("IGNORE")
    session.execute(statement)


def _lock_cell(session: Session, cell: str) -> None:
    # The cell's row lock orders every start and claim in the cell (SQLite: BEGIN IMMEDIATE
    # already did). A cell a restore removed is created again.
    lock = select(col(ProgramCell.version)).where(col(ProgramCell.name) == cell).with_for_update()
    if session.execute(lock).first() is None:
        _ensure_cell(session, cell)
        session.execute(lock)


def _signal(session: Session, cell: str) -> None:
    session.execute(
        update(ProgramCell)
        .where(col(ProgramCell.name) == cell)
        .values(version=col(ProgramCell.version) + 1)
    )
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            text("SELECT pg_notify(:channel, :cell)"), {"channel": CHANNEL, "cell": cell}
        )

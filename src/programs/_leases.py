"""``CellLeases``: which processes serve a cell, and the end of what dead ones left behind.

- **Leases.** Each process has an instance id (host, pid, start time) and a row in
  ``program_runners`` whose heartbeat it renews, together with the heartbeat of every run it
  executes. A run whose heartbeat is older than the lease timeout is ended ``failed`` by any
  other live process, and its slot is free again; so is a run whose process, on this host, no
  longer exists. Times come from the database's clock, so machines whose clocks differ agree.
- **The cell's row.** Starts and claims take its row lock (:func:`lock_cell`), and every change
  bumps its ``version`` and, on PostgreSQL, sends ``NOTIFY`` (:func:`signal`).

:class:`programs._cells.CellLedger` adds the run queue to these leases.
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

from sqlalchemy import Table, and_, delete, or_, select, text, update
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlmodel import Session, col

from programs._config import RunnerConfig
from programs._history import RUNNER_ACTOR, RunHistory
from programs._tables import ProgramCell, ProgramRun, RunnerInstance, RunStatus
from storage._processes import is_running
from storage._retries import retry_on_deadlock
from storage.auditor import utcnow
from storage.database import Database

__all__ = [
    "CHANNEL",
    "CellLeases",
    "Instance",
    "database_now",
    "lock_cell",
    "process_is_gone",
    "signal",
]

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


def process_is_gone(owner: str | None, host: str) -> bool:
    """Whether ``owner`` (an instance id) names a process on ``host`` that no longer exists."""
    parts = (owner or "").rsplit(":", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return False
    label, pid = parts[0], int(parts[1])
    if label != host[:60] or pid == os.getpid():
        return False
    return not is_running(pid)


class CellLeases:
    """The leases of the processes serving a cell: this process's membership and heartbeat,
    and the end of what processes that are gone left behind. Every method runs one short
    transaction and may be called from any thread (never from an event loop).

    Args:
        config: the runner's configuration (cell, slots, queueing, lease).
        history: the audited run rows; the leases work on their database.
        instance: this process.
    """

    def __init__(self, config: RunnerConfig, history: RunHistory, instance: Instance) -> None:
        self.config = config
        self.cell = config.cell
        self.history = history
        self.instance = instance

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
            lock_cell(session, self.cell)
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
            signal(session, run.cell)
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
            signal(session, cell)
        return ids


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


def lock_cell(session: Session, cell: str) -> None:
    # The cell's row lock orders every start and claim in the cell (SQLite: BEGIN IMMEDIATE
    # already did). A cell a restore removed is created again.
    lock = select(col(ProgramCell.version)).where(col(ProgramCell.name) == cell).with_for_update()
    if session.execute(lock).first() is None:
        _ensure_cell(session, cell)
        session.execute(lock)


def signal(session: Session, cell: str) -> None:
    session.execute(
        update(ProgramCell)
        .where(col(ProgramCell.name) == cell)
        .values(version=col(ProgramCell.version) + 1)
    )
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            text("SELECT pg_notify(:channel, :cell)"), {"channel": CHANNEL, "cell": cell}
        )

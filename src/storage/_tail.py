"""The audit log's tail: a thread that reads new audit rows as they become final.

An :class:`AuditTail` reads, on a thread and a connection of its own, the audit rows up to the
log's watermark (:mod:`storage._watermark`) and hands them to its sink (the
:class:`storage.feed.ChangeFeed` that fans them out). It waits for something to read the
backend's way: ``LISTEN`` on PostgreSQL (with a look every 2 s in case a notification was
missed), a cheap check every ``poll_interval`` elsewhere, and at once when this process
commits audited writes. It reconnects by itself when the database goes away, and loses
nothing: it carries on after the last row it handed over.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import Connection, Table, select

from storage import changes
from storage._watermark import Watermark, highest_id, watermark_for
from storage.auditor import AuditLog
from storage.changes import ChangeEvent

if TYPE_CHECKING:
    from storage.database import Database

__all__ = ["AUDIT_TABLE", "AuditTail", "Sink"]

logger = logging.getLogger("storage._tail")

AUDIT_TABLE: Table = AuditLog.__table__  # type: ignore[attr-defined]
_RESTORE = ("database", "restore")  # the audit row a restore writes
_LISTEN_WAIT = 0.25  # seconds PostgreSQL's reader waits for a NOTIFY at a time
_LOOK_ANYWAY = 2.0  # seconds after which it looks without one


class Sink(Protocol):
    """Where the tail's rows go."""

    @property
    def head(self) -> int:
        """The id up to which the sink holds every final row."""

    def restart(self, head: int) -> None:
        """Start over at ``head``: forget what came before (the first read, or a jump)."""

    def append(self, events: list[ChangeEvent], head: int) -> None:
        """Take the events up to ``head``, in order."""

    def reset(self, head: int) -> None:
        """The log was replaced (a restore): carry on at ``head``, tell the subscribers."""

    def pulse(self) -> None:
        """New events are there: wake the subscribers."""


class AuditTail:
    """Reads one database's audit log into a :class:`Sink` (see the module docstring).

    Args:
        database: the database.
        sink: where the rows go.
        poll_interval: seconds between cheap checks (SQLite, MariaDB), and between looks while
            PostgreSQL writers are in flight.
        gap_grace: MariaDB: seconds an empty hole in the ids is waited for.
        page_size: rows read at a time.
        keep: the most rows worth handing over at once (the sink's buffer): after a longer
            absence it jumps ahead, and subscribers read the rest from the database.
    """

    def __init__(
        self,
        database: Database,
        sink: Sink,
        *,
        poll_interval: float,
        gap_grace: float,
        page_size: int,
        keep: int,
    ) -> None:
        self._db = database
        self._sink = sink
        self._poll = poll_interval
        self._grace = gap_grace
        self._page = page_size
        self._keep = keep
        self.ready = threading.Event()
        """Set once the first head is known."""
        self.stopping = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._looked = 0.0  # when it last looked (PostgreSQL)

    def start(self) -> None:
        """Start the thread, unless it runs."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self.stopping.clear()
            self.ready.clear()
            self._thread = threading.Thread(
                target=self._run, name="storage-audit-tail", daemon=True
            )
            self._thread.start()
            changes.on_audited_commit(self._wake.set)
            changes.on_database_restored(self._wake.set)

    def stop(self, *, wait: bool) -> None:
        """Stop the thread (waiting up to 5 s for it when ``wait``)."""
        self.stopping.set()
        changes.off_audited_commit(self._wake.set)
        changes.off_database_restored(self._wake.set)
        self._wake.set()
        thread = self._thread
        if wait and thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def _run(self) -> None:
        dialect = self._db.engine.dialect.name
        watermark = watermark_for(dialect, AUDIT_TABLE, gap_grace=self._grace)
        while not self.stopping.is_set():
            try:
                with self._db.read_engine().connect() as connection:
                    self._follow(_configure(connection), watermark)
            except Exception as exc:  # the database went away: try again, lose nothing
                logger.warning("the audit tail lost the database (%s); reconnecting", exc)
                self.stopping.wait(1.0)

    def _follow(self, connection: Connection, watermark: Watermark) -> None:
        watermark.prepare(connection)
        if not self.ready.is_set():
            head = watermark.advance(connection, _start(connection))
            while watermark.busy and not self.stopping.wait(self._poll):
                head = watermark.advance(connection, head)
            connection.commit()
            self._sink.restart(head)
            self.ready.set()
        while not self.stopping.is_set():
            if self._wait(connection, watermark) and watermark.changed(connection):
                self._advance(connection, watermark.advance(connection, self._sink.head))
            connection.commit()  # SQLite: end the read, so the next one sees new commits

    def _wait(self, connection: Connection, watermark: Watermark) -> bool:
        """Wait for a reason to look; ``False``: nothing to look at yet (only PostgreSQL)."""
        if connection.dialect.name != "postgresql":
            self._wake.wait(self._poll)
            self._wake.clear()
            return True
        driver: Any = connection.connection.driver_connection
        # Short waits, so that stop() is quick.
        timeout = self._poll if watermark.busy else _LISTEN_WAIT
        notified = any(True for _ in driver.notifies(timeout=timeout, stop_after=1))
        if notified:
            for _ in driver.notifies(timeout=0):  # a burst of commits: one round for all
                pass
        now = time.monotonic()
        if notified or watermark.busy or now - self._looked >= _LOOK_ANYWAY:
            self._looked = now
            return True
        return False

    def _advance(self, connection: Connection, head: int) -> None:
        if head < self._sink.head:
            self._sink.reset(head)
            return
        if head - self._keep > self._sink.head:
            self._sink.restart(head - self._keep)
        start = self._sink.head
        while start < head:
            end, events = self._page_after(connection, start, head)
            restores = [e.id for e in events if (e.component, e.operation) == _RESTORE]
            if restores:
                self._sink.reset(restores[-1])  # what comes before it is the backup's history
                events = [event for event in events if event.id > restores[-1]]
            self._sink.append(events, end)
            start = end
        self._sink.pulse()

    def _page_after(
        self, connection: Connection, start: int, head: int
    ) -> tuple[int, list[ChangeEvent]]:
        column = AUDIT_TABLE.c.id
        statement = select(AUDIT_TABLE).where(column > start, column <= head)
        rows = connection.execute(statement.order_by(column).limit(self._page)).all()
        end = int(rows[-1].id) if len(rows) == self._page else head
        return end, [ChangeEvent.from_row(row) for row in rows]


def _configure(connection: Connection) -> Connection:
    if connection.dialect.name == "sqlite":
        return connection  # each round is a read transaction, ended by commit()
    connection = connection.execution_options(isolation_level="AUTOCOMMIT")
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f'LISTEN "{changes.CHANNEL}"')
    return connection


def _start(connection: Connection) -> int:
    if connection.dialect.name in ("mysql", "mariadb"):
        # Holes older than the last thousand ids are long settled.
        return max(0, highest_id(connection, AUDIT_TABLE) - 1000)
    return 0

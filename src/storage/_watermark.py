"""How far the audit log is final: the highest id below which no row can still appear.

Audit ids come from the database when a row is inserted, and commits may land out of id order:
a transaction holding id 7 can commit after the one holding id 8. A reader that delivered 8
and then moved its cursor past it would never see 7. So the change feed reads only up to the
*watermark*: the highest id such that every transaction that could still commit a lower id
has ended. Each backend has its own way to know:

- **SQLite** has one writer at a time: ids are handed out and committed in the same order, so
  the highest committed id is the watermark. ``PRAGMA data_version`` tells cheaply whether any
  other connection committed since the last look.
- **PostgreSQL**: read the id sequence's last value ``S``, *then* the transactions holding a
  write lock on the audit table (``pg_locks``). Every id up to ``S`` was taken by a transaction
  that has either ended or is in that list, so ``S`` is final once none of them is still
  there. A transaction's lock is released after its commit is visible. The feed is woken by
  ``NOTIFY`` (see :data:`storage.changes.CHANNEL`).
- **MariaDB/MySQL**: a run of committed ids without holes is final. A hole is an id still being
  written, or one given up by a rollback. A locking read of the hole (``LOCK IN SHARE MODE``,
  ``READ COMMITTED``) waits for a transaction still writing it; if it finds nothing, the hole is
  declared empty once it has been seen for ``gap_grace`` seconds (covering the instant between
  an id being taken and its row being written).

A watermark that goes *down* means the log was replaced (a restore) or truncated.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

from sqlalchemy import Connection, Table, func, select, text
from sqlalchemy.exc import DBAPIError

from storage.errors import is_busy

__all__ = ["Watermark", "highest_id", "watermark_for"]

_PENDING_LIMIT = 32  # PostgreSQL: (sequence value, writers) pairs kept while writers go on
_PROBE_TIMEOUT = 1  # seconds a MariaDB locking read waits for a writer


class Watermark(Protocol):
    """A backend's way of telling how far the audit log is final."""

    busy: bool
    """Whether rows are known to be on their way: look again soon rather than wait."""

    def prepare(self, connection: Connection) -> None:
        """Set up the reader's connection (once after it is opened)."""

    def changed(self, connection: Connection) -> bool:
        """A cheap check: may there be anything new since the last :meth:`advance`?"""

    def advance(self, connection: Connection, current: int) -> int:
        """The watermark now (``current`` or more; less when the log was replaced)."""


def watermark_for(dialect: str, table: Table, *, gap_grace: float = 1.0) -> Watermark:
    """The :class:`Watermark` of a backend (a SQLAlchemy dialect name) for the audit ``table``."""
    if dialect == "postgresql":
        return _PostgresWatermark(table)
    if dialect in ("mysql", "mariadb"):
        return _MariaWatermark(table, gap_grace=gap_grace)
    return _SqliteWatermark(table)


def highest_id(connection: Connection, table: Table) -> int:
    """The highest committed id of ``table`` (0 when empty)."""
    return int(connection.execute(select(func.max(table.c.id))).scalar() or 0)


class _SqliteWatermark:
    busy = False

    def __init__(self, table: Table) -> None:
        self._table = table
        self._version: Any = None

    def prepare(self, connection: Connection) -> None:
        self._version = None

    def changed(self, connection: Connection) -> bool:
        version = connection.exec_driver_sql("PRAGMA data_version").scalar()
        seen, self._version = self._version, version
        return bool(version != seen)

    def advance(self, connection: Connection, current: int) -> int:
        return highest_id(connection, self._table)


class _PostgresWatermark:
    def __init__(self, table: Table) -> None:
        self._table = table
        self._sequence = ""
        self._pending: list[tuple[int, frozenset[str]]] = []
        self.busy = False

    def prepare(self, connection: Connection) -> None:
        self._sequence = str(
            connection.execute(
                text("SELECT pg_get_serial_sequence(:table, 'id')"), {"table": self._table.name}
            ).scalar()
        )
        self._pending.clear()

    def changed(self, connection: Connection) -> bool:
        return True  # woken by NOTIFY, or by the timeout when writers were seen

    def advance(self, connection: Connection, current: int) -> int:
        # The order matters: the sequence first, then who is writing.
        value, called = connection.execute(
            text(f"SELECT last_value, is_called FROM {self._sequence}")
        ).one()
        issued = int(value) if called else int(value) - 1
        if issued < current and not self._pending:
            return highest_id(connection, self._table)  # the sequence was reset: a restore
        writers = frozenset(
            connection.execute(
                text(
                    "SELECT virtualtransaction FROM pg_locks WHERE locktype = 'relation' "
                    "AND relation = to_regclass(:table) AND mode = 'RowExclusiveLock' "
                    "AND pid <> pg_backend_pid()"
                ),
                {"table": self._table.name},
            ).scalars()
        )
        self._pending.append((issued, writers))
        if len(self._pending) > _PENDING_LIMIT:
            del self._pending[1]  # a later pair also covers it once its writers have ended
        final = current
        for index in range(len(self._pending) - 1, -1, -1):
            issued_then, writers_then = self._pending[index]
            if not writers_then & writers:
                # Every writer that could hold an id up to it has ended; so have those of
                # the pairs before it (they were writing then, or had ended).
                final = max(final, issued_then)
                del self._pending[: index + 1]
                break
        self.busy = bool(self._pending)
        return final


class _MariaWatermark:
    def __init__(self, table: Table, *, gap_grace: float) -> None:
        self._table = table
        self._grace = gap_grace
        self._holes: dict[int, float] = {}  # first id of a hole -> when it was first seen
        self.busy = False

    def prepare(self, connection: Connection) -> None:
        connection.exec_driver_sql("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
        connection.exec_driver_sql(f"SET SESSION innodb_lock_wait_timeout = {_PROBE_TIMEOUT}")
        self._holes.clear()

    def changed(self, connection: Connection) -> bool:
        return True  # the cheap check is advance's first query

    def advance(self, connection: Connection, current: int) -> int:
        highest = highest_id(connection, self._table)
        if highest <= current:
            self.busy = False
            return highest
        ids = self._ids(connection, current, highest)
        final = current
        for found in ids:
            if found != final + 1 and not self._hole_is_empty(connection, final + 1, found - 1):
                break
            final = found
        self.busy = final < highest
        self._holes = {start: seen for start, seen in self._holes.items() if start > final}
        return final

    def _ids(self, connection: Connection, current: int, highest: int) -> list[int]:
        column = self._table.c.id
        statement = (
            select(column).where(column > current, column <= highest).order_by(column).limit(5000)
        )
        return [int(found) for found in connection.execute(statement).scalars()]

    def _hole_is_empty(self, connection: Connection, first: int, last: int) -> bool:
        column = self._table.c.id
        probe = select(column).where(column.between(first, last)).with_for_update(read=True)
        try:
            if connection.execute(probe).first() is not None:
                return False  # written meanwhile: the next look reads it in order
        except DBAPIError as exc:
            if is_busy(exc):
                return False  # a writer still holds it (the lock wait ran out)
            raise
        seen = self._holes.setdefault(first, time.monotonic())
        return time.monotonic() - seen >= self._grace

"""The row cap of the CRUD routers (``max_records``), enforced without a race.

The count and the write that adds a row run in one transaction, and a lock keeps a second
transaction from passing the count before the first one commits:

- PostgreSQL: ``LOCK TABLE ... IN SHARE ROW EXCLUSIVE MODE`` when the transaction begins. The
  mode conflicts with itself and with other writers of the table; readers carry on.
- MySQL / MariaDB: a named lock (``GET_LOCK``) per table, taken on the transaction's own
  connection before the transaction begins and released after it has ended. A counting
  ``SELECT ... FOR UPDATE`` would take gap locks that two transactions can both hold on an
  empty range and then deadlock on their inserts; ``LOCK TABLES`` would have to name every
  table that an audit row or a hook touches.
- SQLite: write transactions are serialized already (``BEGIN IMMEDIATE`` and the in-process
  writer lock of :mod:`storage.database`).

Rows are counted by the database and soft-deleted rows do not count (vention-storage counts
them; see docs/compatibility.md).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from storage import database
from storage.accessor import ModelAccessor
from storage.errors import DatabaseBusyError, RecordLimitError, translate_driver_errors

__all__ = ["RecordCap"]

logger = logging.getLogger("storage._limits")

_MYSQL_DIALECTS = ("mysql", "mariadb")
_MYSQL_LOCK_NAME_MAX = 64


class RecordCap:
    """At most ``max_records`` live rows in an accessor's table (``None``: no cap).

    Add rows inside :meth:`transaction` and call :meth:`check` before each row is added.

    Args:
        accessor: the accessor whose table is capped.
        max_records: the cap; ``None`` turns it off.
        lock_timeout: seconds to wait for the MySQL / MariaDB named lock before answering
            :class:`~storage.errors.DatabaseBusyError`.

    Raises:
        ValueError: ``max_records`` is negative.
    """

    def __init__(
        self, accessor: ModelAccessor[Any], max_records: int | None, *, lock_timeout: int = 30
    ) -> None:
        if max_records is not None and max_records < 0:
            raise ValueError("max_records must be None or at least 0")
        self.accessor = accessor
        self.max_records = max_records
        self.lock_timeout = lock_timeout

    @contextmanager
    def transaction(self, *, savepoints: bool = True) -> Iterator[Session]:
        """A write transaction in which :meth:`check` holds until the commit (``savepoints``:
        see :meth:`storage.database.Database.transaction`)."""
        db = self.accessor.database
        dialect = db.engine.dialect.name
        nested = db.current_session() is not None
        if self.max_records is not None and dialect in _MYSQL_DIALECTS and not nested:
            with self._named_lock_transaction(db, savepoints) as session:
                yield session
            return
        with db.transaction(savepoints=savepoints) as session:
            if self.max_records is not None and dialect == "postgresql":
                table = self.accessor.model.__table__
                quoted = session.get_bind().dialect.identifier_preparer.format_table(table)
                session.execute(text(f"LOCK TABLE {quoted} IN SHARE ROW EXCLUSIVE MODE"))
            yield session

    def check(self) -> None:
        """Refuse one more row when the table already holds ``max_records`` live rows.

        Raises:
            RecordLimitError: the cap is reached.
        """
        if self.max_records is not None and self.accessor.count() >= self.max_records:
            raise RecordLimitError(
                f"{self.accessor.component} already holds the maximum of {self.max_records} "
                "records (the app sets it: bootstrap(max_records_per_model=...), None for no "
                "limit; build_crud_router(max_records=...))"
            )

    @contextmanager
    def _named_lock_transaction(self, db: database.Database, savepoints: bool) -> Iterator[Session]:
        with translate_driver_errors():
            connection = db.engine.connect()
        try:
            name = self._lock_name(connection)
            with translate_driver_errors():
                acquired = connection.execute(
                    text("SELECT GET_LOCK(:name, :timeout)"),
                    {"name": name, "timeout": self.lock_timeout},
                ).scalar()
                connection.commit()
            if acquired != 1:
                raise DatabaseBusyError(
                    f"another request is adding a row to {self.accessor.component}; try again"
                )
            try:
                # The session runs its own transaction on this connection, so the lock is
                # still held when that transaction commits.
                session = Session(connection, expire_on_commit=False)
                session.info[database.SAVEPOINTS_KEY] = savepoints
                try:
                    with db.use_session(session):
                        yield session
                finally:
                    session.close()
            finally:
                self._release(connection, name)
        finally:
            connection.close()

    def _lock_name(self, connection: Connection) -> str:
        name = f"storage.cap.{connection.engine.url.database}.{self.accessor.table_name}"
        if len(name) > _MYSQL_LOCK_NAME_MAX:
            name = "storage.cap." + hashlib.sha1(name.encode()).hexdigest()
        return name

    def _release(self, connection: Connection, name: str) -> None:
        try:
            connection.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": name})
            connection.commit()
        except SQLAlchemyError:
            # A closed connection gives its locks back; never pool one that may hold it.
            logger.warning("could not release the row-cap lock %s; dropping the connection", name)
            connection.invalidate()

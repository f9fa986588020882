"""The engine, sessions and transactions.

A :class:`Database` owns one engine and the rules for using it. The module-level functions
(:func:`set_database_url`, :func:`get_engine`, :func:`transaction`, :func:`use_session`) are thin
wrappers over a default instance kept in this module, so ``importlib.reload(storage.database)``
yields a fresh, unconfigured database. Other modules read ``database.X`` at call time. Every
other part of the library also takes a :class:`Database` object (``database=``) and uses the
default one when given none, so several databases can live in one process.

On SQLite every connection gets ``foreign_keys=ON``, a busy timeout and (for files) the WAL
journal. Write transactions begin with ``BEGIN IMMEDIATE`` and, inside one process, take a
writer lock first, so concurrent writers queue instead of failing with "database is locked".
The URL, the engine and its SQLite settings come from :class:`storage._engine.DatabaseEngine`,
which :class:`Database` extends with sessions, transactions and locks.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from typing import Any

from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import make_url
from sqlmodel import Session

from storage import changes
from storage._engine import (
    DEFAULT_DATABASE_URL,
    SYNCHRONOUS_MODES,
    DatabaseEngine,
)
from storage._pool import timed_wait
from storage.errors import DatabaseBusyError, translate_driver_errors

__all__ = [
    "CURRENT_SESSION",
    "DEFAULT_DATABASE_URL",
    "Database",
    "SAVEPOINTS_KEY",
    "SYNCHRONOUS_MODES",
    "get_database",
    "get_engine",
    "read_session",
    "set_database_url",
    "set_default_database",
    "transaction",
    "use_session",
]

CURRENT_SESSION: ContextVar[Session | None] = ContextVar("storage_current_session", default=None)

# Session.info key: False when accessor writes join the transaction without a savepoint.
SAVEPOINTS_KEY = "storage_savepoints"

_SCHEMA_KEY = 7_312_031_009  # the advisory lock key of machine-storage's schema changes


class Database(DatabaseEngine):
    """One database: its URL, its engine (created on first use) and its transactions.

    Args:
        url: SQLAlchemy URL; ``None``: from ``environ`` when the engine is first needed
            (``STORAGE_DATABASE_URL``, else ``VENTION_STORAGE_DATABASE_URL``), else
            :data:`DEFAULT_DATABASE_URL`.
        environ: the environment variables to take the URL from when none is given; the
            default database of this module gets ``os.environ``, a ``Database`` you create
            reads none unless you pass them (configuration is read at the edge).
        busy_timeout: seconds a writer waits for a lock held by another transaction (SQLite:
            of this process or another; PostgreSQL ``lock_timeout``; MariaDB/MySQL
            ``innodb_lock_wait_timeout``, in whole seconds), then :class:`DatabaseBusyError`.
        engine_options: extra keyword arguments for :func:`sqlalchemy.create_engine`.
        sqlite_synchronous: SQLite file's ``PRAGMA synchronous``: ``"FULL"`` (the default)
            syncs the write-ahead log at every commit, so a commit a client saw acknowledged
            survives a power cut; ``"NORMAL"`` syncs only at checkpoints (faster; the last
            commits may be lost on power loss, never corrupted). See docs/database.md.

    Raises:
        ValueError: ``sqlite_synchronous`` is not one of :data:`SYNCHRONOUS_MODES`.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        busy_timeout: float = 30.0,
        engine_options: dict[str, Any] | None = None,
        sqlite_synchronous: str = "FULL",
        environ: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(
            url,
            busy_timeout=busy_timeout,
            engine_options=engine_options,
            sqlite_synchronous=sqlite_synchronous,
            environ=environ,
        )
        # One writer at a time inside this process (SQLite only); other processes are kept
        # in order by BEGIN IMMEDIATE and the busy timeout.
        self._writer_lock = threading.RLock()
        # The session of the transaction in progress on this database, per thread and task;
        # the default database's is the module's CURRENT_SESSION.
        self._sessions: ContextVar[Session | None] = ContextVar("storage_session", default=None)

    def __repr__(self) -> str:
        return f"Database({make_url(self.url).render_as_string(hide_password=True)!r})"

    @property
    def _session_var(self) -> ContextVar[Session | None]:
        return CURRENT_SESSION if self is _default else self._sessions

    def current_session(self) -> Session | None:
        """The session of the transaction in progress on this database in this thread or
        task (:meth:`transaction`, :meth:`use_session`), or ``None``."""
        return self._session_var.get()

    def session(self) -> Session:
        """A new session bound to the engine; objects stay readable after commit."""
        return Session(self.engine, expire_on_commit=False)

    @contextmanager
    def snapshot_read(self) -> Iterator[Connection]:
        """A connection in one read transaction that sees one consistent state of every table.

        SQLite: a deferred transaction (in WAL mode its first read fixes the snapshot, and
        writers carry on). PostgreSQL, MySQL, MariaDB: ``REPEATABLE READ`` isolation. For
        exports and snapshots that read many tables. Driver errors come out as
        :class:`storage.errors.StorageError`.
        """
        with translate_driver_errors(), self.read_engine().connect() as connection:
            if not self.is_sqlite:
                connection.execution_options(isolation_level="REPEATABLE READ")
            with connection.begin():
                yield connection

    @contextmanager
    def schema_lock(self, timeout: float = 60.0) -> Iterator[None]:
        """Hold the database-wide lock for schema changes (creating tables, migrating) for the
        block, so that processes starting at once (``uvicorn --workers 4``) take turns.

        PostgreSQL: a session advisory lock; MySQL/MariaDB: ``GET_LOCK``; both held on a
        connection of their own. SQLite needs none: creating tables runs in one ``BEGIN
        IMMEDIATE`` transaction, which already serialises writers.

        Raises:
            DatabaseBusyError: the lock was not granted within ``timeout`` seconds.
        """
        dialect = self.engine.dialect.name
        if dialect not in ("postgresql", "mysql", "mariadb"):
            yield
            return
        with translate_driver_errors(), self.engine.connect() as connection:
            connection = connection.execution_options(isolation_level="AUTOCOMMIT")
            if dialect == "postgresql":
                connection.execute(text(f"SET lock_timeout = '{int(timeout * 1000)}ms'"))
                connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _SCHEMA_KEY})
                release = text("SELECT pg_advisory_unlock(:key)")
            else:
                taken = connection.execute(
                    text("SELECT GET_LOCK(:key, :timeout)"),
                    {"key": f"machine_storage_schema_{_SCHEMA_KEY}", "timeout": int(timeout)},
                ).scalar()
                if taken != 1:
                    raise DatabaseBusyError("another process holds the schema lock")
                release = text("SELECT RELEASE_LOCK(:key)")
            try:
                yield
            finally:
                key = (
                    _SCHEMA_KEY
                    if dialect == "postgresql"
                    else f"machine_storage_schema_{_SCHEMA_KEY}"
                )
                connection.execute(release, {"key": key})
                if dialect == "postgresql":
                    connection.execute(text("RESET lock_timeout"))

    def writer_lock(self) -> AbstractContextManager[Any]:
        """The in-process writer lock for SQLite (a no-op context for other engines).

        A writer waits for it at most ``busy_timeout`` seconds, as it waits for another
        process's lock, then gets :class:`DatabaseBusyError` (a 503 with ``Retry-After``):
        a long write never piles up the worker threads of the app.
        """
        if self.engine.dialect.name != "sqlite":
            return nullcontext()
        return self._timed_writer_lock()

    @contextmanager
    def _timed_writer_lock(self) -> Iterator[None]:
        with timed_wait("writer"):
            acquired = self._writer_lock.acquire(timeout=self._busy_timeout)
        if not acquired:
            raise DatabaseBusyError(
                f"another write has held the database for over {self._busy_timeout:g} s; try again"
            )
        try:
            yield
        finally:
            self._writer_lock.release()

    @contextmanager
    def transaction(self, *, savepoints: bool = True) -> Iterator[Session]:
        """Run the block in one atomic transaction and make its session current.

        Commits when the block ends, rolls back when it raises. Inside an active transaction
        (or ``use_session``) it joins the outer one: no second connection, one commit.
        Driver errors come out as :class:`storage.errors.StorageError`.

        Args:
            savepoints: run each accessor write in the block in a savepoint, so that a write
                that fails can be caught and the rest still commits. ``False`` saves two
                statements per write, for blocks that let any error end the transaction
                (a route handler). Ignored when joining an outer transaction.
        """
        current = self.current_session()
        if current is not None:
            yield current
            return
        session = self.session()  # no connection until it is used, inside the lock
        session.info[SAVEPOINTS_KEY] = savepoints
        # After-commit listeners run once the lock is released and the session closed.
        with changes.held_until_exit(session):
            with self.writer_lock(), self._current(session, owned=True):
                yield session

    @contextmanager
    def use_session(self, session: Session | None = None) -> Iterator[Session]:
        """Make a session current so accessor calls in the block share it.

        With no argument it joins the current session, or opens a transaction like
        :meth:`transaction`. A session passed in is made current and committed when the block
        ends (rolled back when it raises), so accessor writes are never silently lost; the
        caller still owns and closes it.
        """
        current = self.current_session()
        if session is None or session is current:
            with self.transaction() as joined:
                yield joined
            return
        with changes.held_until_exit(session), self._current(session, owned=False):
            yield session

    @contextmanager
    def _current(self, session: Session, *, owned: bool) -> Iterator[None]:
        sessions = self._session_var
        token = sessions.set(session)
        try:
            with translate_driver_errors():
                try:
                    yield
                    session.commit()
                except BaseException:
                    session.rollback()
                    raise
        finally:
            sessions.reset(token)
            if owned:
                session.close()

    @contextmanager
    def read_session(self) -> Iterator[Session]:
        """The current session, or a short read-only one that takes no write lock."""
        current = self.current_session()
        if current is not None:
            with translate_driver_errors():
                yield current
            return
        session = Session(self.read_engine(), expire_on_commit=False)
        try:
            with translate_driver_errors():
                yield session
        finally:
            session.close()


_default = Database(environ=os.environ)  # the edge: the app's environment, read at first use


def get_database() -> Database:
    """The default :class:`Database` that the module-level functions use."""
    return _default


def set_default_database(db: Database) -> Database:
    """Make ``db`` the default database (the one the module-level functions and every part
    given no ``database=`` use) and return the one it replaces, which stays usable.

    For tests and tools that switch databases; call it while no transaction is in progress.
    An app with one database configures it with :func:`set_database_url` (or ``bootstrap``)
    instead, and one with several passes each :class:`Database` where it is used.
    """
    global _default
    previous, _default = _default, db
    return previous


def set_database_url(url: str) -> None:
    """Set the database URL; call it before the database is first used.

    Raises:
        ConfigurationError: (a ``RuntimeError``) the engine already exists with another URL.
    """
    _default.set_url(url)


def get_engine() -> Engine:
    """The engine of the default database: the same object on every call."""
    return _default.engine


def transaction(*, savepoints: bool = True) -> AbstractContextManager[Session]:
    """Context manager: one atomic transaction on the default database (see
    :meth:`Database.transaction`)."""
    return _default.transaction(savepoints=savepoints)


def use_session(session: Session | None = None) -> AbstractContextManager[Session]:
    """Context manager: make ``session`` current (see :meth:`Database.use_session`)."""
    return _default.use_session(session)


def read_session() -> AbstractContextManager[Session]:
    """Context manager: a session for reads (see :meth:`Database.read_session`)."""
    return _default.read_session()

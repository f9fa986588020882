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
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import StaticPool
from sqlmodel import Session

from storage import changes
from storage._pool import TimedQueuePool, timed_wait
from storage.errors import (
    ConfigurationError,
    DatabaseBusyError,
    MissingDependencyError,
    translate,
    translate_driver_errors,
)
from storage.prepared import PreparedRead

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

DEFAULT_DATABASE_URL = "sqlite:///./storage.db"
URL_ENVIRONMENT_VARIABLES = ("STORAGE_DATABASE_URL", "VENTION_STORAGE_DATABASE_URL")

CURRENT_SESSION: ContextVar[Session | None] = ContextVar("storage_current_session", default=None)

_BEGIN_OPTION = "storage_sqlite_begin"
# Session.info key: False when accessor writes join the transaction without a savepoint.
SAVEPOINTS_KEY = "storage_savepoints"


def _url_from(environ: Mapping[str, str] | None) -> str:
    for name in URL_ENVIRONMENT_VARIABLES:
        if environ is not None and (value := environ.get(name)):
            return value
    return DEFAULT_DATABASE_URL


SYNCHRONOUS_MODES = ("OFF", "NORMAL", "FULL", "EXTRA")
"""SQLite's ``PRAGMA synchronous`` settings (see :class:`Database`)."""


def _configure_sqlite(
    engine: Engine, *, busy_timeout: float, in_memory: bool, synchronous: str
) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # The driver's own transaction handling would BEGIN lazily (deferred) and upgrade to a
        # write lock later, which fails at once under contention; we emit BEGIN ourselves.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        cursor.execute("PRAGMA foreign_keys = ON")
        if not in_memory:
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute(f"PRAGMA synchronous = {synchronous}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        mode = connection.get_execution_options().get(_BEGIN_OPTION, "IMMEDIATE")
        # Straight to the driver: this runs once per transaction, on the hot path.
        try:
            connection.connection.driver_connection.execute(f"BEGIN {mode}")
        except sqlite3.OperationalError as exc:
            # Not through SQLAlchemy's error handling: translate here, or it is a 500.
            raise translate(exc) from exc


_IN_MEMORY = (None, "", ":memory:")
# The extra that installs the driver this library is tested with, per backend.
_EXTRAS = {"postgresql": "postgres", "mysql": "mysql", "mariadb": "mysql"}


def _synchronous(mode: str) -> str:
    if mode.upper() not in SYNCHRONOUS_MODES:
        raise ValueError(f"sqlite_synchronous must be one of {', '.join(SYNCHRONOUS_MODES)}")
    return mode.upper()


_SCHEMA_KEY = 7_312_031_009  # the advisory lock key of machine-storage's schema changes


def _connect_now(engine: Engine) -> Any:
    with translate_driver_errors():
        pooled = engine.raw_connection()
    driver = pooled.driver_connection
    pooled.detach()  # never back into the pool: its busy timeout is zero
    driver.execute("PRAGMA busy_timeout = 0")  # type: ignore[union-attr]
    return driver


class Database:
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
        self._synchronous = _synchronous(sqlite_synchronous)
        self._url = url
        self._environ = environ
        self._busy_timeout = busy_timeout
        self._engine_options = dict(engine_options or {})
        self._engine: Engine | None = None
        self._read_engine: Engine | None = None
        self._engine_lock = threading.Lock()
        # Database.read_now: one connection that never waits, used by one thread at a time.
        self._now_connection: Any = None  # the driver's connection (sqlite3)
        self._now_lock = threading.Lock()
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

    @property
    def url(self) -> str:
        """The URL in use (or that will be used when the engine is created)."""
        return self._url or _url_from(self._environ)

    @property
    def is_sqlite(self) -> bool:
        """Whether this database is SQLite."""
        return make_url(self.url).get_backend_name() == "sqlite"

    def set_url(self, url: str) -> None:
        """Set the URL; only allowed before the engine exists.

        Raises:
            ConfigurationError: the engine already exists with another URL.
        """
        if self._engine is not None and url != self.url:
            raise ConfigurationError(
                "set_database_url() must be called before the database is first used "
                f"(the engine already exists for {make_url(self.url).render_as_string()})"
            )
        self._url = url

    def set_busy_timeout(self, seconds: float) -> None:
        """Set how long a writer waits for the database (see the class); only before the
        engine exists.

        Raises:
            ValueError: not a positive number of seconds.
            ConfigurationError: the engine already exists with another timeout.
        """
        if not seconds > 0:
            raise ValueError("busy_timeout must be a positive number of seconds")
        if self._engine is not None and seconds != self._busy_timeout:
            raise ConfigurationError("set the busy timeout before the database is first used")
        self._busy_timeout = seconds

    def set_sqlite_synchronous(self, mode: str) -> None:
        """Set SQLite's ``PRAGMA synchronous`` (see the class); only before the engine exists.

        Raises:
            ValueError: not one of :data:`SYNCHRONOUS_MODES`.
            ConfigurationError: the engine already exists with another setting.
        """
        mode = _synchronous(mode)
        if self._engine is not None and mode != self._synchronous:
            raise ConfigurationError(
                "set the SQLite synchronous mode before the database is first used"
            )
        self._synchronous = mode

    @property
    def engine(self) -> Engine:
        """The engine, created on first use and the same object until :meth:`dispose`."""
        if self._engine is None:
            with self._engine_lock:
                if self._engine is None:
                    self._engine = self._create_engine()
        return self._engine

    def _create_engine(self) -> Engine:
        url = make_url(self.url)
        options: dict[str, Any] = {}
        if url.get_backend_name() == "sqlite":
            in_memory = url.database in _IN_MEMORY
            options["connect_args"] = {"check_same_thread": False, "timeout": self._busy_timeout}
            # Timed, to report waits for a connection; a memory database has one connection.
            options["poolclass"] = StaticPool if in_memory else TimedQueuePool
            options.update(self._engine_options)
            engine = create_engine(url, **options)
            _configure_sqlite(
                engine,
                busy_timeout=self._busy_timeout,
                in_memory=in_memory,
                synchronous=self._synchronous,
            )
            return engine
        options["pool_pre_ping"] = True
        options["poolclass"] = TimedQueuePool
        # A statement waits for another transaction's lock at most busy_timeout, as on SQLite.
        driver = url.get_driver_name()
        if url.get_backend_name() in ("mysql", "mariadb"):
            options["pool_recycle"] = 3600
        if driver in ("pymysql", "mysqldb"):
            wait = max(1, round(self._busy_timeout))  # whole seconds only
            options["connect_args"] = {
                "init_command": f"SET SESSION innodb_lock_wait_timeout = {wait}"
            }
        elif driver in ("psycopg", "psycopg2"):
            options["connect_args"] = {
                "options": f"-c lock_timeout={int(self._busy_timeout * 1000)}"
            }
        options.update(self._engine_options)
        try:
            return create_engine(url, **options)
        except ModuleNotFoundError as exc:
            extra = _EXTRAS.get(url.get_backend_name())
            hint = f"pip install 'machine-storage[{extra}]'" if extra else f"install {exc.name}"
            raise MissingDependencyError(
                f"the driver for {url.drivername} URLs is not installed (no module "
                f"{exc.name!r}): {hint}"
            ) from exc

    def read_engine(self) -> Engine:
        """The engine for reads: the same pool; on SQLite its transactions begin ``DEFERRED``
        (they take no write lock)."""
        if self._read_engine is None:
            self._read_engine = self.engine.execution_options(**{_BEGIN_OPTION: "DEFERRED"})
        return self._read_engine

    def dispose(self) -> None:
        """Close every pooled connection; the engine is recreated with the same URL on next use."""
        with self._engine_lock, self._now_lock:
            if self._now_connection is not None:
                self._now_connection.close()
                self._now_connection = None
            if self._engine is not None:
                self._engine.dispose()
            self._engine = None
            self._read_engine = None

    @property
    def reads_now(self) -> bool:
        """Whether :meth:`read_now` is ready: the database is a SQLite file and the connection
        for immediate reads is open (see :meth:`prepare_read_now`)."""
        return self._now_connection is not None

    def prepare_read_now(self) -> bool:
        """Open the connection :meth:`read_now` uses, if the database is a SQLite file.

        Opening it may wait for a lock, so call it where waiting is harmless (a worker
        thread), never in an event loop. Does nothing once it is open. Returns
        :attr:`reads_now`.
        """
        if self._now_connection is None:
            engine = self.engine
            if engine.dialect.name == "sqlite" and engine.url.database not in _IN_MEMORY:
                with self._now_lock:
                    if self._now_connection is None:
                        self._now_connection = _connect_now(engine)
        return self.reads_now

    def read_now(self, read: PreparedRead, parameters: dict[str, Any]) -> dict[str, Any] | None:
        """The first row of a short read, run at once in the calling thread, never waiting.

        For async code on a SQLite file, where a read by key takes microseconds and the hop to
        a worker thread costs more than the read itself. It runs on a connection of its own
        whose busy timeout is zero, each statement its own transaction, so it never waits for a
        lock and never holds one.

        Returns:
            The row as ``{column label: value}``, or ``None``.

        Raises:
            DatabaseBusyError: the read cannot run at once: the connection is not open (see
                :meth:`prepare_read_now`) or another thread is using it, or a lock keeps
                readers out (a restore, another process's exclusive lock). Read the ordinary
                way, in a worker thread, instead.
            StorageError: any other driver error.
        """
        if not self._now_lock.acquire(blocking=False):
            raise DatabaseBusyError("the connection for immediate reads is in use")
        try:
            connection = self._now_connection
            if connection is None:
                raise DatabaseBusyError("the connection for immediate reads is not open")
            dialect = self.engine.dialect
            try:
                return read.first(connection, dialect, parameters)
            except dialect.loaded_dbapi.Error as exc:
                raise translate(exc) from exc
        finally:
            self._now_lock.release()

    def session(self) -> Session:
        """A new session bound to the engine; objects stay readable after commit."""
        return Session(self.engine, expire_on_commit=False)

    @contextmanager
    def raw_connection(self) -> Iterator[Any]:
        """A driver connection from the pool (``sqlite3.Connection`` on SQLite), given back after.

        For what SQLAlchemy has no API for, such as SQLite's online backup. On SQLite it is in
        autocommit mode; leave it without an open transaction.
        """
        with translate_driver_errors():
            pooled = self.engine.raw_connection()
        try:
            yield pooled.driver_connection
        finally:
            pooled.close()

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

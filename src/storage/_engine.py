"""``DatabaseEngine``: one database's URL and settings, its engine, and the connections it
lends outside a session.

The URL comes from the code, else from the environment given (``STORAGE_DATABASE_URL``, else
``VENTION_STORAGE_DATABASE_URL``), else :data:`DEFAULT_DATABASE_URL`. The engine is created on
first use: on SQLite every connection gets ``foreign_keys=ON``, a busy timeout and (for files)
the WAL journal, and write transactions begin with ``BEGIN IMMEDIATE``; on PostgreSQL and
MariaDB/MySQL a statement waits for another transaction's lock at most the busy timeout.

:class:`storage.database.Database` adds sessions, transactions and locks to it.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import StaticPool

from storage._pool import TimedQueuePool
from storage.errors import (
    ConfigurationError,
    DatabaseBusyError,
    MissingDependencyError,
    translate,
    translate_driver_errors,
)
from storage.prepared import PreparedRead

__all__ = [
    "DEFAULT_DATABASE_URL",
    "DatabaseEngine",
    "SYNCHRONOUS_MODES",
    "URL_ENVIRONMENT_VARIABLES",
]

DEFAULT_DATABASE_URL = "sqlite:///./storage.db"
URL_ENVIRONMENT_VARIABLES = ("STORAGE_DATABASE_URL", "VENTION_STORAGE_DATABASE_URL")

_BEGIN_OPTION = "storage_sqlite_begin"


def _url_from(environ: Mapping[str, str] | None) -> str:
    for name in URL_ENVIRONMENT_VARIABLES:
        if environ is not None and (value := environ.get(name)):
            return value
    return DEFAULT_DATABASE_URL


SYNCHRONOUS_MODES = ("OFF", "NORMAL", "FULL", "EXTRA")
"""SQLite's ``PRAGMA synchronous`` settings (see :class:`storage.database.Database`)."""


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


def _connect_now(engine: Engine) -> Any:
    with translate_driver_errors():
        pooled = engine.raw_connection()
    driver = pooled.driver_connection
    pooled.detach()  # never back into the pool: its busy timeout is zero
    driver.execute("PRAGMA busy_timeout = 0")  # type: ignore[union-attr]
    return driver


class DatabaseEngine:
    """One database's URL, settings and engine, created on first use; the arguments are
    those of :class:`storage.database.Database`, which extends it."""

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
        """Set how long a writer waits for the database (see
        :class:`storage.database.Database`); only before the engine exists.

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
        """Set SQLite's ``PRAGMA synchronous`` (see :class:`storage.database.Database`); only
        before the engine exists.

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

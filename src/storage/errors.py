"""Every error the storage layer raises, and the one place driver errors are translated.

The tree::

    StorageError
    ├── ConfigurationError      (also a RuntimeError: the database was configured too late)
    ├── NotFoundError
    ├── ConflictError
    │   ├── IntegrityConflictError   (unique, foreign-key, not-null or check constraint) [1]
    │   ├── SoftDeleteNotSupported   (restoring a model without ``deleted_at`` over HTTP)
    │   ├── RecordDeletedError       (PUT of a soft-deleted record)
    │   ├── LiveChildrenError        (soft delete refused: live rows still refer to the row)
    │   ├── DeletedParentError       (a live row may not refer to a soft-deleted one)
    │   ├── RestoreConflictError     (a live row took a unique value of the row to restore)
    │   └── RecordLimitError         (a model's row cap is reached)
    ├── PreconditionFailedError (a stale ``If-Match`` version)
    ├── ValidationError
    │   ├── ColumnValueError         (a value the database refuses for its column) [1]
    │   └── PayloadTooLargeError     (an upload over the size limit)
    ├── DatabaseBusyError       (the database stayed locked past the busy timeout) [1]
    ├── DatabaseUnavailableError (the database cannot be reached at all) [1]
    ├── DriverError             (any other error the database or its driver reported) [1]
    ├── MissingDependencyError  (an optional package or program is not installed)
    ├── MigrationError          (also a RuntimeError)
    │   ├── UnsupportedMigrationError (an auto-migration that would destroy or guess)
    │   └── MigrationExecutionError   (the database failed while applying one)
    ├── SchemaDriftError        (the database's tables differ from the models)
    │   └── MissingColumnError       (a statement met a table or column the database lacks)
    ├── RestoreError            (a backup file that cannot be restored)
    └── OperationCancelledError (long work stopped because its client went away)

[1] These translate SQLAlchemy's errors, and each is also an instance of the SQLAlchemy class it
stands for (``sqlalchemy.exc.IntegrityError``, ``DataError``, ``OperationalError``,
``DBAPIError``), so code written against plain SQLAlchemy, or against vention-storage, that
catches those keeps working. ``.orig``, ``.statement`` and ``.params`` are SQLAlchemy's, but
``str(error)`` is our message.

Messages never contain SQL text or bound parameters: they name tables, columns and constraints.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import exc as sa_exc

from storage.constraints import BrokenConstraint, broken_constraint

__all__ = [
    "ColumnValueError",
    "ConfigurationError",
    "ConflictError",
    "DatabaseBusyError",
    "DatabaseUnavailableError",
    "DeletedParentError",
    "DriverError",
    "IntegrityConflictError",
    "LiveChildrenError",
    "MigrationError",
    "MigrationExecutionError",
    "MissingColumnError",
    "MissingDependencyError",
    "NotFoundError",
    "OperationCancelledError",
    "PayloadTooLargeError",
    "PreconditionFailedError",
    "RecordDeletedError",
    "RecordLimitError",
    "RestoreConflictError",
    "RestoreError",
    "SchemaDriftError",
    "SoftDeleteNotSupported",
    "StorageError",
    "UnsupportedMigrationError",
    "ValidationError",
    "require_found",
    "translate_driver_errors",
]


class StorageError(Exception):
    """Base class of every error raised by ``storage``."""


class _FromSQLAlchemy(StorageError, sa_exc.DBAPIError):
    """A storage error that is also the SQLAlchemy error it translates.

    Constructed like SQLAlchemy's ``StatementError`` (message, statement, params, orig), where
    only the message is needed; ``str()`` is the message alone, never the SQL.
    """

    def __init__(
        self,
        message: str,
        statement: str | None = None,
        params: Any = None,
        orig: Exception | None = None,
    ) -> None:
        Exception.__init__(self, message)
        self.statement = statement
        self.params = params
        self.orig = orig
        self.ismulti = None
        self.hide_parameters = False
        self.connection_invalidated = False
        self.detail = []

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (str(self), self.statement, self.params, self.orig)


class ConfigurationError(StorageError, RuntimeError):
    """The database was configured in a way, or at a time, that cannot work."""


class NotFoundError(StorageError):
    """A record or resource does not exist."""


class ConflictError(StorageError):
    """The request conflicts with the current state of the data."""


class IntegrityConflictError(_FromSQLAlchemy, ConflictError, sa_exc.IntegrityError):
    """A database constraint (unique, foreign key, not null, check) rejected the write.

    Also a ``sqlalchemy.exc.IntegrityError``. ``constraint`` says which kind, and its name
    when the database gives one (:class:`storage.constraints.BrokenConstraint`).
    """

    named: BrokenConstraint | None = None
    """The constraint as the library found it where the database does not name it."""

    @property
    def constraint(self) -> BrokenConstraint | None:
        """The broken constraint: its kind, and its name when known."""
        return self.named or broken_constraint(self.orig)


class SoftDeleteNotSupported(ConflictError):
    """The model has no ``deleted_at`` column, so it cannot be restored."""


class RecordDeletedError(ConflictError):
    """The record is soft-deleted; restore it before changing it."""


class LiveChildrenError(ConflictError):
    """A relation with the ``refuse`` soft-delete policy still has live rows referring to the
    row to soft-delete (see :mod:`storage.relations`)."""


class DeletedParentError(ConflictError):
    """A live row would refer to a soft-deleted one (created, moved or restored under it)."""


class RestoreConflictError(ConflictError):
    """A live row took a unique value of the soft-deleted row to restore meanwhile."""


class RecordLimitError(ConflictError):
    """The model already holds as many rows as it is allowed to."""


class PreconditionFailedError(StorageError):
    """The record changed since the version the client based its edit on."""


class ValidationError(StorageError):
    """Input does not match the model."""


class ColumnValueError(_FromSQLAlchemy, ValidationError, sa_exc.DataError):
    """The database refused a value for its column (too long, out of range).

    Also a ``sqlalchemy.exc.DataError``.
    """


class PayloadTooLargeError(ValidationError):
    """An upload is larger than the configured limit."""


class DatabaseBusyError(_FromSQLAlchemy, sa_exc.OperationalError):
    """The database stayed locked by another writer for longer than the busy timeout.

    Also a ``sqlalchemy.exc.OperationalError``, as SQLite's "database is locked" is.
    """


class DatabaseUnavailableError(_FromSQLAlchemy, sa_exc.OperationalError):
    """The database cannot be reached (server down, file unreadable).

    Also a ``sqlalchemy.exc.OperationalError``.
    """


class DriverError(_FromSQLAlchemy):
    """Any other error the database or its driver reported. Also a ``sqlalchemy.exc.DBAPIError``."""


class MissingDependencyError(StorageError):
    """An optional dependency (a Python extra or an external program) is not installed."""


class MigrationError(StorageError, RuntimeError):
    """An automatic migration could not be made (a ``RuntimeError``, as in vention-storage)."""


class UnsupportedMigrationError(MigrationError):
    """An automatic migration was refused because it would lose data or need a decision;
    nothing was changed."""


class MigrationExecutionError(MigrationError):
    """The database failed while an automatic migration was being applied."""


class SchemaDriftError(StorageError):
    """The database's tables differ from the models (a missing table or column, a changed
    type): the app is not ready to serve."""


class MissingColumnError(_FromSQLAlchemy, SchemaDriftError):
    """A statement met a table or column the database lacks although the models have it: the
    database was not migrated. Also a ``sqlalchemy.exc.DBAPIError``."""


class RestoreError(StorageError):
    """A backup file cannot be restored; the live database was left untouched."""


class OperationCancelledError(StorageError):
    """Long work (an import) stopped before it finished because its client went away; it
    was rolled back, nothing of it was kept."""


# Transient conflicts between transactions: SQLite's lock, PostgreSQL's deadlock and
# serialization failures, MySQL/MariaDB's deadlock and lock wait timeout.
_SQLITE_BUSY_CODES = (5, 6)  # SQLITE_BUSY, SQLITE_LOCKED (primary result codes)
# deadlock_detected, serialization_failure: the server rolled the transaction back
_POSTGRES_DEADLOCK_STATES = ("40P01", "40001")
_POSTGRES_BUSY_STATES = ("55P03", *_POSTGRES_DEADLOCK_STATES)  # 55P03: lock_timeout
# ER_LOCK_DEADLOCK: rolled back; ER_CHECKREAD: a snapshot transaction (MariaDB's
# innodb_snapshot_isolation) met a row changed since it began, a serialization failure.
_MYSQL_DEADLOCK_CODES = (1213, 1020)
_MYSQL_BUSY_CODES = (1205, *_MYSQL_DEADLOCK_CODES)  # 1205: lock wait timeout


def _has_code(error: BaseException | None) -> bool:
    # Drivers set codes on what they raise; only errors made by hand go without.
    return (
        getattr(error, "sqlite_errorcode", None) is not None
        or getattr(error, "sqlstate", None) is not None
        or isinstance(_mysql_code(error), int)
    )


def _missing_schema(error: BaseException | None) -> str | None:
    """``column x`` or ``table t`` when the driver error says, by its code, that the database
    lacks it; ``None`` for every other error."""
    message = str(error)
    if getattr(error, "sqlite_errorcode", None) == 1:
        found = _SQLITE_MISSING.search(message)
    elif getattr(error, "sqlstate", None) in _POSTGRES_MISSING_STATES:
        found = _SERVER_MISSING.search(message)
    elif error is not None and _mysql_code(error) in _MYSQL_MISSING_CODES:
        found = _SERVER_MISSING.search(message)
    else:
        return None
    if found is None:
        return "table or column"
    names = {key: value for key, value in found.groupdict().items() if value}
    where = f" in {names['table']}" if "table" in names else ""
    if "column" in names:
        return f"column {names['column']}{where}"
    if "relation" in names:
        return f"table {names['relation']}"
    kind = "column" if names.get("kind") == "column" else "table"
    return f"{kind} {names['name']}{where}"


def _driver_error(error: BaseException | None) -> BaseException | None:
    return getattr(error, "orig", None) or error  # SQLAlchemy's wrapper, or the error itself


def _mysql_code(error: BaseException | None) -> Any:
    args: tuple[Any, ...] = getattr(error, "args", ())
    return args[0] if args else None


def is_busy(error: BaseException | None) -> bool:
    """Whether a driver error (or SQLAlchemy's wrapper of one) says, by its code, that another
    transaction holds what this one needs: a lock wait that ran out, a deadlock."""
    error = _driver_error(error)
    if getattr(error, "sqlite_errorcode", 0) & 0xFF in _SQLITE_BUSY_CODES:
        return True
    if getattr(error, "sqlstate", None) in _POSTGRES_BUSY_STATES:
        return True
    return _mysql_code(error) in _MYSQL_BUSY_CODES


def is_deadlock(error: BaseException) -> bool:
    """Whether ``error``, or what it was translated from, is a deadlock or serialization
    failure: the server rolled the transaction back, and running it again is safe."""
    seen: BaseException | None = error
    while seen is not None:
        driver = _driver_error(seen)
        if getattr(driver, "sqlstate", None) in _POSTGRES_DEADLOCK_STATES:
            return True
        if _mysql_code(driver) in _MYSQL_DEADLOCK_CODES:
            return True
        seen = seen.__cause__
    return False


# Only for errors without a code (made by hand): real ones are classified by their codes.
_BUSY_MARKERS = ("database is locked", "deadlock", "could not serialize", "lock wait timeout")
# A missing table or column, by code: SQLite's generic SQLITE_ERROR (1) with its wording,
# PostgreSQL's undefined_column/undefined_table, MySQL's ER_BAD_FIELD_ERROR/ER_NO_SUCH_TABLE.
_POSTGRES_MISSING_STATES = ("42703", "42P01")
_MYSQL_MISSING_CODES = (1054, 1146)
_SQLITE_MISSING = re.compile(
    r"no such (?P<kind>column|table): (?P<name>[\w.]+)|"
    r"table (?P<table>\w+) has no column named (?P<column>\w+)"
)
_SERVER_MISSING = re.compile(
    r'(?P<kind>column|relation) "?(?P<name>[^"\s]+)"?(?: of relation "(?P<table>[^"]+)")? '
    r"does not exist|Unknown column '(?P<column>[^']+)'|Table '(?P<relation>[^']+)' doesn't "
    r"exist"
)
# The database cannot be reached: SQLite's file cannot be opened, a server refuses or drops
# the connection (psycopg, PyMySQL).
_UNAVAILABLE_MARKERS = (
    "unable to open database",
    "connection refused",
    "could not connect",
    "can't connect",
    "lost connection",
    "server closed the connection",
)


def translate(exc: Exception) -> StorageError:
    """Return the storage error that stands for a SQLAlchemy error or a driver (DBAPI) error.

    A storage error is returned as it is. The others keep SQLAlchemy's ``statement``,
    ``params`` and ``orig`` (see the footnote of the tree above).
    """
    if isinstance(exc, StorageError):
        return exc
    if isinstance(exc, sa_exc.StatementError):
        context: tuple[Any, ...] = (exc.statement, exc.params, exc.orig)
    else:
        context = (None, None, exc)
    if isinstance(exc, sa_exc.DBAPIError):
        driver_error: BaseException | None = exc.orig
    elif isinstance(exc, sa_exc.SQLAlchemyError):
        return StorageError(f"database error ({type(exc).__name__})")
    else:
        driver_error = exc
    # By code: MariaDB reports a failed CHECK as an OperationalError.
    broken = broken_constraint(driver_error)
    if broken is not None or isinstance(exc, sa_exc.IntegrityError):
        message = str(broken) if broken else "a database constraint rejected the write"
        return IntegrityConflictError(message, *context)
    kind = type(driver_error).__name__
    text = str(driver_error).lower()
    missing = _missing_schema(driver_error)
    if missing is not None:
        return MissingColumnError(
            f"the database has no {missing} that the models have: migrate it (see the "
            "migrations documentation)",
            *context,
        )
    if is_busy(driver_error) or (
        not _has_code(driver_error) and any(marker in text for marker in _BUSY_MARKERS)
    ):
        return DatabaseBusyError(
            "the database is busy with another transaction; try again", *context
        )
    if any(marker in text for marker in _UNAVAILABLE_MARKERS):
        return DatabaseUnavailableError(f"the database cannot be reached ({kind})", *context)
    if isinstance(exc, sa_exc.DataError) or kind == "DataError":
        return ColumnValueError(f"a value does not fit its column ({kind})", *context)
    return DriverError(f"database error ({kind})", *context)


@contextmanager
def translate_driver_errors() -> Iterator[None]:
    """Re-raise SQLAlchemy errors raised in the block as :class:`StorageError`."""
    try:
        yield
    except StorageError:
        raise  # already translated (a nested block), and maybe also a SQLAlchemyError
    except sa_exc.SQLAlchemyError as exc:
        raise translate(exc) from exc


_Found = TypeVar("_Found")


def require_found(value: _Found | None, error: StorageError) -> _Found:
    """``value``, unless it is ``None``: then raise ``error`` (a not-found error that names
    what was looked for). The one get-or-raise of the routers and stores."""
    if value is None:
        raise error
    return value

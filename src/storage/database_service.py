"""vention-storage 0.20's ``DatabaseService``: the ``/db`` operations without a transport.

For code written against vention-storage. Each method is a thin layer over this library's
modules (the ones the ``/db`` routes use), so health really queries the database, backups and
exports work on every backend while writers carry on, and a restore goes into the live database
in one atomic step. Its errors carry vention-storage's ``code`` and are also this library's
errors (``DependencyError`` is a :class:`storage.errors.MissingDependencyError`, ...).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text

from storage import backup, diagram, errors, export
from storage import database as storage_database
from storage.auditor import AuditLog, audit_filters, newest_first
from storage.database import Database
from storage.restore import restore_upload

__all__ = [
    "DatabaseError",
    "DatabaseService",
    "DependencyError",
    "OperationalError",
    "ValidationError",
]


class DatabaseError(errors.StorageError):
    """Base class of the service's errors; ``code`` names the kind, as in vention-storage."""

    def __init__(self, message: str, code: str = "UNKNOWN") -> None:
        super().__init__(message)
        self.code = code


class DependencyError(DatabaseError, errors.MissingDependencyError):
    """An optional package or program is missing (``code`` ``DEPENDENCY_ERROR``)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="DEPENDENCY_ERROR")


class ValidationError(DatabaseError, errors.ValidationError):
    """A file or filter that cannot be used (``code`` ``VALIDATION_ERROR``)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="VALIDATION_ERROR")


class OperationalError(DatabaseError):
    """The database failed the operation (``code`` ``OPERATIONAL_ERROR``)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="OPERATIONAL_ERROR")


class DatabaseService:
    """Health, audit queries, the schema diagram, export, backup and restore.

    Args:
        audit_default_limit: rows :meth:`read_audit` returns when no ``limit`` is given.
        audit_max_limit: the most rows it returns.
        database: the database served; default :func:`storage.database.get_database`, at
            each call.
    """

    def __init__(
        self,
        *,
        audit_default_limit: int = 100,
        audit_max_limit: int = 1000,
        database: Database | None = None,
    ) -> None:
        self.audit_default_limit = audit_default_limit
        self.audit_max_limit = audit_max_limit
        self._database = database

    @property
    def database(self) -> Database:
        """The database given, else the default one at the time of the call."""
        return self._database or storage_database.get_database()

    def health(self) -> dict[str, str]:
        """``{"status": "ok"}`` once a query ran on the database.

        Raises:
            OperationalError: the database cannot be reached.
        """
        with _translated():
            with self.database.read_session() as session:
                session.execute(text("SELECT 1"))
        return {"status": "ok"}

    def read_audit(
        self,
        *,
        component: str | None = None,
        record_id: Any = None,
        actor: str | None = None,
        operation: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[AuditLog]:
        """Audit rows matching every filter given, newest first (``since`` inclusive, ``until``
        exclusive; ``limit`` at most ``audit_max_limit``)."""
        limit = min(limit or self.audit_default_limit, self.audit_max_limit)
        with _translated():
            conditions = audit_filters(
                component=component,
                record_id=record_id,
                actor=actor,
                operation=operation,
                since=since,
                until=until,
            )
            statement = newest_first(conditions, offset=offset, limit=limit)
            with self.database.read_session() as session:
                return list(session.scalars(statement).all())

    def schema_diagram_svg(self) -> bytes:
        """The schema diagram as SVG bytes.

        Raises:
            DependencyError: the ``diagram`` extra is not installed.
        """
        with _translated():
            return diagram.render_svg(database=self.database)

    def export_zip(self) -> bytes:
        """Every table as ``{table}.csv`` in one zip."""
        buffer = io.BytesIO()
        with _translated():
            export.write_export(buffer, database=self.database)
        return buffer.getvalue()

    def backup_sqlite(self) -> dict[str, Any]:
        """A consistent snapshot: ``{"filename": "backup-<UTC time>.sqlite", "data": bytes}``."""
        with _translated(), backup.open_snapshot(database=self.database) as snapshot:
            data = snapshot.read()
        return {"filename": f"backup-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.sqlite", "data": data}

    def restore_sqlite(
        self,
        file_bytes: bytes,
        *,
        filename: str = "upload.sqlite",
        integrity_check: bool = True,
        dry_run: bool = False,
        actor: str = "internal",
    ) -> dict[str, Any]:
        """Check a SQLite snapshot and, unless ``dry_run``, restore it into the live database,
        then call the ``on_database_restored`` listeners. ``filename`` is not used.

        Returns:
            ``{"status": "ok", "restored": bool, "bytes": int}``.

        Raises:
            ValidationError: the file cannot be restored; nothing was changed.
        """
        with _translated():
            summary = restore_upload(
                io.BytesIO(file_bytes),
                actor=actor,
                integrity_check=integrity_check,
                dry_run=dry_run,
                database=self.database,
            )
        return {"status": "ok", "restored": summary.restored, "bytes": summary.bytes}


@contextmanager
def _translated() -> Iterator[None]:
    # This library's errors as the service's, keeping their message.
    try:
        yield
    except DatabaseError:
        raise
    except errors.MissingDependencyError as exc:
        raise DependencyError(str(exc)) from exc
    except (errors.RestoreError, errors.ValidationError, ValueError) as exc:
        raise ValidationError(str(exc)) from exc
    except errors.StorageError as exc:
        raise OperationalError(str(exc)) from exc

"""machine-storage: audited storage for machine apps on SQLModel and FastAPI."""

from __future__ import annotations

from storage._verification import ChainReport, verify_chain
from storage.accessor import ModelAccessor
from storage.auditor import AuditLog
from storage.bootstrap import bootstrap
from storage.changes import (
    Change,
    ChangeEvent,
    notify_database_restored,
    off_database_restored,
    on_database_restored,
)
from storage.database import get_engine, set_database_url, transaction, use_session
from storage.errors import (
    ColumnValueError,
    ConfigurationError,
    ConflictError,
    DatabaseBusyError,
    DatabaseUnavailableError,
    DeletedParentError,
    DriverError,
    IntegrityConflictError,
    LiveChildrenError,
    MigrationError,
    MigrationExecutionError,
    MissingDependencyError,
    NotFoundError,
    PayloadTooLargeError,
    PreconditionFailedError,
    RecordDeletedError,
    RecordLimitError,
    RestoreConflictError,
    RestoreError,
    SchemaDriftError,
    SoftDeleteNotSupported,
    StorageError,
    UnsupportedMigrationError,
    ValidationError,
)
from storage.migrations import apply_sqlmodel_migrations, plan_sqlmodel_migrations

__all__ = [
    "AuditLog",
    "ChainReport",
    "Change",
    "ChangeEvent",
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
    "MissingDependencyError",
    "ModelAccessor",
    "NotFoundError",
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
    "apply_sqlmodel_migrations",
    "bootstrap",
    "get_engine",
    "notify_database_restored",
    "off_database_restored",
    "on_database_restored",
    "plan_sqlmodel_migrations",
    "set_database_url",
    "transaction",
    "use_session",
    "verify_chain",
]

"""vention-storage's ``storage.utils`` (0.5.1 and 0.20), for code written against it.

The names are this library's where it has them (``utcnow`` and the audit operations of
:mod:`storage.auditor`, ``ChangeOperation`` of :mod:`storage.changes`); the small helpers are
kept as vention-storage defines them.
"""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Any, TypeVar, cast, get_args

from sqlmodel import SQLModel

from storage._listeners import ChangeOperation
from storage.auditor import AuditOperation, utcnow

__all__ = [
    "ChangeOperation",
    "ModelType",
    "Operation",
    "parse_audit_datetime",
    "parse_audit_operation",
    "to_primitive",
    "utcnow",
]

ModelType = TypeVar("ModelType", bound=SQLModel)
Operation = AuditOperation  # "create", "update", "delete", "soft_delete", "restore"


def to_primitive(value: Any) -> Any:
    """A datetime, date or time as its ISO 8601 text; any other value unchanged."""
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    return value


def parse_audit_operation(operation: str | None) -> Operation | None:
    """Check an audit operation name.

    Raises:
        ValueError: it is not one of the audit log's operations.
    """
    if operation is None:
        return None
    if operation not in get_args(Operation):
        raise ValueError(f"Invalid operation: {operation}. Must be one of {get_args(Operation)}")
    return cast(Operation, operation)


def parse_audit_datetime(dt_str: str | None) -> datetime | None:
    """An ISO 8601 timestamp (``Z`` accepted for UTC) as a datetime."""
    if dt_str is None:
        return None
    return datetime.fromisoformat(dt_str.replace("Z", "+00:00"))

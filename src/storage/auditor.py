"""The audit log: one row per write, with who, when, and the row before and after.

Snapshots are JSON-safe dictionaries of the row's column values: datetimes, dates and times as
ISO 8601 strings, UUIDs and decimals as strings, enums as their values, bytes as base64. A
missing snapshot is SQL NULL, never the JSON string ``"null"``.
"""

from __future__ import annotations

import base64
import math
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel
from sqlalchemy import (
    JSON,
    Column,
    ColumnElement,
    DateTime,
    Dialect,
    String,
    Table,
    insert,
)
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, Session, SQLModel, col, select
from sqlmodel.sql.expression import SelectOfScalar

from storage import _chain as chain
from storage import changes

__all__ = ["AuditLog", "RecordId", "UTCDateTime", "audit_operation", "to_json_safe", "utcnow"]

AuditOperation = Literal["create", "update", "delete", "soft_delete", "restore"]
_AUDIT_OPERATIONS: tuple[str, ...] = ("create", "update", "delete", "soft_delete", "restore")


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """``value`` as a timezone-aware UTC datetime (a naive one is taken to be UTC already).

    Raises:
        ValueError: in UTC it falls outside the years 1-9999 (``9999-12-31T23:59:59-23:59``).
    """
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{value.isoformat()} is out of range once converted to UTC") from None


def naive_utc(value: datetime) -> datetime:
    """``value`` in UTC without its timezone, as timestamps are stored (a naive one is taken to
    be UTC already).

    Raises:
        ValueError: as :func:`as_utc`.
    """
    return value if value.tzinfo is None else as_utc(value).replace(tzinfo=None)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored as naive UTC on every backend and read back timezone-aware."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else naive_utc(value)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class RecordId(TypeDecorator[str]):
    """A primary-key value of any type (int, str, UUID) stored as text.

    Values are converted to ``str`` when bound, so ``AuditLog.record_id == 123`` keeps working
    for code written when record ids were integers.
    """

    impl = String(255)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else str(value)


class AuditLog(SQLModel, table=True):
    """One audited write."""

    # Exported with the rest, never imported: history is written by the writes themselves.
    __table_args__ = {"info": {"importable": False}}

    id: int | None = Field(default=None, primary_key=True)
    timestamp: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False, index=True)
    )
    component: str = Field(index=True, max_length=255)
    record_id: str = Field(sa_column=Column(RecordId(), nullable=False, index=True))
    operation: str = Field(max_length=32)
    actor: str = Field(index=True, max_length=255)
    before: dict[str, Any] | None = Field(
        default=None, sa_column=Column(JSON(none_as_null=True), nullable=True)
    )
    after: dict[str, Any] | None = Field(
        default=None, sa_column=Column(JSON(none_as_null=True), nullable=True)
    )
    # The hash chain (storage._chain): NULL in rows written before it existed.
    prev_hash: str | None = Field(default=None, max_length=64)
    hash: str | None = Field(default=None, max_length=64)


AUDIT_TABLE: Table = AuditLog.__table__  # type: ignore[attr-defined]
_AUDIT_INSERT = insert(AUDIT_TABLE)


def to_json_safe(value: Any) -> Any:
    """Convert a column value into something ``json.dumps`` accepts without losing meaning."""
    kind = type(value)
    if value is None or kind is str or kind is int or kind is bool:
        return value
    if isinstance(value, Enum):
        return to_json_safe(value.value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, uuid.UUID | Decimal):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, Mapping):
        return {str(key): to_json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_json_safe(item) for item in value]
    return str(value)


def audit_row(
    *,
    component: str,
    operation: str,
    record_id: Any,
    actor: str,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    timestamp: datetime | None = None,
) -> dict[str, Any]:
    """Build the column values of one audit row (for :func:`write_audit_rows`)."""
    return {
        "timestamp": timestamp or utcnow(),
        "component": component,
        "record_id": str(record_id),
        "operation": operation,
        "actor": actor,
        "before": before,
        "after": after,
    }


def write_audit_rows(session: Session, rows: Iterable[dict[str, Any]]) -> None:
    """Insert audit rows in one bulk statement inside the session's transaction, chained to
    the log's hash chain (:func:`storage._chain.link`: the chain's head stays locked until the
    transaction ends)."""
    batch = [dict(row) for row in rows]
    if batch:
        # Core on the session's connection: no ORM bookkeeping for rows nobody loads back.
        connection = session.connection()
        chain.link(connection, AUDIT_TABLE, batch)
        connection.execute(_AUDIT_INSERT, batch)
        changes.mark_audited(session)
        if changes.counting():
            counts = Counter((row["component"], row["operation"]) for row in batch)
            for (component, operation), written in counts.items():
                changes.tally(session, "audit", component, operation, written)


def audit_operation(
    *,
    session: Session,
    component: str,
    operation: str,
    record_id: Any,
    actor: str,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> None:
    """Record one write in the audit log, in ``session``'s transaction.

    Args:
        session: the session whose transaction holds the write.
        component: the accessor's component name (e.g. ``"users"``).
        operation: one of :data:`_AUDIT_OPERATIONS` (other strings are stored as given).
        record_id: the primary key of the written row (int, str or UUID).
        actor: who made the change.
        before: the row before the write (JSON-safe values), if any.
        after: the row after the write (JSON-safe values), if any.
    """
    write_audit_rows(
        session,
        [
            audit_row(
                component=component,
                operation=operation,
                record_id=record_id,
                actor=actor,
                before=to_json_safe(before) if before is not None else None,
                after=to_json_safe(after) if after is not None else None,
            )
        ],
    )


def newest_first(
    conditions: Iterable[ColumnElement[bool]], *, offset: int, limit: int
) -> SelectOfScalar[AuditLog]:
    """The audit rows matching ``conditions`` (see :func:`audit_filters`), newest first, one
    page of them."""
    return (
        select(AuditLog)
        .where(*conditions)
        .order_by(col(AuditLog.timestamp).desc(), col(AuditLog.id).desc())
        .offset(offset)
        .limit(limit)
    )


def audit_filters(
    *,
    component: str | None = None,
    record_id: Any = None,
    actor: str | None = None,
    operation: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[ColumnElement[bool]]:
    """The conditions on :class:`AuditLog` that select rows matching every filter given.

    ``since`` is inclusive, ``until`` exclusive; a naive datetime is taken to be UTC.

    Raises:
        ValueError: a datetime is out of range once converted to UTC.
    """
    conditions: list[ColumnElement[bool]] = [
        col(column) == value
        for column, value in (
            (AuditLog.component, component),
            (AuditLog.record_id, record_id),
            (AuditLog.actor, actor),
            (AuditLog.operation, operation),
        )
        if value is not None
    ]
    if since is not None:
        conditions.append(col(AuditLog.timestamp) >= as_utc(since))
    if until is not None:
        conditions.append(col(AuditLog.timestamp) < as_utc(until))
    return conditions

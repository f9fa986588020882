"""``RowShape``: what the accessor needs to know about one table model's rows.

Its key, its columns, whether it soft-deletes, and how to turn an instance into the JSON-safe
snapshot that the audit log, the change feed and entity tags are made of.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Column, ColumnElement, Select, Table, bindparam, inspect, select
from sqlalchemy.orm import Mapper
from sqlalchemy.sql.elements import UnaryExpression

from storage.auditor import UTCDateTime, to_json_safe, utcnow
from storage.prepared import PreparedRead

__all__ = ["IN_CHUNK", "SOFT_DELETE_COLUMN", "RowShape", "in_chunks", "single_key"]

SOFT_DELETE_COLUMN = "deleted_at"
IN_CHUNK = 500
"""Values per ``IN (...)`` list: well under every backend's limit of bound parameters."""


def in_chunks(values: Sequence[Any]) -> Iterator[Sequence[Any]]:
    """``values`` in slices of at most :data:`IN_CHUNK`, one ``IN (...)`` list each."""
    for start in range(0, len(values), IN_CHUNK):
        yield values[start : start + IN_CHUNK]


def single_key(table: Table) -> Any:
    """The table's primary-key column, or ``None`` when the key has several columns."""
    columns = list(table.primary_key.columns)
    return columns[0] if len(columns) == 1 else None


class RowShape:
    """The key, columns and soft-delete column of a mapped model.

    Raises:
        TypeError: ``model`` is not a table model.
        ValueError: the primary key has more than one column.
    """

    def __init__(self, model: type[Any]) -> None:
        table = getattr(model, "__table__", None)
        if table is None:
            raise TypeError(f"{model.__name__} is not a table model (declare it with table=True)")
        mapper: Mapper[Any] = inspect(model)
        if len(mapper.primary_key) != 1:
            raise ValueError(f"{model.__name__}: only single-column primary keys are supported")
        self.model = model
        self.mapper = mapper
        self.table_name: str = table.name
        self.pk_column: Column[Any] = mapper.primary_key[0]  # type: ignore[assignment]
        self.primary_key: str = mapper.get_property_by_column(self.pk_column).key
        self.columns: tuple[str, ...] = tuple(attr.key for attr in mapper.column_attrs)
        self.soft_delete: bool = SOFT_DELETE_COLUMN in self.columns
        self._names = tuple((attr.key, attr.columns[0].name) for attr in mapper.column_attrs)
        self._deleted_at = table.c[SOFT_DELETE_COLUMN] if self.soft_delete else None
        # Built once: the read by key is a hot path (GET /{component}/{id}).
        self.select_by_key: Select[Any] = select(
            *(attr.columns[0].label(attr.key) for attr in mapper.column_attrs)
        ).where(self.pk_column == bindparam("key"))
        self.read_by_key = PreparedRead(self.select_by_key)

    def coerce_key(self, id: Any) -> Any:
        """Convert a key given as text (from a URL) to the column's type.

        Raises:
            ValueError: the text is not a valid key for this model.
        """
        if not isinstance(id, str):
            return id
        try:
            python_type = self.pk_column.type.python_type
        except NotImplementedError:
            return id
        if python_type is int:
            return int(id)
        if python_type is uuid.UUID:
            return uuid.UUID(id)
        return id

    def snapshot(self, obj: Any) -> dict[str, Any]:
        """The instance's column values, JSON-safe."""
        values = obj.__dict__  # loaded column values live here; expired ones are loaded below
        return {
            name: to_json_safe(values[name] if name in values else getattr(obj, name))
            for name in self.columns
        }

    def row(self, obj: Any) -> dict[str, Any]:
        """The instance's column values by column name, as Core statements read rows."""
        return {name: getattr(obj, key) for key, name in self._names}

    def committed_snapshot(self, obj: Any) -> dict[str, Any]:
        """The row as the database has it, even when the caller changed the loaded instance."""
        state = inspect(obj)
        snapshot = {}
        for name in self.columns:
            history = state.attrs[name].history
            value = history.deleted[0] if history.deleted else getattr(obj, name)
            snapshot[name] = to_json_safe(value)
        return snapshot

    def instance(self, values: Mapping[str, Any] | None, *, include_deleted: bool) -> Any | None:
        """A new instance (in no session) of a row read with :attr:`select_by_key`; ``None``
        when there is no row, or it is soft-deleted and deleted rows are not wanted."""
        if values is None:
            return None
        # As the ORM loads a row: no __init__, no validation; the values as stored.
        obj = self.mapper.class_manager.new_instance()
        obj.__dict__.update(values)
        return None if not include_deleted and self.is_deleted(obj) else obj

    def is_deleted(self, obj: Any) -> bool:
        """Whether the instance is soft-deleted."""
        return self.soft_delete and getattr(obj, SOFT_DELETE_COLUMN) is not None

    def deleted_at_now(self) -> datetime:
        """The current time, aware or naive to match the ``deleted_at`` column."""
        column_type = self._deleted_at.type if self._deleted_at is not None else None
        aware = isinstance(column_type, UTCDateTime) or getattr(column_type, "timezone", False)
        now = utcnow()
        return now if aware else now.replace(tzinfo=None)

    def check_updatable(self, fields: dict[str, Any]) -> None:
        """Refuse unknown fields, the key and ``deleted_at`` before anything is written.

        Raises:
            ValueError: naming the first field that cannot be updated.
        """
        for name in fields:
            if name not in self.columns:
                raise ValueError(f"{self.model.__name__} has no field {name!r}")
            if name == self.primary_key:
                raise ValueError(f"the primary key {name!r} cannot be updated")
            if name == SOFT_DELETE_COLUMN:
                raise ValueError("deleted_at is managed by delete() and restore()")

    def filters(
        self, conditions: Sequence[ColumnElement[bool] | bool], include_deleted: bool
    ) -> list[Any]:
        """The caller's conditions plus "not soft-deleted" unless deleted rows are wanted."""
        filters: list[Any] = list(conditions)
        if self._deleted_at is not None and not include_deleted:
            filters.append(self._deleted_at.is_(None))
        return filters

    def order(self, order_by: str | None, desc: bool) -> list[UnaryExpression[Any]]:
        """ORDER BY a column, the key breaking ties so that pages never overlap or skip rows.

        Raises:
            ValueError: ``order_by`` is not a column of the model.
        """
        key = self.pk_column.desc() if desc else self.pk_column.asc()
        if order_by is None or order_by == self.primary_key:
            return [key]
        if order_by not in self.columns:
            raise ValueError(f"{self.model.__name__} has no column {order_by!r} to order by")
        column = getattr(self.model, order_by)
        return [column.desc() if desc else column.asc(), key]

"""The foreign key a write broke, for databases whose error does not say (SQLite): the first
column whose value names no existing parent row."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import Table, select
from sqlalchemy.exc import SQLAlchemyError

if TYPE_CHECKING:
    from storage.database import Database

__all__ = ["missing_parent"]


def missing_parent(db: Database, table: Table, written: Iterable[Any]) -> str | None:
    """``table.column`` of the first foreign key (of one column) for which a value among
    ``written`` (model instances, or mappings of column values) has no parent row in the
    committed data; ``None`` when every parent exists or the database cannot be asked. One
    query per foreign key, on a connection of its own."""
    items = list(written)
    for key in sorted(table.foreign_keys, key=lambda fk: fk.parent.name):
        if key.constraint is not None and len(key.constraint.columns) != 1:
            continue
        name, target = key.parent.name, key.column
        values = {value for item in items if (value := _value(item, name)) is not None}
        if not values:
            continue
        try:
            # A connection of its own: the write's session failed and must not be used.
            with db.read_engine().connect() as connection:
                found = set(connection.scalars(select(target).where(target.in_(values))))
        except SQLAlchemyError:
            return None  # the write's own error stands as it is
        if values - found:
            return f"{table.name}.{name}"
    return None


def _value(item: Any, name: str) -> Any:
    return item.get(name) if isinstance(item, Mapping) else getattr(item, name, None)

"""The rows a delete takes with it, found before the parent goes so that each gets its audit row
in the same transaction.

For each foreign key (of one column) that points at the deleted rows' table::

    an ORM relationship with cascade "delete", or ON DELETE CASCADE
        the child rows go too: audited as ``delete``, and their own children are looked for
    an ORM relationship without it (SQLAlchemy sets the key to NULL), or ON DELETE SET NULL
        the child rows stay with the key NULL: audited as ``update``
    neither (NO ACTION, RESTRICT)
        the database refuses the delete (a 409) or keeps the rows as they are: nothing to audit

One ``SELECT`` per foreign key and level, in chunks of keys; never one per row. A foreign key of
several columns, and a child table whose key is not one column, are left out of the search
(their rows are not audited; the documentation says so).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TypeVar

from sqlalchemy import Column, ForeignKey, Table, inspect, select
from sqlalchemy.orm import Session
from sqlmodel import SQLModel

from storage._rows import in_chunks, single_key
from storage.auditor import audit_row, to_json_safe

__all__ = [
    "Dependant",
    "audit_rows_of",
    "component_of",
    "dependants",
    "orm_effects",
    "per_models",
    "register_component",
]

_REFERENCES: dict[Any, list[tuple[ForeignKey, str]]] = {}
T = TypeVar("T")
# The component of each table an accessor was made for (the latest one), which the audit rows
# of rows a delete takes with it are filed under; a table without one goes by its name.
_COMPONENTS: dict[str, str] = {}


@dataclass(frozen=True)
class Dependant:
    """A row a delete changes besides the rows it names: removed, or its key set to NULL."""

    table: Table
    operation: Literal["delete", "update", "soft_delete", "restore"]
    key: Any
    before: dict[str, Any]
    after: dict[str, Any] | None


def register_component(table: str, component: str) -> None:
    """File the audit rows of ``table``'s rows that other writes take with them under
    ``component`` (the accessor made last for the table wins)."""
    _COMPONENTS[table] = component


def component_of(table: str) -> str:
    """The component the audit rows of ``table``'s dependant rows are filed under."""
    return _COMPONENTS.get(table, table)


def dependants(session: Session, table: Table, keys: Sequence[Any]) -> list[Dependant]:
    """The rows that deleting the rows ``keys`` of ``table`` removes or changes, children
    before grandchildren, each row once."""
    found: list[Dependant] = []
    seen: set[tuple[str, Any]] = set()
    level = [(table, list(keys))]
    while level:
        below: list[tuple[Table, list[Any]]] = []
        for parent, parent_keys in level:
            for foreign_key, effect in _references(parent):
                child = foreign_key.parent.table
                removed = []
                for row in _rows(session, foreign_key.parent, parent_keys):
                    key = row[single_key(child).name]
                    if (child.name, key) in seen:
                        continue
                    seen.add((child.name, key))
                    found.append(_change(child, effect, key, row, foreign_key.parent))
                    removed.append(key)
                if effect == "delete" and removed:
                    below.append((child, removed))
        level = below
    return found


def _change(
    table: Table, effect: str, key: Any, row: dict[str, Any], column: Column[Any]
) -> Dependant:
    before = {name: to_json_safe(value) for name, value in row.items()}
    if effect == "delete":
        return Dependant(table, "delete", key, before, None)
    return Dependant(table, "update", key, before, {**before, column.name: None})


def _references(parent: Table) -> list[tuple[ForeignKey, str]]:
    """The single-column foreign keys pointing at ``parent``, and what a delete does to the
    rows holding them: searched once per table while no model is added, not on every delete."""
    return per_models(_REFERENCES, (parent.name,), lambda: list(_search(parent)))


def per_models(
    cache: dict[Any, list[T]], key: tuple[str, ...], compute: Callable[[], list[T]]
) -> list[T]:
    """``compute()``, remembered in ``cache`` under ``key`` until a table or a mapper is added
    to the models (a module imported late)."""
    full = (*key, len(SQLModel.metadata.tables), len(SQLModel._sa_registry.mappers))
    found = cache.get(full)
    if found is None:
        found = cache[full] = compute()
    return found


def _search(parent: Table) -> Iterator[tuple[ForeignKey, str]]:
    orm = orm_effects(parent)
    for child in SQLModel.metadata.tables.values():
        if single_key(child) is None:
            continue
        for constraint in child.foreign_key_constraints:
            if len(constraint.elements) != 1 or constraint.referred_table is not parent:
                continue
            element = constraint.elements[0]
            effect = orm.get(element.parent) or _database_effect(constraint.ondelete)
            if effect is not None:
                yield element, effect


def _database_effect(ondelete: str | None) -> str | None:
    rule = (ondelete or "").upper()
    if rule == "CASCADE":
        return "delete"
    return "update" if rule == "SET NULL" else None


def orm_effects(parent: Table) -> dict[Column[Any], str]:
    """What the ORM does to the children of a deleted ``parent`` instance, by their column."""
    model = next(
        (mapper for mapper in SQLModel._sa_registry.mappers if mapper.local_table is parent),
        None,
    )
    if model is None:
        return {}
    effects: dict[Column[Any], str] = {}
    for relationship in inspect(model.class_).relationships:
        if relationship.direction.name != "ONETOMANY" or relationship.passive_deletes:
            continue
        for _, remote in relationship.local_remote_pairs or ():
            if relationship.cascade.delete:
                effects[remote] = "delete"
            elif remote.nullable:  # else SQLAlchemy refuses the delete: nothing changes
                effects[remote] = "update"
    return effects


def _rows(session: Session, column: Column[Any], keys: list[Any]) -> Iterator[dict[str, Any]]:
    table = column.table
    for chunk in in_chunks(keys):
        statement = select(table).where(column.in_(chunk))
        for row in session.execute(statement).mappings():
            yield dict(row)


def audit_rows_of(
    taken: Sequence[Dependant], actor: str, now: datetime | None = None
) -> list[dict[str, Any]]:
    """The audit rows of the rows a write took with it, each filed under its table's
    component (see :func:`component_of`)."""
    return [
        audit_row(
            component=component_of(row.table.name),
            operation=row.operation,
            record_id=row.key,
            actor=actor,
            before=row.before,
            after=row.after,
            timestamp=now,
        )
        for row in taken
    ]

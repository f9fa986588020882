"""What soft-deleting a parent row does to the rows that refer to it: one policy per relation.

A relation is a foreign key of one column whose parent table has ``deleted_at``. Its policy::

    refuse   the parent cannot be soft-deleted while live rows refer to it (a 409 naming the
             children's table and how many)
    cascade  the live children are soft-deleted with the parent, in the same transaction, each
             audited; restoring the parent restores the children that cascade took (those
             whose ``deleted_at`` is the parent's), not ones deleted earlier on their own
    leave    the children stay as they are

The default follows what a hard delete does to the children (see :mod:`storage._cascades`): a
foreign key with ``ondelete="CASCADE"`` or an ORM relationship with cascade "delete" means
``cascade`` (``leave`` when the child table has no ``deleted_at`` to set: its rows go with the
parent when that is purged); every other foreign key (``SET NULL``, ``RESTRICT``,
``NO ACTION``, none) means ``refuse``. Another policy is set in the ``info`` of the foreign
key or of its column, under :data:`SOFT_DELETE_POLICY`::

    cell_id: int | None = Field(
        default=None, foreign_key="cell.id", sa_column_kwargs={"info": {"soft_delete": "leave"}}
    )

Whatever the policy, the accessor lets no live row be created under, moved to, or restored
under a soft-deleted parent (see :mod:`storage._softdelete`); the CSV import refuses such rows
under ``refuse`` and ``cascade`` only, since ``leave`` makes them and an export must import.
Relations are searched once per table while no model is added, not on every write.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, cast, get_args

from sqlalchemy import Column, ForeignKey, Table
from sqlmodel import SQLModel

from storage._cascades import orm_effects, per_models
from storage._rows import SOFT_DELETE_COLUMN

__all__ = ["SOFT_DELETE_POLICY", "SoftDeletePolicy"]

SoftDeletePolicy = Literal["refuse", "cascade", "leave"]
SOFT_DELETE_POLICY = "soft_delete"
"""The ``info`` key, on a ``ForeignKey`` or its ``Column``, that sets a relation's policy."""

_POLICIES: tuple[str, ...] = get_args(SoftDeletePolicy)
_CACHE: dict[Any, list[Relation]] = {}


@dataclass(frozen=True)
class Relation:
    """A single-column foreign key from ``child`` to a soft-delete ``parent`` table."""

    column: Column[Any]  # the child's column holding the reference
    referred: Column[Any]  # the parent's column it refers to (usually its key)
    policy: SoftDeletePolicy

    @property
    def child(self) -> Table:
        """The table holding the reference."""
        return self.column.table

    @property
    def parent(self) -> Table:
        """The soft-delete table referred to."""
        return self.referred.table

    @property
    def name(self) -> str:
        """``child.column``, as error messages name the relation."""
        return f"{self.child.name}.{self.column.name}"

    def live(self, table: Table | None = None) -> Any:
        """The condition "not soft-deleted" on the child table (or ``table``); ``True`` when
        it has no ``deleted_at``."""
        target = self.child if table is None else table
        deleted_at = target.c.get(SOFT_DELETE_COLUMN)
        return deleted_at.is_(None) if deleted_at is not None else True


def children_of(parent: Table) -> list[Relation]:
    """The relations referring to ``parent`` (empty unless it has ``deleted_at``).

    Raises:
        ValueError: a relation's ``info`` names an unknown policy, or ``cascade`` for a child
            table without ``deleted_at``.
    """
    return _cached("children", parent, _children)


def parents_of(child: Table) -> list[Relation]:
    """The relations from ``child``'s foreign keys to soft-delete tables.

    Raises:
        ValueError: as :func:`children_of`.
    """
    return _cached("parents", child, _parents)


def _policy_of(foreign_key: ForeignKey, *, orm_cascade: bool = False) -> SoftDeletePolicy:
    """The policy of one foreign key: its ``info`` (or its column's), else the default.

    Args:
        foreign_key: a single-column foreign key to a soft-delete table.
        orm_cascade: an ORM relationship deletes the children with the parent.

    Raises:
        ValueError: see :func:`children_of`.
    """
    column = foreign_key.parent
    child = column.table
    given = foreign_key.info.get(SOFT_DELETE_POLICY, column.info.get(SOFT_DELETE_POLICY))
    soft_child = SOFT_DELETE_COLUMN in child.c
    where = f"{child.name}.{column.name}"
    if given is not None:
        if given not in _POLICIES:
            raise ValueError(f"{where}: soft-delete policy {given!r} is not one of {_POLICIES}")
        if given == "cascade" and not soft_child:
            raise ValueError(
                f"{where}: soft-delete policy 'cascade' needs a {SOFT_DELETE_COLUMN} column on "
                f"{child.name}; use 'refuse' or 'leave'"
            )
        return cast(SoftDeletePolicy, given)
    if orm_cascade or (foreign_key.ondelete or "").upper() == "CASCADE":
        return "cascade" if soft_child else "leave"
    return "refuse"


def _cached(kind: str, table: Table, search: Any) -> list[Relation]:
    return per_models(_CACHE, (kind, table.name), lambda: list(search(table)))


def _relations() -> list[Relation]:
    found = []
    cascading: dict[Table, set[Column[Any]]] = {}
    for child in SQLModel.metadata.tables.values():
        for constraint in child.foreign_key_constraints:
            if len(constraint.elements) != 1:
                continue
            element = constraint.elements[0]
            parent = element.column.table
            if SOFT_DELETE_COLUMN not in parent.c or not isinstance(parent, Table):
                continue
            if parent not in cascading:
                effects = orm_effects(parent)
                cascading[parent] = {c for c, effect in effects.items() if effect == "delete"}
            policy = _policy_of(element, orm_cascade=element.parent in cascading[parent])
            found.append(Relation(element.parent, element.column, policy))
    return found


def _children(parent: Table) -> list[Relation]:
    return [relation for relation in _relations() if relation.parent is parent]


def _parents(child: Table) -> list[Relation]:
    return [relation for relation in _relations() if relation.child is child]

"""Soft delete across relations: the policies of :mod:`storage.relations` applied to rows.

Used alike by the accessor (delete, restore, insert, update), so by the CRUD routers, and by
the CSV importer. Every step is a bulk statement per relation and level, in chunks of keys,
never a statement per row; the caller's transaction holds them all, so a refusal leaves
nothing written.

Cascaded children take their parent's ``deleted_at``, to the value: restoring the parent
brings back, level by level, the children whose ``deleted_at`` equals the parent's. A child
deleted on its own earlier kept its own time and stays deleted; so that no such child shares
the parent's time, a cascade's time is later than every one of theirs, at the precision the
columns store (whole seconds in a MariaDB ``DATETIME``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Column, Table, func, select, update
from sqlalchemy.orm import Session

from storage._cascades import Dependant, component_of
from storage._listeners import Change, is_watched, record
from storage._rows import SOFT_DELETE_COLUMN, RowShape, in_chunks, single_key
from storage.auditor import UTCDateTime, naive_utc, to_json_safe
from storage.errors import DeletedParentError, LiveChildrenError, RestoreConflictError
from storage.relations import Relation, children_of, parents_of
from storage.uniqueness import live_holder

__all__ = ["Cascade", "check_moved", "check_parents", "refuse_taken_values", "restore_children"]

Row = Mapping[str, Any]  # column values by column name


@dataclass(frozen=True)
class _Taken:
    relation: Relation
    row: Row
    moment: datetime | None  # the deleted_at it takes (None: the cascade's, chosen later)


class Cascade:
    """What soft-deleting ``parents`` (rows of ``table``) does to the rows that refer to them.

    Made before the parents are written: it finds the live children that relations with the
    ``cascade`` policy take (and theirs, level by level), locking them (``FOR UPDATE``) so that
    a row being written under one of them meanwhile is found or, waiting, refused by
    :func:`check_parents`. :meth:`apply`, once the parents are written, soft-deletes those
    children and then refuses (raising) while relations with the ``refuse`` policy still have
    live children.

    Args:
        session: the writing transaction.
        table: the parents' table.
        parents: the parents' rows.
        moments: each parent's ``deleted_at`` when known (an import); ``None`` when the
            cascade's own, from :meth:`moment`, is given to :meth:`apply`.
    """

    def __init__(
        self,
        session: Session,
        table: Table,
        parents: Sequence[Row],
        moments: Sequence[datetime | None],
    ) -> None:
        self.session = session
        self.taken: list[_Taken] = []
        self.latest: datetime | None = None  # of the children already deleted
        self._levels: list[tuple[Table, list[Row]]] = [(table, list(parents))]
        self._walk(table, list(zip(parents, moments, strict=True)))

    def moment(self, now: datetime) -> datetime:
        """The ``deleted_at`` for the parents and their children: ``now`` (naive UTC), at the
        columns' precision, later than that of every child already deleted."""
        step = _precision(self.session, [table for table, _ in self._levels])
        moment = _truncate(now, step)
        if self.latest is not None and self.latest >= moment:
            moment = _truncate(self.latest, step) + step
        return moment

    def apply(self, moment: datetime | None = None) -> list[Dependant]:
        """Soft-delete the children found, then check the ``refuse`` relations.

        Returns:
            each child taken, for the audit log (children before grandchildren).

        Raises:
            LiveChildrenError: a ``refuse`` relation still has live children.
        """
        groups: dict[tuple[Table, datetime | None], list[_Taken]] = {}
        for taken in self.taken:
            groups.setdefault((taken.relation.child, taken.moment or moment), []).append(taken)
        found: list[Dependant] = []
        for (child, when), rows in groups.items():
            if when is None:
                raise ValueError("a cascade without its moment")  # a caller's mistake
            value = _for_column(when, child.c[SOFT_DELETE_COLUMN])
            keys = [taken.row[single_key(child).name] for taken in rows]
            for chunk in in_chunks(keys):
                statement = update(child).where(single_key(child).in_(chunk))
                self.session.execute(statement.values({SOFT_DELETE_COLUMN: value}))
            found += _changed(self.session, child, [t.row for t in rows], "soft_delete", value)
        self._refuse_live_children()
        return found

    def _walk(self, table: Table, level: list[tuple[Row, datetime | None]]) -> None:
        key = single_key(table)
        seen = {(table.name, row.get(key.name)) for row, _ in level} if key is not None else set()
        pending = [(table, level)]
        while pending:
            below = []
            for parent, rows in pending:
                for relation in children_of(parent):
                    child_key = single_key(relation.child)
                    if relation.policy != "cascade" or child_key is None:
                        continue
                    moments = {row.get(relation.referred.name): at for row, at in rows}
                    taken: list[tuple[Row, datetime | None]] = []
                    for row in _select(self.session, relation, moments, lock=True):
                        deleted_at = row[SOFT_DELETE_COLUMN]
                        if deleted_at is not None:
                            deleted_at = naive_utc(deleted_at)
                            self.latest = max(self.latest or deleted_at, deleted_at)
                        elif (relation.child.name, row[child_key.name]) not in seen:
                            seen.add((relation.child.name, row[child_key.name]))
                            moment = moments.get(row[relation.column.name])
                            self.taken.append(_Taken(relation, row, moment))
                            taken.append((row, moment))
                    if taken:
                        below.append((relation.child, taken))
                        self._levels.append((relation.child, [row for row, _ in taken]))
            pending = below

    def _refuse_live_children(self) -> None:
        for table, rows in self._levels:
            for relation in children_of(table):
                if relation.policy != "refuse":
                    continue
                values = _values(rows, relation.referred)
                live = 0
                for chunk in in_chunks(values):
                    statement = (
                        select(func.count())
                        .select_from(relation.child)
                        .where(relation.column.in_(chunk), relation.live())
                    )
                    if _snapshot_reads(self.session):
                        statement = statement.with_for_update(read=True)
                    live += int(self.session.scalar(statement) or 0)
                if live:
                    raise LiveChildrenError(_live_children(relation, values, live))


def restore_children(
    session: Session, table: Table, parents: Sequence[Row], moment: datetime
) -> list[Dependant]:
    """Restore the children that soft-deleting ``parents`` (rows of ``table``, just restored,
    deleted at ``moment``) took with it, level by level.

    Returns:
        each child restored, for the audit log.

    Raises:
        RestoreConflictError: a child's unique value is now held by a live row.
        DeletedParentError: a child also refers to another parent that is deleted.
    """
    restored: list[Dependant] = []
    pending: list[tuple[Table, Sequence[Row]]] = [(table, parents)]
    while pending:
        below: list[tuple[Table, Sequence[Row]]] = []
        for parent, rows in pending:
            for relation in children_of(parent):
                child, key = relation.child, single_key(relation.child)
                if relation.policy != "cascade" or key is None:
                    continue
                deleted_at = child.c[SOFT_DELETE_COLUMN]
                took = deleted_at == _for_column(moment, deleted_at)
                values = _values(rows, relation.referred)
                found = list(_select(session, relation, values, took, lock=True))
                if not found:
                    continue
                refuse_taken_values(session, child, found)
                for chunk in in_chunks([row[key.name] for row in found]):
                    statement = update(child).where(key.in_(chunk))
                    session.execute(statement.values({SOFT_DELETE_COLUMN: None}))
                restored += _changed(session, child, found, "restore", None)
                check_parents(session, child, [{**row, SOFT_DELETE_COLUMN: None} for row in found])
                below.append((child, found))
        pending = below
    return restored


def check_parents(
    session: Session,
    table: Table,
    rows: Sequence[Row],
    *,
    relations: Iterable[Relation] | None = None,
    policies: Iterable[str] = ("refuse", "cascade", "leave"),
) -> None:
    """Refuse live ``rows`` of ``table`` that refer to a soft-deleted parent.

    The parents are read with a shared lock (``FOR SHARE``; SQLite serializes writers), so
    that a parent cannot be soft-deleted between this check and the commit.

    Args:
        relations: only these relations of the table; default all of them.
        policies: only relations with these policies.

    Raises:
        DeletedParentError: naming the first deleted parent found.
    """
    live = [row for row in rows if row.get(SOFT_DELETE_COLUMN) is None]
    wanted = set(policies)
    for relation in parents_of(table) if relations is None else relations:
        if relation.policy not in wanted or not live:
            continue
        parent = relation.parent
        deleted_at = parent.c[SOFT_DELETE_COLUMN]
        for chunk in in_chunks(_values(live, relation.column)):
            statement = (
                select(relation.referred, deleted_at)
                .where(relation.referred.in_(chunk))
                .with_for_update(read=True)
            )
            for value, deleted in session.execute(statement):
                if deleted is not None:
                    raise DeletedParentError(
                        f"{component_of(parent.name)} {value} is deleted: restore it before "
                        f"referring to it ({relation.name})"
                    )


def check_moved(session: Session, shape: RowShape, obj: Any, before: Mapping[str, Any]) -> None:
    """Refuse a live row moved to (or brought back under) a soft-deleted parent by an update;
    ``before`` is its snapshot before the update.

    Raises:
        DeletedParentError: naming the parent.
    """
    table: Table = shape.model.__table__
    relations = parents_of(table)
    if not relations:
        return
    after = shape.snapshot(obj)
    revived = before.get(SOFT_DELETE_COLUMN) is not None and not shape.is_deleted(obj)
    moved = [
        relation
        for relation in relations
        if revived
        or before.get(shape.mapper.get_property_by_column(relation.column).key)
        != after.get(shape.mapper.get_property_by_column(relation.column).key)
    ]
    if moved:
        check_parents(session, table, [shape.row(obj)], relations=moved)


def refuse_taken_values(
    session: Session, table: Table, rows: Sequence[Row], component: str | None = None
) -> None:
    """Refuse to restore deleted ``rows`` of ``table`` while a live row holds one of their
    unique values (possible on PostgreSQL and SQLite, see :mod:`storage.uniqueness`).

    Raises:
        RestoreConflictError: naming the row and the holder.
    """
    held = live_holder(session, table, rows)
    if held is not None:
        columns, row, holder = held
        names = ", ".join(column.name for column in columns)
        component = component or component_of(table.name)
        raise RestoreConflictError(
            f"{component} {row[single_key(table).name]} cannot be restored: {component} {holder} "
            f"now holds its {names}; change or delete that one first"
        )


def _changed(
    session: Session, table: Table, rows: Sequence[Row], operation: str, value: Any
) -> list[Dependant]:
    key = single_key(table)
    if is_watched(table.name):
        record(
            session,
            [
                Change(table.name, "update", {**row, SOFT_DELETE_COLUMN: value}, dict(row))
                for row in rows
            ],
        )
    found = []
    for row in rows:
        before = {name: to_json_safe(item) for name, item in row.items()}
        after = {**before, SOFT_DELETE_COLUMN: to_json_safe(value)}
        found.append(Dependant(table, operation, row[key.name], before, after))  # type: ignore[arg-type]
    return found


def _live_children(relation: Relation, values: list[Any], live: int) -> str:
    parent = component_of(relation.parent.name)
    rows = "row" if live == 1 else "rows"
    if len(values) == 1:
        return (
            f"{parent} {values[0]} still has {live} live {rows} in {relation.child.name} "
            f"({relation.name}): delete or move them first"
        )
    return (
        f"{live} live {rows} in {relation.child.name} ({relation.name}) refer to the {parent} "
        "rows being deleted: delete or move them first"
    )


def _select(
    session: Session, relation: Relation, values: Iterable[Any], *where: Any, lock: bool = False
) -> Iterator[dict[str, Any]]:
    for chunk in in_chunks([value for value in values if value is not None]):
        statement = select(relation.child).where(relation.column.in_(chunk), *where)
        if lock:
            statement = statement.with_for_update()
        for row in session.execute(statement).mappings():
            yield dict(row)


def _snapshot_reads(session: Session) -> bool:
    # MySQL and MariaDB (REPEATABLE READ) read a transaction's first snapshot, which misses
    # children committed since; a locking read sees them. PostgreSQL (READ COMMITTED) reads
    # after each statement's start, and SQLite serializes writers.
    return session.get_bind().dialect.name in ("mysql", "mariadb")


def _values(rows: Iterable[Row], column: Column[Any]) -> list[Any]:
    return list(dict.fromkeys(row[column.name] for row in rows if row.get(column.name) is not None))


def _for_column(moment: datetime, column: Column[Any]) -> datetime:
    """``moment`` as the column stores it: aware for a timezone-aware column, else naive UTC."""
    aware = isinstance(column.type, UTCDateTime) or getattr(column.type, "timezone", False)
    naive = naive_utc(moment)
    return naive.replace(tzinfo=UTC) if aware else naive


def _precision(session: Session, tables: Iterable[Table]) -> timedelta:
    # MySQL and MariaDB keep the fractional seconds a DATETIME(fsp) declares (none by
    # default); the other backends keep microseconds.
    if session.get_bind().dialect.name not in ("mysql", "mariadb"):
        return timedelta(microseconds=1)
    digits = min(getattr(t.c[SOFT_DELETE_COLUMN].type, "fsp", None) or 0 for t in tables)
    return timedelta(microseconds=10 ** (6 - digits))


def _truncate(moment: datetime, step: timedelta) -> datetime:
    moment = naive_utc(moment)
    micros = step // timedelta(microseconds=1)
    return moment - timedelta(microseconds=moment.microsecond % micros) if micros > 1 else moment

"""Unique values and soft delete: a soft-deleted row stops holding its unique values where the
backend can say so.

On PostgreSQL and SQLite the unique constraints and unique indexes of a table with
``deleted_at`` are created as partial unique indexes (``... WHERE deleted_at IS NULL``): a new
row may take the value of a deleted one, and restoring the deleted one then is a 409
(:class:`~storage.errors.RestoreConflictError`). MariaDB and MySQL have no partial indexes: the
same index is a plain unique index there, so the deleted row keeps its value until it is purged
(the 409 of a create names it).

The models are changed when they are defined (or, for those defined earlier, when ``storage``
is imported): each ``UniqueConstraint`` of such a table becomes an ``Index(unique=True)`` with
``postgresql_where`` and ``sqlite_where``, each unique ``Index`` gets them. ``info={"live_unique":
False}`` in a table's ``__table_args__`` keeps its constraints as declared. Databases made before
keep their constraints: :func:`make_unique_live` (``machine-storage migrate live-unique``)
replaces them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Index,
    Table,
    UniqueConstraint,
    event,
    inspect,
    select,
    tuple_,
)
from sqlalchemy.orm import Mapper, Session
from sqlalchemy.schema import CreateIndex, CreateTable
from sqlmodel import SQLModel

from storage import database
from storage._rows import SOFT_DELETE_COLUMN, in_chunks
from storage.errors import UnsupportedMigrationError, translate_driver_errors

__all__ = ["live_only", "make_unique_live"]

_LIVE_UNIQUE = "live_unique"
"""The ``Table.info`` key that, set to ``False``, keeps a soft-delete table's unique
constraints as declared (a deleted row keeps holding its values)."""

_PARTIAL = ("postgresql", "sqlite")


def live_only(table: Table) -> None:
    """Make the unique constraints and indexes of ``table`` hold over live rows only (see the
    module documentation); nothing for a table without ``deleted_at``. Idempotent."""
    if SOFT_DELETE_COLUMN not in table.c or table.info.get(_LIVE_UNIQUE) is False:
        return
    live = table.c[SOFT_DELETE_COLUMN].is_(None)
    for constraint in [c for c in table.constraints if isinstance(c, UniqueConstraint)]:
        columns = list(constraint.columns)
        table.constraints.discard(constraint)
        for column in columns:
            column.unique = False  # else a copy of the table (a backup) makes it again
        name = constraint.name if isinstance(constraint.name, str) else _name(table, columns)
        Index(name, *columns, unique=True, postgresql_where=live, sqlite_where=live)
    for index in table.indexes:
        if index.unique and not _is_partial(index):
            for dialect in _PARTIAL:
                index.dialect_options[dialect]["where"] = live
            if index._column_flag:  # from Field(unique=True, index=True): copied as an index
                index._column_flag = False
                for column in index.columns:
                    column.index = column.unique = False


def unique_sets(table: Table) -> Iterator[list[Column[Any]]]:
    """The column sets of ``table``'s unique constraints and unique indexes."""
    for constraint in table.constraints:
        if isinstance(constraint, UniqueConstraint):
            yield list(constraint.columns)
    for index in table.indexes:
        if index.unique:
            yield [column for column in index.columns if isinstance(column, Column)]


def live_holder(
    session: Session, table: Table, rows: Sequence[Mapping[str, Any]]
) -> tuple[list[Column[Any]], Mapping[str, Any], Any] | None:
    """The first live row of ``table`` that holds a unique value of one of ``rows`` (deleted
    rows about to be restored), as ``(columns, row, holder's key)``; ``None`` when there is
    none. One query per unique set and chunk of rows."""
    key = next(iter(table.primary_key.columns))
    live = table.c[SOFT_DELETE_COLUMN].is_(None)
    for columns in unique_sets(table):
        names = [column.name for column in columns]
        wanted = [r for r in rows if all(r.get(name) is not None for name in names)]
        for chunk in in_chunks(wanted):
            if len(columns) == 1:
                condition = columns[0].in_([r[names[0]] for r in chunk])
            else:
                condition = tuple_(*columns).in_([tuple(r[n] for n in names) for r in chunk])
            found = session.execute(select(key, *columns).where(condition, live).limit(1)).first()
            if found is not None:
                values = tuple(found[1:])
                row = next((r for r in chunk if tuple(r[n] for n in names) == values), chunk[0])
                return columns, row, found[0]
    return None


def make_unique_live(engine: Engine | None = None) -> list[str]:
    """Replace, in a database made before, the unique constraints of soft-delete tables with
    the partial unique indexes the models now have (PostgreSQL: drop and create; SQLite: the
    table is rebuilt, its rows copied). Nothing on MariaDB and MySQL.

    Returns:
        what was done, one line per table or index.

    Raises:
        UnsupportedMigrationError: a SQLite table to rebuild has columns the models lack.
        StorageError: the database refused (a live value held twice, say); nothing changed.
    """
    engine = engine if engine is not None else database.get_engine()
    if engine.dialect.name not in _PARTIAL:
        return []
    done: list[str] = []
    with translate_driver_errors(), engine.connect() as connection:
        for table in SQLModel.metadata.sorted_tables:
            wanted = [i for i in table.indexes if i.unique and _is_partial(i)]
            if wanted and inspect(connection).has_table(table.name):
                done += _migrate(connection, table, wanted)
    return done


def _migrate(connection: Connection, table: Table, wanted: list[Index]) -> list[str]:
    inspector = inspect(connection)
    uniques = inspector.get_unique_constraints(table.name)
    found: list[tuple[Any, list[Any], bool]] = [
        (u["name"], u["column_names"], True) for u in uniques
    ]
    for reflected in inspector.get_indexes(table.name):
        partial = any(k.endswith("_where") for k in reflected.get("dialect_options", {}))
        if reflected["unique"] and not partial and not reflected.get("duplicates_constraint"):
            found.append((reflected["name"], reflected["column_names"], False))
    present = {reflected["name"] for reflected in inspector.get_indexes(table.name)}
    targets = [{c.name for c in i.columns} for i in wanted]
    stale = [(name, is_constraint) for name, cols, is_constraint in found if set(cols) in targets]
    if connection.dialect.name == "sqlite":
        if not stale and all(index.name in present for index in wanted):
            return []
        _rebuild_sqlite(connection, table)
        return [f"rebuilt table {table.name} with its unique indexes over live rows"]
    done = []
    quote = connection.dialect.identifier_preparer.quote
    for name, is_constraint in stale:
        if is_constraint:
            connection.exec_driver_sql(
                f"ALTER TABLE {quote(table.name)} DROP CONSTRAINT {quote(name)}"
            )
        else:
            connection.exec_driver_sql(f"DROP INDEX {quote(name)}")
        done.append(f"dropped unique {name} of {table.name}")
    for index in wanted:
        if index.name not in present:
            connection.execute(CreateIndex(index))
            done.append(f"created unique index {index.name} over live rows of {table.name}")
    connection.commit()  # PostgreSQL's DDL is transactional: a table at a time, all or nothing
    return done


def _rebuild_sqlite(connection: Connection, table: Table) -> None:
    # SQLite cannot drop a constraint: the documented way is a new table, the rows copied, the
    # old one dropped and the new one renamed, with foreign keys off meanwhile.
    columns = {column["name"] for column in inspect(connection).get_columns(table.name)}
    if columns != {column.name for column in table.columns}:
        raise UnsupportedMigrationError(
            f"table {table.name} has other columns than its model; migrate it first"
        )
    quote = connection.dialect.identifier_preparer.quote
    scratch = f"_live_{table.name}"
    ddl = str(CreateTable(table).compile(dialect=connection.dialect))
    ddl = ddl.replace(f"CREATE TABLE {quote(table.name)} (", f"CREATE TABLE {quote(scratch)} (", 1)
    names = ", ".join(quote(column.name) for column in table.columns)
    if connection.in_transaction():
        connection.commit()
    driver = connection.connection.driver_connection
    driver.execute("PRAGMA foreign_keys = OFF")  # type: ignore[union-attr]
    try:
        with connection.begin():
            connection.exec_driver_sql(ddl)
            connection.exec_driver_sql(
                f"INSERT INTO {quote(scratch)} ({names}) SELECT {names} FROM {quote(table.name)}"
            )
            connection.exec_driver_sql(f"DROP TABLE {quote(table.name)}")
            connection.exec_driver_sql(
                f"ALTER TABLE {quote(scratch)} RENAME TO {quote(table.name)}"
            )
            for index in table.indexes:
                connection.execute(CreateIndex(index))
            broken = connection.exec_driver_sql("PRAGMA foreign_key_check").first()
            if broken is not None:
                raise UnsupportedMigrationError(
                    f"table {table.name}: rows of {broken[0]} refer to missing rows; fix them first"
                )
    finally:
        driver.execute("PRAGMA foreign_keys = ON")  # type: ignore[union-attr]


def _is_partial(index: Index) -> bool:
    return any(index.dialect_options[dialect].get("where") is not None for dialect in _PARTIAL)


def _name(table: Table, columns: list[Column[Any]]) -> str:
    name = f"uq_{table.name}_{'_'.join(column.name for column in columns)}"
    if len(name) <= 60:  # every backend's identifier limit is 63 or more
        return name
    digest = hashlib.sha1(name.encode(), usedforsecurity=False).hexdigest()[:8]
    return f"{name[:51]}_{digest}"


@event.listens_for(Mapper, "after_mapper_constructed")
def _on_mapped(mapper: Mapper[Any], class_: type[Any]) -> None:
    if isinstance(mapper.local_table, Table):
        live_only(mapper.local_table)


for _table in list(SQLModel.metadata.tables.values()):  # models defined before this import
    live_only(_table)

"""The tables a database really holds, for work that must not depend on which models a
process happened to import (backups, the ``machine-storage`` command).

A script that imports no models still has the audit log's table on ``SQLModel.metadata`` and
nothing else; a backup made from that metadata alone would silently leave every other table
out. :func:`database_tables` reads the database's own catalogue instead: tables the models
define keep the models' definitions (exact types), the others are reflected with portable
types, so that they can be created in a SQLite snapshot and restored on any backend.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Boolean, CheckConstraint, Connection, MetaData, Table, event, inspect
from sqlalchemy.dialects.mysql import TINYINT
from sqlalchemy.engine.interfaces import ReflectedColumn
from sqlalchemy.engine.reflection import Inspector

__all__ = ["database_tables", "reflect_missing"]


def database_tables(connection: Connection, models: MetaData) -> list[Table]:
    """Every table in the database behind ``connection``, parents before children.

    Tables that ``models`` defines are given as the models define them; the others are
    reflected (see :func:`reflect_missing`) into a private metadata.
    """
    present = set(inspect(connection).get_table_names())
    combined = MetaData()
    for table in models.sorted_tables:
        if table.name in present:
            table.to_metadata(combined)
    _reflect(connection, combined, sorted(present - set(combined.tables)))
    return [table for table in combined.sorted_tables if table.name in present]


def reflect_missing(connection: Connection, models: MetaData) -> list[str]:
    """Add to ``models`` the tables of the database that it does not define yet.

    Returns:
        the names of the tables added, sorted.
    """
    missing = sorted(set(inspect(connection).get_table_names()) - set(models.tables))
    if not missing:
        return []
    reflected = MetaData()
    _reflect(connection, reflected, missing)
    for name in missing:
        reflected.tables[name].to_metadata(models)
    return missing


def _reflect(connection: Connection, metadata: MetaData, names: list[str]) -> None:
    if not names:
        return
    event.listen(metadata, "column_reflect", _portable_column)
    try:
        metadata.reflect(connection, only=names, extend_existing=False)
    finally:
        event.remove(metadata, "column_reflect", _portable_column)
    for name in names:
        _drop_checks(metadata.tables[name])


def _portable_column(inspector: Inspector, table: Table, column: ReflectedColumn) -> None:
    # Types become their generic kind (JSONB -> JSON, UUID -> Uuid, DOUBLE PRECISION ->
    # Double), which every backend can create; server-side defaults, identities and computed
    # expressions are the source dialect's SQL and mean nothing in another database.
    info: dict[str, Any] = column  # type: ignore[assignment]
    declared = info["type"]
    if isinstance(declared, TINYINT) and getattr(declared, "display_width", None) == 1:
        info["type"] = Boolean()  # how MySQL and MariaDB spell BOOLEAN
    else:
        try:
            info["type"] = declared.as_generic()
        except NotImplementedError:
            pass  # no generic kind (a PostgreSQL ARRAY): kept as it is
    for key in ("default", "identity", "computed", "comment"):
        info.pop(key, None)


def _drop_checks(table: Table) -> None:
    # CHECK constraints are written in the source dialect's SQL.
    for constraint in [c for c in table.constraints if isinstance(c, CheckConstraint)]:
        table.constraints.discard(constraint)

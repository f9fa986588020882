"""Checking a SQLite snapshot before it is restored: it holds data, never code.

:func:`check_snapshot` refuses a file that is not SQLite, is truncated or corrupt
(``PRAGMA integrity_check``, or at least ``quick_check``), or whose schema is not the app's:
triggers, views, tables and indexes the models do not define; missing tables or columns;
columns of another type affinity or primary key; values the app could not read back (text in
number columns, invalid JSON). The file is opened with ``trusted_schema`` off.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, MetaData, create_engine
from sqlmodel import SQLModel

from storage.errors import RestoreError

__all__ = ["SQLITE_HEADER", "check_file", "check_snapshot", "open_snapshot_file", "quote"]

SQLITE_HEADER = b"SQLite format 3\x00"


def check_snapshot(
    path: Path, *, integrity_check: bool = True, metadata: MetaData | None = None
) -> dict[str, int]:
    """Check that ``path`` is a sound SQLite file with the app's tables; count their rows.

    Args:
        path: the SQLite file.
        integrity_check: run ``PRAGMA integrity_check`` (else ``quick_check``).
        metadata: the app's tables; default ``SQLModel.metadata``.

    Raises:
        RestoreError: it is not SQLite, is truncated or corrupt, or lacks tables or columns.
    """
    with _checked_file(path) as connection:
        # quick_check reads every page too, without checking indexes against tables: even
        # without integrity_check a corrupt file never reaches the live database.
        _check_pages(connection, "integrity_check" if integrity_check else "quick_check")
        metadata = metadata if metadata is not None else SQLModel.metadata
        _check_schema(connection, metadata)
        return {table.name: _count(connection, table.name) for table in metadata.sorted_tables}


def check_file(path: Path, metadata: MetaData) -> bool:
    """Whether ``path`` is a readable SQLite file (``quick_check``) that holds only tables and
    indexes the app defines (no trigger, no view), so that the app's own DDL may run on it.

    Raises:
        RestoreError: it is not SQLite, is truncated or corrupt.
    """
    with _checked_file(path) as connection:
        _check_pages(connection, "quick_check")
        return not _objects(connection, _expected_schema(metadata))[1]


@contextmanager
def _checked_file(path: Path) -> Iterator[sqlite3.Connection]:
    """The file, checked for a SQLite header and opened as :func:`open_snapshot_file` does;
    a read error in the block is a :class:`RestoreError`."""
    _check_header(path)
    try:
        connection = open_snapshot_file(path)
    except sqlite3.DatabaseError as exc:
        raise RestoreError(f"the SQLite file cannot be read ({exc})") from exc
    try:
        yield connection
    except sqlite3.DatabaseError as exc:
        raise RestoreError(f"the SQLite file cannot be read ({exc})") from exc
    finally:
        connection.close()


def _objects(
    connection: sqlite3.Connection, expected: _Schema
) -> tuple[list[tuple[str, str]], list[str]]:
    """The file's (type, name) objects, and those the app does not define (code included)."""
    objects = connection.execute(
        "SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"
    ).fetchall()
    foreign = sorted(
        f"{kind} {name}"
        for kind, name in objects
        if kind in ("trigger", "view")
        or (kind == "table" and name not in expected.tables)
        or (kind == "index" and name not in expected.indexes)
    )
    return objects, foreign


def _check_pages(connection: sqlite3.Connection, check: str) -> None:
    problems = [row[0] for row in connection.execute(f"PRAGMA {check}")]
    if problems != ["ok"]:
        raise RestoreError(f"the SQLite file is corrupt: {'; '.join(problems[:5])}")


def _count(connection: sqlite3.Connection, table: str) -> int:
    return int(connection.execute(f"SELECT COUNT(*) FROM {quote(table)}").fetchone()[0])


def _check_header(path: Path) -> None:
    with path.open("rb") as file:
        header = file.read(100)
    if len(header) < 100 or not header.startswith(SQLITE_HEADER):
        raise RestoreError("the file is not a SQLite database (no SQLite header)")
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    if page_size < 512 or page_size & (page_size - 1):
        raise RestoreError("the file is not a SQLite database (invalid page size)")
    size = path.stat().st_size
    pages = int.from_bytes(header[28:32], "big")
    # The page count in the header is only valid when it was written with the change counter.
    expected = pages * page_size if header[24:28] == header[92:96] else 0
    if size < expected:
        raise RestoreError(f"the SQLite file is truncated ({size} of {expected} bytes)")
    if size % page_size:
        raise RestoreError(
            f"the SQLite file is truncated ({size} bytes is not a whole number of "
            f"{page_size}-byte pages)"
        )


def open_snapshot_file(path: Path) -> sqlite3.Connection:
    """A connection to a file that came from outside: no functions its schema names run."""
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        # The file comes from outside: run no functions its schema names, check cell sizes.
        connection.execute("PRAGMA trusted_schema = OFF")
        connection.execute("PRAGMA cell_size_check = ON")
    except BaseException:
        connection.close()
        raise
    return connection


def _check_schema(connection: sqlite3.Connection, metadata: MetaData) -> None:
    """Refuse a file whose schema is not the app's: data is restored, never code."""
    expected = _expected_schema(metadata)
    objects, foreign = _objects(connection, expected)
    if foreign:
        shown = ", ".join(foreign[:10]) + (
            f" and {len(foreign) - 10} more" if len(foreign) > 10 else ""
        )
        raise RestoreError(f"the backup holds objects this app does not define: {shown}")
    present = {name for kind, name in objects if kind == "table"}
    missing_tables = sorted(set(expected.tables) - present)
    missing_columns: list[str] = []
    wrong_columns: list[str] = []
    for table, columns in expected.tables.items():
        if table not in present:
            continue
        found = _columns(connection, table)
        for column, shape in columns.items():
            if column not in found:
                missing_columns.append(f"{table}.{column}")
            elif found[column] != shape:
                wrong_columns.append(f"{table}.{column} ({_describe(found[column], shape)})")
    problems = []
    if missing_tables:
        problems.append(f"missing tables: {', '.join(missing_tables)}")
    if missing_columns:
        problems.append(f"missing columns: {', '.join(missing_columns)}")
    if wrong_columns:
        problems.append(f"columns unlike the app's: {', '.join(wrong_columns)}")
    if problems:
        raise RestoreError(f"the backup does not match this app's tables ({'; '.join(problems)})")
    _check_values(connection, expected)


@dataclass(frozen=True)
class _Schema:
    tables: dict[str, dict[str, tuple[str, bool]]]  # table -> column -> (affinity, in the key)
    indexes: frozenset[str]
    json_columns: tuple[tuple[str, str], ...]


def _expected_schema(metadata: MetaData) -> _Schema:
    """The app's schema as SQLite lays it out (created from the models in memory)."""
    engine = create_engine("sqlite://")
    try:
        metadata.create_all(engine)
        with engine.connect() as connection:
            raw: Any = connection.connection.driver_connection
            names = raw.execute(
                "SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"
            ).fetchall()
            tables = {name: _columns(raw, name) for kind, name in names if kind == "table"}
    finally:
        engine.dispose()
    json_columns = tuple(
        (table.name, column.name)
        for table in metadata.sorted_tables
        for column in table.columns
        if isinstance(column.type, JSON)
    )
    indexes = frozenset(name for kind, name in names if kind == "index")
    return _Schema(tables, indexes, json_columns)


def _columns(connection: sqlite3.Connection, table: str) -> dict[str, tuple[str, bool]]:
    rows = connection.execute(f"PRAGMA table_info({quote(table)})").fetchall()
    return {row[1]: (_affinity(row[2]), bool(row[5])) for row in rows}


def _affinity(declared: str) -> str:
    # SQLite's own rules (datatype3.html, 3.1): what a column does with the values it is given.
    kind = declared.upper()
    if "INT" in kind:
        return "INTEGER"
    if any(word in kind for word in ("CHAR", "CLOB", "TEXT")):
        return "TEXT"
    if "BLOB" in kind or not kind:
        return "BLOB"
    if any(word in kind for word in ("REAL", "FLOA", "DOUB")):
        return "REAL"
    return "NUMERIC"


def _describe(found: tuple[str, bool], wanted: tuple[str, bool]) -> str:
    if found[1] != wanted[1]:
        return "part of the primary key" if found[1] else "not part of the primary key"
    return f"{found[0].lower()} where the app has {wanted[0].lower()}"


def _check_values(connection: sqlite3.Connection, schema: _Schema) -> None:
    """Values the app could not read back: text in number columns, JSON that does not parse."""
    bad: list[str] = []
    for table, columns in schema.tables.items():
        for column, (affinity, _) in columns.items():
            allowed = _STORAGE_CLASSES.get(affinity)
            if allowed and _any(connection, table, f"typeof({quote(column)}) NOT IN {allowed}"):
                bad.append(f"{table}.{column} holds values that are not {affinity.lower()}")
    for table, column in schema.json_columns:
        quoted = quote(column)
        if _any(connection, table, f"{quoted} IS NOT NULL AND json_valid({quoted}) = 0"):
            bad.append(f"{table}.{column} holds invalid JSON")
    if bad:
        raise RestoreError(f"the backup holds values this app cannot read: {'; '.join(bad)}")


_STORAGE_CLASSES = {"INTEGER": "('integer', 'null')", "REAL": "('real', 'integer', 'null')"}


def _any(connection: sqlite3.Connection, table: str, condition: str) -> bool:
    found = connection.execute(f"SELECT 1 FROM {quote(table)} WHERE {condition} LIMIT 1")
    return found.fetchone() is not None


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'

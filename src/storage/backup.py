"""Consistent snapshots of the live database, as one portable SQLite file.

On SQLite the snapshot comes from SQLite's online backup API: pages are copied from a pooled
connection in one step, so the file is one consistent state even while writers carry on (WAL),
and none of the app's connections is closed. On PostgreSQL, MySQL and MariaDB every table of
the database is created in a new SQLite file (as the models define it, or as reflected from the
database when no imported model defines it) and its rows copied in batches inside one
``REPEATABLE READ`` transaction, which yields the same kind of file: a whole-database copy,
whichever models the process that takes it has imported. Either file can
be restored on any backend (see :mod:`storage.restore`).

Memory stays flat: SQLite copies page by page, the other backends stream rows in batches.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

from sqlalchemy import Connection, Engine, MetaData, Table, create_engine, insert, inspect, select
from sqlalchemy import text as sql_text
from sqlalchemy.pool import NullPool
from sqlmodel import SQLModel

from storage import database as storage_database
from storage._reflection import database_tables
from storage.database import Database
from storage.errors import StorageError

__all__ = [
    "BATCH_SIZE",
    "copy_rows",
    "existing_tables",
    "open_snapshot",
    "reset_sequences",
    "sqlite_file_engine",
    "write_snapshot",
]

BATCH_SIZE = 1000


def write_snapshot(
    path: str | os.PathLike[str],
    *,
    metadata: MetaData | None = None,
    database: Database | None = None,
) -> None:
    """Write a consistent SQLite snapshot of ``database`` to ``path`` (a new file).

    Args:
        path: where to write; the file must not exist yet.
        database: default :func:`storage.database.get_database`.
        metadata: copy only these tables from PostgreSQL/MySQL; default every table of the
            database (see :func:`storage._reflection.database_tables`). A SQLite snapshot
            always holds the whole database file.

    Raises:
        StorageError: the database could not be read.
    """
    db = database or storage_database.get_database()
    if db.is_sqlite:
        _backup_sqlite(db, Path(path))
    else:
        _copy_to_sqlite(db, Path(path), metadata)


def open_snapshot(
    *, metadata: MetaData | None = None, database: Database | None = None
) -> IO[bytes]:
    """Write a snapshot (:func:`write_snapshot`) and return it open for reading at its start.

    The file is anonymous: it disappears when the returned object is closed.
    """
    with tempfile.TemporaryDirectory(prefix="storage-backup-") as directory:
        path = Path(directory) / "snapshot.sqlite"
        write_snapshot(path, metadata=metadata, database=database)
        snapshot = tempfile.TemporaryFile()
        try:
            with path.open("rb") as written:
                shutil.copyfileobj(written, snapshot)
        except BaseException:
            snapshot.close()
            raise
    snapshot.seek(0)
    return snapshot


def _backup_sqlite(db: Database, path: Path) -> None:
    target = sqlite3.connect(path, isolation_level=None)
    try:
        with db.raw_connection() as live:
            # One step (pages=-1) holds a single read transaction on the source: a consistent
            # copy that writers in WAL mode do not wait for.
            live.backup(target)
        # The copy inherits WAL mode from the live file; a download should be one file.
        target.execute("PRAGMA journal_mode = DELETE")
    except sqlite3.Error as exc:
        raise StorageError(f"the SQLite backup failed ({type(exc).__name__}: {exc})") from exc
    finally:
        target.close()


def _copy_to_sqlite(db: Database, path: Path, metadata: MetaData | None) -> None:
    target_engine = sqlite_file_engine(path)
    try:
        with db.snapshot_read() as source:
            if metadata is None:
                # The database's own catalogue, not SQLModel.metadata: a script that imports
                # no models (a cron backup) would otherwise copy the audit log alone.
                tables = database_tables(source, SQLModel.metadata)
            else:
                tables = existing_tables(source, metadata)
            for table in tables:
                table.create(target_engine)
            with target_engine.begin() as target:
                copy_rows(source, target, tables)
    finally:
        target_engine.dispose()


def sqlite_file_engine(path: str | os.PathLike[str]) -> Engine:
    """A private engine on a SQLite file that no one else uses (snapshots, uploads)."""
    return create_engine(f"sqlite:///{Path(path)}", poolclass=NullPool)


def existing_tables(connection: Connection, metadata: MetaData) -> list[Table]:
    """The tables of ``metadata`` that exist in the database, parents before children."""
    present = set(inspect(connection).get_table_names())
    return [table for table in metadata.sorted_tables if table.name in present]


def copy_rows(
    source: Connection, target: Connection, tables: Sequence[Table], *, batch_size: int = BATCH_SIZE
) -> dict[str, int]:
    """Copy every row of ``tables`` from ``source`` to ``target`` in batches.

    Values go through the columns' types on both sides, so a snapshot taken on one backend
    reads back correctly on another. Returns the number of rows copied per table.
    """
    counts: dict[str, int] = {}
    for table in tables:
        counts[table.name] = 0
        for batch in _batches(source, table, batch_size):
            target.execute(insert(table), batch)
            counts[table.name] += len(batch)
    return counts


def _batches(
    source: Connection, table: Table, batch_size: int
) -> Iterator[list[dict[str, object]]]:
    streaming = source.execution_options(stream_results=True, yield_per=batch_size)
    result = streaming.execute(select(table))
    for partition in result.mappings().partitions():
        yield [dict(row) for row in partition]


def reset_sequences(connection: Connection, tables: Sequence[Table]) -> None:
    """Move PostgreSQL sequences past the largest key after rows were written with their ids.

    A sequence only ever moves forward (a transaction that rolls back cannot undo it, and the
    old rows may come back). MySQL and MariaDB move ``AUTO_INCREMENT`` on their own; SQLite
    needs nothing.
    """
    if connection.dialect.name != "postgresql":
        return
    quote = connection.dialect.identifier_preparer
    for table in tables:
        column = table.autoincrement_column
        if column is None:
            continue
        name, key = quote.format_table(table), quote.quote(column.name)
        connection.execute(
            sql_text(
                f"SELECT setval(seq, GREATEST(COALESCE((SELECT MAX({key}) FROM {name}), 0) + 1, "
                "nextval(seq)), false) "
                "FROM pg_get_serial_sequence(:table, :column) AS seq WHERE seq IS NOT NULL"
            ),
            {"table": name, "column": column.name},
        )

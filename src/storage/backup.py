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
from pathlib import Path
from typing import IO

from sqlalchemy import MetaData
from sqlmodel import SQLModel

from storage import database as storage_database
from storage._copying import copy_rows, existing_tables, sqlite_file_engine
from storage._reflection import database_tables
from storage.database import Database
from storage.errors import StorageError

__all__ = ["open_snapshot", "write_snapshot"]


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

"""Database statistics and backups into a directory, for ``/database/stats`` and ``/backup``.

Backups reuse :func:`storage.backup.write_snapshot`: SQLite's online backup API on SQLite, a
``REPEATABLE READ`` copy into a SQLite file on PostgreSQL, MySQL and MariaDB. Either way the
file is one consistent state and can be restored with ``POST /db/restore``.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, func, select, text
from sqlalchemy.engine import make_url
from sqlmodel import SQLModel

from programs._discovery import DiscoveryProblem
from programs._schemas import BackupInfo, DatabaseStats, DiscoveryProblemRead
from programs._tables import ProgramInstance, ProgramTemplate
from storage import backup
from storage._copying import existing_tables
from storage.auditor import utcnow
from storage.database import Database
from storage.readiness import backend_name

__all__ = ["database_stats", "default_backup_dir", "write_backup"]


def database_stats(
    database: Database, problems: tuple[DiscoveryProblem, ...] = ()
) -> DatabaseStats:
    """Row counts of every table of ``database``, its size and the program store's health,
    read in one consistent snapshot."""
    with database.snapshot_read() as connection:
        tables = existing_tables(connection, SQLModel.metadata)
        counts = {
            table.name: int(connection.scalar(select(func.count()).select_from(table)) or 0)
            for table in tables
        }
        present = set(counts)
        unavailable = _count(
            connection,
            present,
            ProgramTemplate,
            ProgramTemplate.available.is_(False),  # type: ignore[attr-defined]
        )
        invalid = _count(
            connection,
            present,
            ProgramInstance,
            ProgramInstance.valid.is_(False),  # type: ignore[attr-defined]
        )
        size = _size(connection, database)
    url = make_url(database.url)
    return DatabaseStats(
        backend=backend_name(database),
        database=url.database,
        size_bytes=size,
        tables=counts,
        templates=counts.get(ProgramTemplate.__tablename__, 0),
        unavailable_templates=unavailable,
        programs=counts.get(ProgramInstance.__tablename__, 0),
        invalid_programs=invalid,
        discovery_problems=[
            DiscoveryProblemRead(module=p.module, error=p.error, source=p.source) for p in problems
        ],
    )


def default_backup_dir(database: Database) -> Path:
    """``backups/`` next to the SQLite file of ``database``, else in the working directory."""
    url = make_url(database.url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        return Path(str(url.database)).resolve().parent / "backups"
    return Path("backups").resolve()


def write_backup(database: Database, directory: str | os.PathLike[str] | None = None) -> BackupInfo:
    """Write a consistent SQLite snapshot of ``database`` into ``directory`` as
    ``backup-<UTC time>.sqlite``.

    Args:
        database: the database to copy.
        directory: created when missing; default :func:`default_backup_dir`.

    Raises:
        StorageError: the database could not be read or the file not written.
    """
    folder = Path(directory) if directory is not None else default_backup_dir(database)
    folder.mkdir(parents=True, exist_ok=True)
    created = utcnow()
    stem = f"backup-{created:%Y%m%dT%H%M%S.%fZ}"
    path, n = folder / f"{stem}.sqlite", 1
    while path.exists():
        n += 1
        path = folder / f"{stem}-{n}.sqlite"
    try:
        backup.write_snapshot(path, database=database)
    except BaseException:
        with contextlib.suppress(OSError):
            path.unlink()
        raise
    return BackupInfo(
        path=str(path.resolve()),
        size_bytes=path.stat().st_size,
        created_at=created,
        backend=backend_name(database),
    )


def _count(connection: Connection, present: set[str], model: type[SQLModel], condition: Any) -> int:
    if model.__tablename__ not in present:
        return 0
    statement = select(func.count()).select_from(model).where(condition)
    return int(connection.scalar(statement) or 0)


def _size(connection: Connection, database: Database) -> int | None:
    dialect = connection.dialect.name
    if dialect == "postgresql":
        return int(connection.scalar(text("SELECT pg_database_size(current_database())")) or 0)
    if dialect in ("mysql", "mariadb"):
        statement = text(
            "SELECT COALESCE(SUM(data_length + index_length), 0) "
            "FROM information_schema.tables WHERE table_schema = DATABASE()"
        )
        return int(connection.scalar(statement) or 0)
    url = make_url(database.url)
    if url.database in (None, "", ":memory:"):
        return None
    files = [Path(str(url.database)), Path(f"{url.database}-wal")]
    return sum(f.stat().st_size for f in files if f.exists())

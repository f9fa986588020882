"""vention-storage's ``storage.io_helpers`` (0.5.1 and 0.20), for code written against it.

Each function keeps vention-storage's name and signature and does its work with this
library's export, backup and restore (:mod:`storage.export`, :mod:`storage.backup`,
:mod:`storage.restore`), so the results follow their rules: the CSV conventions of
:mod:`storage.csvformat`, snapshots that work on every backend and while writers carry on, and
restores into the live database that keep its connections open. New code should call those
modules, or the ``/db`` routes, directly.
"""

from __future__ import annotations

import io
import os
import shutil
import sqlite3
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Table
from sqlmodel import Session, SQLModel

from storage import database
from storage._snapshots import check_snapshot
from storage.backup import write_snapshot
from storage.errors import RestoreError
from storage.export import write_export, write_table_csv
from storage.restore import restore_upload

__all__ = [
    "atomic_replace_db",
    "build_backup_bytes",
    "build_export_zip_bytes",
    "create_backup_file",
    "db_file_path",
    "discover_user_tables",
    "restore_db_from_backup",
    "safe_unlink",
    "save_bytes_to_temp",
    "save_upload_to_temp",
    "validate_sqlite_file",
    "write_table_csv_buffer",
]

_SQLITE_INTERNAL_PREFIX = "sqlite_"


def discover_user_tables() -> list[Table]:
    """The models' tables, parents first (SQLite's internal tables left out)."""
    return [
        table
        for table in SQLModel.metadata.sorted_tables
        if not table.name.startswith(_SQLITE_INTERNAL_PREFIX)
    ]


def write_table_csv_buffer(session: Session, table: Table) -> io.StringIO:
    """One table as CSV (header and rows), read through ``session``."""
    buffer = io.StringIO(newline="")
    for _ in write_table_csv(session.connection(), table, buffer):
        pass
    return buffer


def build_export_zip_bytes(tables: list[Table]) -> bytes:
    """A zip with one CSV per table of ``tables`` (an empty, valid zip for none)."""
    buffer = io.BytesIO()
    write_export(buffer, tables=tables)
    return buffer.getvalue()


def db_file_path() -> str:
    """The absolute path of the SQLite database file."""
    return str(Path(database.get_engine().url.database or "").resolve())


def build_backup_bytes(db_path: str) -> bytes:
    """A consistent SQLite snapshot of the database at ``db_path``, as bytes.

    The live database (on any backend) is copied with :func:`storage.backup.write_snapshot`,
    without closing its connections; another SQLite file with SQLite's backup API.
    """
    with tempfile.TemporaryDirectory(prefix="storage-backup-") as directory:
        target = Path(directory) / "backup.sqlite"
        if _is_live(db_path):
            write_snapshot(target)
        else:
            source, copy = sqlite3.connect(db_path), sqlite3.connect(target)
            try:
                source.backup(copy)
            finally:
                copy.close()
                source.close()
        return target.read_bytes()


def create_backup_file(db_path: str, *, prefix: str = "backup") -> Path:
    """Write a snapshot next to the database file, as ``{prefix}-{UTC time}.sqlite``."""
    slug = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = Path(db_path).resolve().parent / f"{prefix}-{slug}.sqlite"
    path.write_bytes(build_backup_bytes(db_path))
    return path


def validate_sqlite_file(path: Path, *, run_integrity_check: bool = True) -> None:
    """Check a SQLite file before it is restored.

    Stricter than vention-storage: besides the header and ``PRAGMA integrity_check`` the file
    must hold every table and column of the app's models (see
    :func:`storage._snapshots.check_snapshot`).

    Raises:
        ValueError: the file cannot be restored; the message says why.
    """
    try:
        check_snapshot(Path(path), integrity_check=run_integrity_check)
    except (RestoreError, OSError) as exc:
        raise ValueError(str(exc)) from exc


def save_upload_to_temp(file: Any, dest_dir: Path) -> tuple[Path, int]:
    """Copy an upload (a FastAPI ``UploadFile``) to a new temporary file in ``dest_dir``;
    returns its path and size. The caller removes it (:func:`safe_unlink`)."""
    path = _new_temp(dest_dir)
    try:
        with path.open("wb") as target:
            shutil.copyfileobj(file.file, target, 1 << 20)
    except BaseException:
        safe_unlink(path)
        raise
    try:
        file.file.close()
    except Exception:
        pass  # closing is a courtesy; the copy is complete
    return path, path.stat().st_size


def save_bytes_to_temp(
    file_bytes: bytes, dest_dir: Path, *, filename: str = "upload.sqlite"
) -> tuple[Path, int]:
    """Write ``file_bytes`` to a new temporary file in ``dest_dir``; returns its path and size.
    ``filename`` is accepted for vention-storage's signature and not used."""
    path = _new_temp(dest_dir)
    path.write_bytes(file_bytes)
    return path, len(file_bytes)


def atomic_replace_db(tmp_path: Path, db_path: Path) -> None:
    """Replace the database at ``db_path`` with the SQLite file ``tmp_path``, which is used up.

    The live database is restored in one atomic step that keeps its connections open (see
    :func:`storage.restore.restore_upload`), also on PostgreSQL and MySQL; another file is
    replaced with ``os.replace``.

    Raises:
        RestoreError: the file does not fit the app's models; nothing was changed.
    """
    if not _is_live(db_path):
        os.replace(tmp_path, db_path)
        return
    with Path(tmp_path).open("rb") as upload:
        restore_upload(upload, actor="internal")
    safe_unlink(Path(tmp_path))


def restore_db_from_backup(backup_path: Path, db_path: Path) -> None:
    """Restore the database at ``db_path`` from ``backup_path``, which is kept."""
    with tempfile.TemporaryDirectory(prefix="storage-restore-copy-") as directory:
        copy = Path(directory) / "backup.sqlite"
        shutil.copyfile(backup_path, copy)
        atomic_replace_db(copy, db_path)


def safe_unlink(path: Path) -> None:
    """Remove a file if it exists; never raises."""
    try:
        Path(path).unlink(missing_ok=True)
    except OSError:
        pass


def _new_temp(dest_dir: Path) -> Path:
    with tempfile.NamedTemporaryFile(
        prefix="restore-", suffix=".sqlite", dir=dest_dir, delete=False
    ) as tmp:
        return Path(tmp.name)


def _is_live(db_path: str | os.PathLike[str]) -> bool:
    db = database.get_database()
    return not db.is_sqlite or Path(db_path).resolve() == Path(db_file_path())

"""Restore a SQLite snapshot into the live database, atomically, while the app keeps running.

The file is checked before anything is touched: the SQLite header, a truncated size, optionally
``PRAGMA integrity_check``, and that it holds every table and column of the app's models. Then:

- **SQLite**: SQLite's backup API copies the file *into* the live database through a pooled
  connection, under the in-process writer lock. It is one write transaction of the live file,
  so it works with WAL, no connection is closed, and every other connection (also in other
  processes) sees the restored data as soon as it commits, or the old data if it fails.
- **PostgreSQL, MySQL, MariaDB**: one transaction deletes the rows of the app's tables and
  copies the snapshot's rows in; any error rolls it all back.

The audit row for the restore (component ``database``, operation ``restore``) is written in the
same atomic step, so a restored database always records who restored it. The backup's audit
rows come back as they are, with their hash chain (checked first, and the outcome logged); the
chain's head moves to their last row and the restore's own audit row links to it, so the chain
goes on from the backup's. Listeners registered with
:func:`storage.changes.on_database_restored` are called afterwards.
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import tempfile
from pathlib import Path
from typing import IO, Any, Literal

from pydantic import BaseModel
from sqlalchemy import Connection, MetaData, Table, delete, insert
from sqlalchemy import exc as sa_exc
from sqlmodel import SQLModel

from storage import _chain as chain
from storage import changes
from storage import database as storage_database
from storage._copying import copy_rows, reset_sequences, sqlite_file_engine
from storage._processes import is_running
from storage._snapshots import check_file, check_snapshot, open_snapshot_file
from storage._verification import verify_chain_on
from storage.auditor import AUDIT_TABLE, audit_row, write_audit_rows
from storage.database import Database
from storage.errors import PayloadTooLargeError, RestoreError, StorageError, translate
from storage.migrations import apply_sqlmodel_migrations, plan_sqlmodel_migrations

__all__ = ["RestoreSummary", "check_snapshot", "restore_upload"]

logger = logging.getLogger("storage.restore")

_CHUNK = 1 << 20


class RestoreSummary(BaseModel):
    """What a restore found in the file and whether it was applied."""

    status: Literal["ok"] = "ok"
    restored: bool
    dry_run: bool
    bytes: int
    tables: dict[str, int]
    upgraded: list[str] = []
    """What the backup lacked of the app's tables and was added to the restored copy (tables,
    nullable or defaulted columns, indexes): a backup from an older version of the app."""


def restore_upload(
    upload: IO[bytes],
    *,
    actor: str,
    max_bytes: int | None = None,
    integrity_check: bool = True,
    dry_run: bool = False,
    metadata: MetaData | None = None,
    database: Database | None = None,
) -> RestoreSummary:
    """Check an uploaded snapshot and, unless ``dry_run``, restore it into ``database``.

    Args:
        upload: the file, read from its current position in chunks.
        actor: who restores; recorded in the audit log.
        max_bytes: refuse files larger than this.
        integrity_check: run ``PRAGMA integrity_check`` on the file first.
        dry_run: check only; the live database is not touched.
        metadata: the app's tables, which the file must hold and which are replaced; default
            ``SQLModel.metadata``.
        database: the live database; default :func:`storage.database.get_database`.

    Raises:
        PayloadTooLargeError: the file is larger than ``max_bytes``.
        RestoreError: the file is not a SQLite database, is truncated or corrupt, lacks tables
            or columns of the app, or holds values the database rejects. Nothing was changed.
    """
    with tempfile.TemporaryDirectory(prefix=_temp_prefix(), ignore_cleanup_errors=True) as tmp:
        path = Path(tmp) / "upload.sqlite"
        size = _save_upload(upload, path, max_bytes=max_bytes)
        metadata = metadata if metadata is not None else SQLModel.metadata
        upgraded = upgrade_snapshot(path, metadata)
        tables = check_snapshot(path, integrity_check=integrity_check, metadata=metadata)
        summary = RestoreSummary(
            restored=not dry_run, dry_run=dry_run, bytes=size, tables=tables, upgraded=upgraded
        )
        if not dry_run:
            record = audit_row(
                component="database",
                operation="restore",
                record_id="database",
                actor=actor,
                after={"bytes": size, "tables": tables},
            )
            _log_chain(path)
            db = database or storage_database.get_database()
            if db.is_sqlite:
                _restore_sqlite(db, path, record)
            else:
                _restore_server(db, path, record, metadata)
    if not dry_run:
        changes.notify_database_restored()
    return summary


_TEMP_PREFIX = "storage-restore-"


def _temp_prefix() -> str:
    return f"{_TEMP_PREFIX}{os.getpid()}-"


def remove_leftovers(folder: str | None = None) -> list[Path]:
    """Remove the temporary copies of restores whose process is gone (a crash, a power cut,
    a ``kill -9`` in the middle of a restore); those of running processes stay.

    Returns:
        the folders removed.
    """
    removed = []
    for path in Path(folder or tempfile.gettempdir()).glob(f"{_TEMP_PREFIX}*-*"):
        pid = path.name.removeprefix(_TEMP_PREFIX).split("-", 1)[0]
        if path.is_dir() and pid.isdigit() and not is_running(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _save_upload(source: IO[bytes], path: Path, *, max_bytes: int | None = None) -> int:
    """Copy ``source`` to a new file at ``path`` in chunks; returns the number of bytes.

    Raises:
        PayloadTooLargeError: more than ``max_bytes`` arrived (the partial file is left for
            the caller's temporary directory to remove).
    """
    size = 0
    with path.open("xb") as target:
        while chunk := source.read(_CHUNK):
            size += len(chunk)
            if max_bytes is not None and size > max_bytes:
                raise PayloadTooLargeError(
                    f"the file is larger than the limit of {max_bytes} bytes"
                )
            target.write(chunk)
    return size


def upgrade_snapshot(path: Path, metadata: MetaData) -> list[str]:
    """Bring a backup from an older version of the app up to its tables, in the uploaded copy:
    the additive steps auto-migration would take (a new table, a nullable or defaulted column,
    an index). Returns the steps taken, logged; nothing when the file is not a sound SQLite
    file, holds objects the app does not define (triggers, views, other tables or indexes), or
    needs more than additive steps (the check that follows refuses it then, with its reason)."""
    try:
        sound = check_file(path, metadata)
    except RestoreError:
        return []
    if not sound:
        return []
    engine = sqlite_file_engine(path)
    try:
        plan = plan_sqlmodel_migrations(metadata, engine=engine)
        if plan.is_empty or plan.problems:
            return []
        try:
            apply_sqlmodel_migrations(metadata, engine=engine)
        except StorageError as exc:
            message = f"the backup cannot be brought up to this app's tables: {exc}"
            raise RestoreError(message) from exc
    finally:
        engine.dispose()
    steps = [str(step) for step in plan.steps]
    logger.info("restore: the backup was brought up to this app's tables: %s", "; ".join(steps))
    return steps


def _restore_sqlite(db: Database, path: Path, record: dict[str, Any]) -> None:
    with db.raw_connection() as live:
        page_size = live.execute("PRAGMA page_size").fetchone()[0]
    try:
        upload = open_snapshot_file(path)
        try:
            # Backing up into a WAL database needs equal page sizes; the copy is ours to change.
            upload.execute("PRAGMA journal_mode = DELETE")
            if upload.execute("PRAGMA page_size").fetchone()[0] != page_size:
                upload.execute(f"PRAGMA page_size = {int(page_size)}")
                upload.execute("VACUUM")
        finally:
            upload.close()
        _write_audit_row(path, record)
        upload = open_snapshot_file(path)
        try:
            with db.writer_lock(), db.raw_connection() as live:
                upload.backup(live)
        finally:
            upload.close()
    except sqlite3.Error as exc:
        raise RestoreError(f"the SQLite file could not be restored ({exc})") from exc


def _log_chain(path: Path) -> None:
    """Check the backup's audit chain and say so in the log: it is restored as it is."""
    engine = sqlite_file_engine(path)
    try:
        with engine.connect() as connection, connection.begin():
            report = verify_chain_on(connection)
    finally:
        engine.dispose()
    if report.ok:
        logger.info(
            "restore: the backup's audit chain verifies (%d rows from id %s, %d older rows "
            "without hash)",
            report.checked,
            report.starts_at,
            report.unchained,
        )
    else:
        logger.warning(
            "restore: the backup's audit chain is broken at row %s (%s); restored as it is",
            report.broken_at,
            report.detail,
        )


def _log_continued(last: tuple[int | None, str | None]) -> None:
    logger.info("restore: the audit chain continues after row %s (hash %s)", *last)


def _write_audit_row(path: Path, record: dict[str, Any]) -> None:
    engine = sqlite_file_engine(path)
    try:
        with engine.begin() as connection:
            _log_continued(chain.follow(connection, AUDIT_TABLE))
            chain.link(connection, AUDIT_TABLE, [record])
            connection.execute(insert(AUDIT_TABLE), [record])
    except sa_exc.SQLAlchemyError as exc:
        raise RestoreError(
            f"the audit log of the backup cannot be written ({translate(exc)})"
        ) from exc
    finally:
        engine.dispose()


def _restore_server(db: Database, path: Path, record: dict[str, Any], metadata: MetaData) -> None:
    # The chain's head stays: locked first, it keeps audit writers out until the commit, and
    # then follows the backup's last audit row.
    tables = [table for table in metadata.sorted_tables if table.name != chain.HEAD.name]
    source_engine = sqlite_file_engine(path)
    try:
        with source_engine.connect() as source, db.transaction() as session:
            target = session.connection()
            chain.lock_head(target, AUDIT_TABLE)
            for table in reversed(tables):
                target.execute(delete(table))
            for table in tables:
                _copy_table(source, target, table)
            reset_sequences(target, tables)
            _log_continued(chain.follow(target, AUDIT_TABLE))
            write_audit_rows(session, [record])
    finally:
        source_engine.dispose()


def _copy_table(source: Connection, target: Connection, table: Table) -> None:
    try:
        copy_rows(source, target, [table])
    except sa_exc.SQLAlchemyError as exc:
        raise RestoreError(
            f"table {table.name}: the database rejected a row ({translate(exc)})"
        ) from exc
    except (ValueError, TypeError) as exc:
        raise RestoreError(f"table {table.name}: a value cannot be read ({exc})") from exc

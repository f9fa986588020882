"""``machine-storage backup|restore|export|import``: whole-database copies and CSV archives."""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy.engine import make_url
from sqlmodel import SQLModel

from storage import backup, database, export, importer, restore
from storage._chain import AuditChainHead
from storage._cli_common import (
    AppOption,
    CommandFailed,
    JsonOption,
    ModelsOption,
    emit_json,
    load_tables,
    open_database,
    progress,
)
from storage._snapshots import open_snapshot_file, quote
from storage.auditor import AuditLog

__all__ = ["backup_command", "export_command", "import_command", "restore_command"]

DbUrl = Annotated[str, typer.Argument(metavar="DB_URL", help="SQLAlchemy database URL.")]
ActorOption = Annotated[
    str, typer.Option("--actor", help="Who does it, as recorded in the audit log.")
]
DEFAULT_ACTOR = "machine-storage"
# The tables every process has on SQLModel.metadata, whichever models it imported.
_LIBRARY_TABLES = {AuditLog.__tablename__, AuditChainHead.__tablename__}


def backup_command(
    db_url: DbUrl,
    file: Annotated[
        str,
        typer.Argument(
            metavar="FILE",
            help="The SQLite file to write; strftime codes (%Y%m%d-%H%M%S) are filled in.",
        ),
    ],
    keep: Annotated[
        int | None,
        typer.Option(
            "--keep", min=1, help="Then keep only the newest N files matching FILE's pattern."
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Write a consistent snapshot of every table in the database to a new SQLite file."""
    open_database(db_url)
    target = Path(datetime.now().strftime(file)) if "%" in file else Path(file)
    if target.exists():
        raise CommandFailed(f"{target} exists already; a backup never overwrites a file")
    progress(f"backing up {_shown(db_url)} to {target} ...")
    started = time.monotonic()
    with _written(target) as partial:
        backup.write_snapshot(partial)
    rows = _count_rows(target)
    seconds = round(time.monotonic() - started, 3)
    removed = _rotate(file, keep) if keep else []
    for path in removed:
        progress(f"removed old backup {path}")
    size = target.stat().st_size
    progress(f"done: {len(rows)} tables, {sum(rows.values())} rows, {size} bytes, {seconds} s")
    if as_json:
        emit_json(
            {
                "file": str(target),
                "bytes": size,
                "seconds": seconds,
                "tables": rows,
                "removed": [str(path) for path in removed],
            }
        )


@contextmanager
def _written(target: Path) -> Iterator[Path]:
    # Written beside the target and renamed: a crash never leaves a half file under the name
    # that rotation and restores look for.
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".backup-") as folder:
        partial = Path(folder) / target.name
        yield partial
        os.replace(partial, target)


def _count_rows(path: Path) -> dict[str, int]:
    connection = open_snapshot_file(path)
    try:
        names = [
            row[0]
            for row in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        return {
            name: int(connection.execute(f"SELECT COUNT(*) FROM {quote(name)}").fetchone()[0])
            for name in sorted(names)
        }
    finally:
        connection.close()


def rotation_pattern(file: str) -> re.Pattern[str]:
    """The names that count as earlier backups of ``file``: its strftime codes, or else its
    digits, stand for any digits (``app-%Y%m%d.sqlite`` and ``app-20250101.sqlite`` both
    match ``app-20241231.sqlite``)."""
    name = Path(file).name
    if "%" in name:
        parts = re.split(r"%[a-zA-Z]", name)
        return re.compile("[0-9A-Za-z_+-]+".join(re.escape(part) for part in parts) + r"\Z")
    return re.compile(re.sub(r"[0-9]+", "[0-9]+", re.escape(name)) + r"\Z")


def _rotate(file: str, keep: int) -> list[Path]:
    folder = Path(file).parent
    pattern = rotation_pattern(file)
    matching = [p for p in folder.iterdir() if p.is_file() and pattern.match(p.name)]
    matching.sort(key=lambda p: (p.stat().st_mtime, p.name), reverse=True)
    removed = matching[keep:]
    for path in removed:
        path.unlink()
    return removed


def _shown(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def restore_command(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="A backup (SQLite file).")],
    db_url: DbUrl,
    app: AppOption = None,
    models: ModelsOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check the file only; change nothing.")
    ] = False,
    integrity_check: Annotated[
        bool,
        typer.Option(
            "--integrity-check/--quick-check",
            help="PRAGMA integrity_check on the file (slower), or quick_check.",
        ),
    ] = True,
    actor: ActorOption = DEFAULT_ACTOR,
    as_json: JsonOption = False,
) -> None:
    """Check a backup and replace the database's tables with its contents, atomically.

    The file must hold the app's tables: those of --app/--models, or without them the tables
    the target database has. With --app/--models, missing tables are created first.
    """
    open_database(db_url, must_exist=not (app or models))
    source = load_tables(app, models)
    if source == "database" and set(SQLModel.metadata.tables) <= _LIBRARY_TABLES:
        raise CommandFailed(
            "the target database has no tables to restore into; pass --app or --models "
            "so that they can be created"
        )
    if source == "models" and not dry_run:
        SQLModel.metadata.create_all(database.get_engine())
    progress(f"{'checking' if dry_run else 'restoring'} {file} into {_shown(db_url)} ...")
    with file.open("rb") as upload:
        summary = restore.restore_upload(
            upload, actor=actor, integrity_check=integrity_check, dry_run=dry_run
        )
    total = sum(summary.tables.values())
    verb = "would restore" if dry_run else "restored"
    progress(f"{verb} {len(summary.tables)} tables, {total} rows")
    if as_json:
        emit_json(summary.model_dump())


def export_command(
    db_url: DbUrl,
    file: Annotated[Path, typer.Argument(metavar="FILE", help="The zip file to write.")],
    app: AppOption = None,
    models: ModelsOption = None,
    as_json: JsonOption = False,
) -> None:
    """Write every table as CSV (one file per table) into a zip archive.

    Without --app/--models every table of the database is exported.
    """
    open_database(db_url)
    load_tables(app, models)
    if file.exists():
        raise CommandFailed(f"{file} exists already")
    progress(f"exporting {_shown(db_url)} to {file} ...")
    with _written(file) as partial, partial.open("xb") as target:
        counts = export.write_export(target)
    progress(f"done: {len(counts)} tables, {sum(counts.values())} rows")
    if as_json:
        emit_json({"file": str(file), "tables": counts})


def import_command(
    db_url: DbUrl,
    file: Annotated[Path, typer.Argument(metavar="FILE", help="An export zip, or one CSV.")],
    app: AppOption = None,
    models: ModelsOption = None,
    mode: Annotated[
        importer.ImportMode,
        typer.Option("--mode", help="insert: add rows; upsert: update or add; replace."),
    ] = "insert",
    table: Annotated[
        str | None,
        typer.Option("--table", help="The table of a single CSV; with a zip, only this one."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check everything, then roll back.")
    ] = False,
    actor: ActorOption = DEFAULT_ACTOR,
    as_json: JsonOption = False,
) -> None:
    """Load an export zip (or one table's CSV) into the database, all or nothing."""
    open_database(db_url)
    load_tables(app, models)
    progress(f"importing {file} into {_shown(db_url)} ({mode}{', dry run' if dry_run else ''})")
    with file.open("rb") as upload:
        summary = importer.import_upload(
            upload, actor=actor, table=table, mode=mode, dry_run=dry_run
        )
    verb = "would import" if dry_run else "imported"
    progress(f"{verb} {sum(summary.tables.values())} rows into {len(summary.tables)} tables")
    if as_json:
        emit_json(summary.model_dump())

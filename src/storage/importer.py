"""CSV import: load an export zip (or one table's CSV) back, checked, all or nothing.

Every cell is read with the conventions of :mod:`storage.csvformat` and checked against its
column's type (kind, length, range, NOT NULL); an error names the table, the row (counted from
1 after the header) and the column. Everything is written in one transaction, parents before
children, so any error leaves the database as it was. Modes:

- ``insert`` (default): add the rows; a key that already exists is a conflict.
- ``upsert``: rows whose key exists are updated (only the columns in the file), others added.
- ``replace``: the imported tables are emptied first, then the rows are added.

Soft-delete policies (:mod:`storage.relations`) apply: a live row under a deleted parent is
refused (``refuse``, ``cascade``), and the live children of rows the file marks deleted are
soft-deleted with them or refuse the import. A missing autoincrement key (``\\N`` or empty)
is assigned by the database. Each imported table gets an audit row (component ``database``,
operation ``import``, record id the table name), and listeners of
:func:`storage.changes.on_database_restored` are told afterwards, since rows changed without
passing through accessors.
"""

from __future__ import annotations

import csv
import functools
import io
import threading
import zipfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, nullcontext
from pathlib import PurePosixPath
from typing import IO, Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import Column, Connection, Table, bindparam, delete, insert, select, tuple_, update
from sqlalchemy import exc as sa_exc
from sqlmodel import Session, SQLModel

from storage import changes
from storage import database as storage_database
from storage._cascades import audit_rows_of
from storage._copying import BATCH_SIZE, reset_sequences
from storage._rows import SOFT_DELETE_COLUMN
from storage._softdelete import Cascade, check_parents
from storage.auditor import audit_row, write_audit_rows
from storage.csvformat import ColumnCodec, show_value
from storage.database import Database
from storage.errors import ConflictError, ValidationError, translate
from storage.relations import children_of
from storage.uploads import BoundedText, ImportLimits

__all__ = ["ImportMode", "ImportSummary", "import_upload", "importable"]

IMPORTABLE = "importable"
"""The ``Table.info`` key that, set to ``False``, keeps a table out of CSV imports."""

ImportMode = Literal["insert", "upsert", "replace"]

_FIELD_LIMIT = 1 << 30  # the csv module's own limit (128 KiB) is too small for JSON cells


class _WideFields:
    """The csv module's field limit (one for the whole process) raised while imports run, and
    put back when the last one ends, so that other code keeps the limit it set."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._imports = 0
        self._before = 0

    def __enter__(self) -> None:
        with self._lock:
            if self._imports == 0:
                self._before = csv.field_size_limit()
                csv.field_size_limit(max(self._before, _FIELD_LIMIT))
            self._imports += 1

    def __exit__(self, *exc_info: object) -> None:
        with self._lock:
            self._imports -= 1
            if self._imports == 0:
                csv.field_size_limit(self._before)


_WIDE_FIELDS = _WideFields()
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")

_Opener = Callable[[], AbstractContextManager[IO[bytes]]]


class ImportSummary(BaseModel):
    """What an import read, per table, and whether it was kept."""

    mode: ImportMode
    dry_run: bool
    tables: dict[str, int]
    skipped: list[str] = Field(
        default_factory=list,
        description="Tables in the archive that are never imported (the audit log, a "
        "program runner's own tables).",
    )


class _DryRun(Exception):
    """Raised inside the import's savepoint to roll it back after a complete dry run."""


def import_upload(
    upload: IO[bytes],
    *,
    actor: str,
    table: str | None = None,
    mode: ImportMode = "insert",
    dry_run: bool = False,
    limits: ImportLimits | None = None,
    cancelled: threading.Event | None = None,
    database: Database | None = None,
) -> ImportSummary:
    """Load an export zip, or one CSV file of ``table``, into ``database`` (default
    :func:`storage.database.get_database`).

    Args:
        upload: a seekable file holding a zip of ``{table}.csv`` files or a single CSV.
        actor: who imports; recorded in the audit log.
        table: the table of a single CSV; with a zip, import only this table's file.
        mode: ``insert``, ``upsert`` or ``replace`` (see the module documentation).
        dry_run: do all the work, including the database's own checks, then roll it back.
        limits: how much it may read (:class:`storage.uploads.ImportLimits`; the defaults
            when left out).
        cancelled: once set (its client went away), the import stops and rolls back.
        database: where to import; default :func:`storage.database.get_database`.

    Raises:
        PayloadTooLargeError: more text or rows than the limits allow.
        ValidationError: unknown table or column, a bad cell (the message names table, row
            and column), or a file that is neither a zip nor UTF-8 CSV.
        ConflictError: a key already exists (``insert``), or a constraint rejected a row.
        OperationCancelledError: ``cancelled`` was set before the import finished.
    """
    counts: dict[str, int] = {}
    skipped: list[str] = []
    bounded = BoundedText(limits or ImportLimits(), cancelled)
    db = database or storage_database.get_database()
    with ExitStack() as stack, _WIDE_FIELDS, db.transaction() as session:
        sources = _sources(upload, table, stack, skipped, bounded.limits)
        # A savepoint, so that a dry run rolls back even inside a caller's transaction.
        try:
            with session.begin_nested():
                connection = session.connection()
                if mode == "replace":
                    for target in reversed(sources):
                        connection.execute(delete(target))
                deleted: dict[Table, list[dict[str, Any]]] = {}
                for target, opener in sources.items():
                    with opener() as raw:
                        counts[target.name] = _import_table(
                            session, target, raw, mode, bounded, deleted
                        )
                audits = [_audit(name, rows, mode, actor) for name, rows in counts.items()]
                audits += _cascade(session, deleted, actor)
                write_audit_rows(session, audits)
                if dry_run:
                    raise _DryRun
                reset_sequences(connection, list(sources))
        except _DryRun:
            pass
    if not dry_run:
        changes.notify_database_restored()
    return ImportSummary(mode=mode, dry_run=dry_run, tables=counts, skipped=sorted(skipped))


def _cascade(
    session: Session, deleted: dict[Table, list[dict[str, Any]]], actor: str
) -> list[dict[str, Any]]:
    """Apply the soft-delete policies to the rows the file marks deleted (the children of
    each, see storage.relations), once every table is written; their audit rows."""
    audits = []
    for table, rows in deleted.items():
        moments = [row[SOFT_DELETE_COLUMN] for row in rows]
        audits += audit_rows_of(Cascade(session, table, rows, moments).apply(), actor)
    return audits


def _audit(table: str, rows: int, mode: str, actor: str) -> dict[str, Any]:
    return audit_row(
        component="database",
        operation="import",
        record_id=table,
        actor=actor,
        after={"rows": rows, "mode": mode},
    )


def _sources(
    upload: IO[bytes],
    only: str | None,
    stack: ExitStack,
    skipped: list[str],
    limits: ImportLimits,
) -> dict[Table, _Opener]:
    magic = upload.read(4)
    upload.seek(0)
    found: dict[Table, _Opener] = {}
    if magic not in _ZIP_MAGIC:
        if only is None:
            raise ValidationError("a single CSV file needs the table query parameter")
        found[_table(only)] = lambda: nullcontext(upload)
    else:
        try:
            archive = stack.enter_context(zipfile.ZipFile(upload))
        except zipfile.BadZipFile as exc:
            raise ValidationError(f"the file is not a valid zip archive ({exc})") from None
        for info in archive.infolist():
            name = PurePosixPath(info.filename).name
            if info.is_dir() or (only is not None and name != f"{only}.csv"):
                continue
            if not name.endswith(".csv"):
                raise ValidationError(
                    f"{show_value(info.filename)}: only .csv files can be imported"
                )
            known = SQLModel.metadata.tables.get(name.removesuffix(".csv"))
            if known is not None and not importable(known) and only is None:
                skipped.append(known.name)  # an export holds it; an import leaves it alone
                continue
            target = _table(name.removesuffix(".csv"))
            limits.check_member(info)
            if target in found:
                raise ValidationError(f"the archive holds {name} twice")
            found[target] = functools.partial(archive.open, info)
        if only is not None and not found:
            raise ValidationError(f"the archive has no {only}.csv")
    order = SQLModel.metadata.sorted_tables
    return dict(sorted(found.items(), key=lambda item: order.index(item[0])))


def _table(name: str) -> Table:
    table = SQLModel.metadata.tables.get(name)
    if table is None:
        raise ValidationError(f"unknown table {show_value(name)}")
    if not importable(table):
        raise ValidationError(f"table {name} cannot be imported: the app itself writes it")
    return table


def importable(table: Table) -> bool:
    """Whether CSV data may be imported into ``table``: not the audit log, not the tables a
    program keeps for itself (marked ``info={"importable": False}`` in ``__table_args__``)."""
    return table.info.get(IMPORTABLE, True) is not False


def _import_table(
    session: Session,
    table: Table,
    raw: IO[bytes],
    mode: str,
    bounded: BoundedText,
    deleted: dict[Table, list[dict[str, Any]]],
) -> int:
    connection = session.connection()
    text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
    reader = csv.reader(bounded.lines(text, f"table {table.name}"))
    count = 0
    try:
        header = next(reader, None)
        if header is None:
            raise ValidationError(f"table {table.name}: the CSV is empty (no header row)")
        codecs = _header_codecs(table, header, connection.dialect.name)
        for batch in _batches(table, reader, codecs, bounded):
            _write_batch(connection, table, batch, mode)
            _check_soft_delete(session, table, batch, deleted)
            count += len(batch)
    except csv.Error as exc:
        raise ValidationError(f"table {table.name}, line {reader.line_num}: {exc}") from None
    except UnicodeDecodeError:
        raise ValidationError(f"table {table.name}: the CSV is not UTF-8 text") from None
    finally:
        text.detach()
    return count


def _header_codecs(table: Table, header: list[str], dialect: str) -> list[ColumnCodec]:
    codecs = []
    for name in header:
        if name not in table.columns:
            raise ValidationError(f"table {table.name}: unknown column {show_value(name)}")
        codecs.append(ColumnCodec.for_column(table.columns[name], dialect))
    if len(set(header)) != len(header):
        raise ValidationError(f"table {table.name}: a column appears twice in the header")
    for column in table.columns:
        optional = column.nullable or column.default is not None or column.server_default
        if column.name not in header and not optional and table.autoincrement_column is not column:
            raise ValidationError(f"table {table.name}: required column {column.name!r} is missing")
    return codecs


def _batches(
    table: Table, reader: Iterator[list[str]], codecs: list[ColumnCodec], bounded: BoundedText
) -> Iterator[list[tuple[int, dict[str, Any]]]]:
    generated = table.autoincrement_column
    batch: list[tuple[int, dict[str, Any]]] = []
    for number, cells in enumerate(reader, start=1):
        bounded.row_done()
        if len(cells) != len(codecs):
            raise ValidationError(
                f"table {table.name}, row {number}: {len(cells)} cells where the header has "
                f"{len(codecs)}"
            )
        row: dict[str, Any] = {}
        for codec, cell in zip(codecs, cells, strict=True):
            try:
                row[codec.column.key] = codec.decode(cell)
            except ValueError as exc:
                raise ValidationError(
                    f"table {table.name}, row {number}, column {codec.column.name}: {exc}"
                ) from None
        if generated is not None and row.get(generated.key, 0) is None:
            del row[generated.key]
        batch.append((number, row))
        if len(batch) == BATCH_SIZE:
            yield batch
            batch = []
    if batch:
        yield batch


def _write_batch(
    connection: Connection, table: Table, batch: list[tuple[int, dict[str, Any]]], mode: str
) -> None:
    key_columns = list(table.primary_key.columns)
    existing = set() if mode == "replace" else _existing_keys(connection, key_columns, batch)
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    for number, row in batch:
        key = tuple(row.get(column.key) for column in key_columns)
        if key not in existing:
            inserts.append(row)
        elif mode == "insert":
            shown = ", ".join(f"{c.name}={v}" for c, v in zip(key_columns, key, strict=True))
            raise ConflictError(
                f"table {table.name}, row {number}: a row with {shown} already exists "
                "(import with mode=upsert or mode=replace)"
            )
        else:
            updates.append(row)
    try:
        for rows in _same_columns(inserts):
            connection.execute(insert(table), rows)
        for rows in _same_columns(updates):
            _update(connection, table, key_columns, rows)
    except sa_exc.SQLAlchemyError as exc:
        error = translate(exc)
        if isinstance(exc, sa_exc.DataError):
            error = ValidationError("the database rejected a value")
        where = f"table {table.name}, rows {batch[0][0]}-{batch[-1][0]}"
        raise type(error)(f"{where}: {error}") from exc


def _check_soft_delete(
    session: Session,
    table: Table,
    batch: list[tuple[int, dict[str, Any]]],
    deleted: dict[Table, list[dict[str, Any]]],
) -> None:
    # Live rows may not refer to deleted parents where the relation refuses or cascades ("leave"
    # makes such rows, so an export of them imports); rows marked deleted are kept for _cascade.
    rows = [{table.c[key].name: value for key, value in row.items()} for _, row in batch]
    check_parents(session, table, rows, policies=("refuse", "cascade"))
    if SOFT_DELETE_COLUMN in table.c and children_of(table):
        marked = [row for row in rows if row.get(SOFT_DELETE_COLUMN) is not None]
        deleted.setdefault(table, []).extend(marked)


def _existing_keys(
    connection: Connection, key_columns: list[Column[Any]], batch: list[tuple[int, dict[str, Any]]]
) -> set[tuple[Any, ...]]:
    keys = [
        tuple(row[column.key] for column in key_columns)
        for _, row in batch
        if all(row.get(column.key) is not None for column in key_columns)
    ]
    if not keys or not key_columns:
        return set()
    if len(key_columns) == 1:
        condition = key_columns[0].in_([key[0] for key in keys])
    else:
        condition = tuple_(*key_columns).in_(keys)
    return {tuple(row) for row in connection.execute(select(*key_columns).where(condition))}


def _same_columns(rows: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    # One executemany needs the same keys in every row; rows that leave the key to the
    # database differ from those that give it.
    groups: dict[frozenset[str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(frozenset(row), []).append(row)
    yield from groups.values()


def _update(
    connection: Connection, table: Table, key_columns: list[Column[Any]], rows: list[dict[str, Any]]
) -> None:
    keys = {column.key for column in key_columns}
    changed = [name for name in rows[0] if name not in keys]
    if not changed:
        return
    statement = (
        update(table)
        .where(*(column == bindparam(f"_key_{column.key}") for column in key_columns))
        .values({name: bindparam(f"_value_{name}") for name in changed})
    )
    connection.execute(
        statement,
        [
            {
                f"_key_{name}" if name in keys else f"_value_{name}": value
                for name, value in row.items()
            }
            for row in rows
        ],
    )

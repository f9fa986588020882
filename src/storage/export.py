"""CSV export of every table as one zip archive (:mod:`storage.importer` loads it back).

All tables are read in one consistent read transaction, and rows stream in batches into the
zip, so memory does not grow with table size. :func:`iter_export` hands the zip out piece by
piece while it is written (what ``GET /db/export.zip`` sends); :func:`write_export` writes it
to a file. Each table of the models that exists in the database becomes ``{table}.csv``: a
header row of column names, then one row per record, in the conventions of
:mod:`storage.csvformat`.
"""

from __future__ import annotations

import csv
import io
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from typing import IO, Any

from sqlalchemy import Connection, Table, select
from sqlmodel import SQLModel

from storage import database as storage_database
from storage._copying import BATCH_SIZE, existing_tables
from storage.csvformat import ColumnCodec
from storage.database import Database

__all__ = ["iter_export", "open_export", "write_export"]

_SPOOL_BYTES = 8 << 20  # an export larger than this goes to disk
CHUNK_BYTES = 1 << 16


def iter_export(
    chunk_bytes: int = CHUNK_BYTES, *, database: Database | None = None
) -> Iterator[bytes]:
    """The export zip of ``database`` (default :func:`storage.database.get_database`) in
    pieces of about ``chunk_bytes``, each given out as soon as it is written: the first bytes
    are ready after the first batch of rows, not after the last.

    The read transaction stays open until the generator is exhausted or closed.
    """
    sink = _Sink()
    for _ in _write(database, sink, {}):
        if sink.size >= chunk_bytes:
            yield sink.take()
    if sink.size:
        yield sink.take()  # the end of the last file and the zip's central directory


def write_export(
    target: IO[bytes],
    *,
    tables: Sequence[Table] | None = None,
    database: Database | None = None,
) -> dict[str, int]:
    """Write every table of the models that exists in the database as CSV into a zip.

    Args:
        target: a binary file open for writing.
        tables: only these (those that exist); default every table of the models.
        database: default :func:`storage.database.get_database`.

    Returns the number of rows written per table.
    """
    counts: dict[str, int] = {}
    for _ in _write(database, target, counts, tables):
        pass
    return counts


def open_export(*, database: Database | None = None) -> IO[bytes]:
    """The export zip (:func:`write_export`) in a spooled temporary file, open for reading at
    its start."""
    spooled = tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES)
    try:
        write_export(spooled, database=database)
    except BaseException:
        spooled.close()
        raise
    spooled.seek(0)
    return spooled


def _write(
    db: Database | None,
    target: IO[bytes] | _Sink,
    counts: dict[str, int],
    only: Sequence[Table] | None = None,
) -> Iterator[None]:
    # Yields after each batch of rows, so that iter_export can hand out what is written.
    names = None if only is None else {table.name for table in only}
    with (
        (db or storage_database.get_database()).snapshot_read() as connection,
        zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive,
    ):
        for table in existing_tables(connection, SQLModel.metadata):
            if names is not None and table.name not in names:
                continue
            counts[table.name] = 0
            for rows in _export_table(connection, table, archive):
                counts[table.name] += rows
                yield


def _export_table(connection: Connection, table: Table, archive: zipfile.ZipFile) -> Iterator[int]:
    with (
        archive.open(f"{table.name}.csv", "w", force_zip64=True) as member,
        io.TextIOWrapper(member, encoding="utf-8", newline="") as text,
    ):
        yield from write_table_csv(connection, table, text)


def write_table_csv(connection: Connection, table: Table, text: IO[str]) -> Iterator[int]:
    """Write one table as CSV (the header row, then the rows in batches) to a text stream
    opened with ``newline=""``; yields the number of rows of each batch once written."""
    codecs = [ColumnCodec.for_column(column) for column in table.columns]
    result = connection.execution_options(stream_results=True, yield_per=BATCH_SIZE).execute(
        select(table)
    )
    writer = csv.writer(text)
    writer.writerow([column.name for column in table.columns])
    for partition in result.partitions():
        writer.writerows(
            [codec.encode(value) for codec, value in zip(codecs, row, strict=True)]
            for row in partition
        )
        yield len(partition)


class _Sink(io.RawIOBase):
    """A write-only stream that cannot seek (so ``zipfile`` writes data descriptors), whose
    bytes :func:`iter_export` takes out as they come."""

    def __init__(self) -> None:
        super().__init__()
        self._parts: list[bytes] = []
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self._parts.append(chunk)
        self.size += len(chunk)
        return len(chunk)

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        self.size = 0
        return data

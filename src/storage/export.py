"""CSV export of every table as one zip archive (:mod:`storage.importer` loads it back).

All tables are read in one consistent read transaction, and rows stream in batches into a zip
written to a spooled temporary file, so memory does not grow with table size. Each table of the
models that exists in the database becomes ``{table}.csv``: a header row of column names, then
one row per record, in the conventions of :mod:`storage.csvformat`.
"""

from __future__ import annotations

import csv
import io
import tempfile
import zipfile
from typing import IO

from sqlalchemy import Connection, Table, select
from sqlmodel import SQLModel

from storage import database
from storage.backup import BATCH_SIZE, existing_tables
from storage.csvformat import ColumnCodec

__all__ = ["open_export", "write_export"]

_SPOOL_BYTES = 8 << 20  # an export larger than this goes to disk


def write_export(target: IO[bytes]) -> dict[str, int]:
    """Write every table of the models that exists in the database as CSV into a zip.

    Returns the number of rows written per table.
    """
    counts: dict[str, int] = {}
    with (
        database.get_database().snapshot_read() as connection,
        zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive,
    ):
        for table in existing_tables(connection, SQLModel.metadata):
            counts[table.name] = _export_table(connection, table, archive)
    return counts


def open_export() -> IO[bytes]:
    """The export zip in a spooled temporary file, open for reading at its start."""
    spooled = tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES)
    try:
        write_export(spooled)
    except BaseException:
        spooled.close()
        raise
    spooled.seek(0)
    return spooled


def _export_table(connection: Connection, table: Table, archive: zipfile.ZipFile) -> int:
    codecs = [ColumnCodec.for_column(column) for column in table.columns]
    result = connection.execution_options(stream_results=True, yield_per=BATCH_SIZE).execute(
        select(table)
    )
    count = 0
    with (
        archive.open(f"{table.name}.csv", "w", force_zip64=True) as member,
        io.TextIOWrapper(member, encoding="utf-8", newline="") as text,
    ):
        writer = csv.writer(text)
        writer.writerow([column.name for column in table.columns])
        for partition in result.partitions():
            writer.writerows(
                [codec.encode(value) for codec, value in zip(codecs, row, strict=True)]
                for row in partition
            )
            count += len(partition)
    return count

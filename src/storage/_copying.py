"""Copying tables between databases, shared by backups, restores, exports and imports: a
private engine on a SQLite file, the tables that exist, rows in batches, and PostgreSQL's
sequences moved past the rows copied in."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from sqlalchemy import Connection, Engine, MetaData, Table, create_engine, insert, inspect, select
from sqlalchemy import text as sql_text
from sqlalchemy.pool import NullPool

BATCH_SIZE = 1000


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

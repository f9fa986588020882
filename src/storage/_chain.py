"""The audit log's hash chain: each audit row carries a hash over its content and the hash of
the row before it, so that a changed, removed or inserted row shows (see
:mod:`storage._verification` and docs/audit.md).

The hash is SHA-256 over a canonical JSON text (an array in a fixed order, objects with sorted
keys, no whitespace, ASCII) of what the database gives back, so that it is the same when
computed at write time and after a read on SQLite, PostgreSQL and MariaDB:

- ``timestamp`` in UTC to the second (``2026-01-02T03:04:05``): MariaDB's ``DATETIME`` keeps
  no fraction, and MySQL would round it; on those backends the fraction is dropped before the
  row is written, elsewhere the row keeps it and the hash ignores it;
- ``component``, ``record_id``, ``operation``, ``actor`` as text;
- ``before`` and ``after`` as their JSON columns read back (``json.loads(json.dumps(v))``:
  tuples are lists, keys are strings; floats round-trip exactly), ``null`` for SQL NULL;
- ``previous``: the previous row's hash, ``null`` where the chain starts.

One chain per database, in the order of the audit ids. Every transaction that writes audit
rows first locks the one row of :class:`AuditChainHead` (``SELECT ... FOR UPDATE``) and keeps
it until it ends, so writers on several servers take turns between their first audit row and
their commit: the ids are handed out in chain order and the chain stays linear. SQLite
serialises write transactions already (``BEGIN IMMEDIATE``), where the lock is a plain read.
"""

from __future__ import annotations

import hashlib
import json
import weakref
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, Table, inspect, select, update
from sqlalchemy import insert as sa_insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import Insert
from sqlmodel import Field, SQLModel

__all__ = [
    "HEAD",
    "HEAD_ID",
    "AuditChainHead",
    "canonical",
    "ensure_head",
    "follow",
    "link",
    "lock_head",
    "row_hash",
]

HEAD_ID = 1
_FRACTIONLESS = ("mysql", "mariadb")
_GAP_LOCKING = ("mysql", "mariadb")
# The engines on which the head is known to exist (see _create_missing_head_apart).
_HEAD_SEEN: weakref.WeakSet[Engine] = weakref.WeakSet()
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True)


class AuditChainHead(SQLModel, table=True):
    """The chain's head: one row holding the hash of the last chained audit row.

    Every writer of audit rows locks it (see the module docstring); verification compares it
    with the last row, which shows rows removed from the end of the log.
    """

    __tablename__ = "auditlog_head"
    # Derived from the audit log: exported with the rest, never imported.
    __table_args__ = {"info": {"importable": False}}

    id: int = Field(default=HEAD_ID, primary_key=True)
    hash: str | None = Field(default=None, max_length=64)


HEAD: Table = AuditChainHead.__table__  # type: ignore[attr-defined]


def _stamp(value: datetime) -> str:
    if value.utcoffset():
        value = value.astimezone(UTC)
    return value.replace(tzinfo=None).isoformat(timespec="seconds")


def _as_read_back(value: Any) -> Any:
    return None if value is None else json.loads(json.dumps(value))


def canonical(row: Mapping[Any, Any], previous: str | None) -> bytes:
    """The text an audit row's hash is computed over (see the module docstring): a JSON array
    of the timestamp, component, record id, operation, actor, before, after and the previous
    hash, objects with their keys sorted, no whitespace, ASCII.

    Args:
        row: the row's column values (``timestamp``, ``component``, ``record_id``,
            ``operation``, ``actor``, ``before``, ``after``), as written or as read.
        previous: the hash of the row before it in the chain; ``None`` where the chain starts.
    """
    content = [
        _stamp(row["timestamp"]),
        row["component"],
        str(row["record_id"]),
        row["operation"],
        row["actor"],
        _as_read_back(row["before"]),
        _as_read_back(row["after"]),
        previous,
    ]
    return _CANONICAL.encode(content).encode("ascii")


def row_hash(row: Mapping[Any, Any], previous: str | None) -> str:
    """The hash of an audit row linked to ``previous`` (64 hexadecimal digits)."""
    return hashlib.sha256(canonical(row, previous)).hexdigest()


def link(connection: Connection, audit: Table, rows: list[dict[str, Any]]) -> None:
    """Chain ``rows`` (audit rows about to be inserted, in order) to the head: set their
    ``prev_hash`` and ``hash``, and move the head to the last one.

    Locks the head row until the transaction on ``connection`` ends; call it just before
    inserting the rows, so that their ids follow the chain order.

    Args:
        connection: the connection of the transaction that inserts the rows.
        audit: the audit log's table (the head starts from its last row when it is missing).
        rows: the rows' column values; changed in place.
    """
    previous = lock_head(connection, audit)
    fractionless = connection.dialect.name in _FRACTIONLESS
    for row in rows:
        if fractionless:
            row["timestamp"] = row["timestamp"].replace(microsecond=0)
        row["prev_hash"] = previous
        previous = row["hash"] = row_hash(row, previous)
    connection.execute(update(HEAD).where(HEAD.c.id == HEAD_ID).values(hash=previous))


def follow(connection: Connection, audit: Table) -> tuple[int | None, str | None]:
    """Move the head to the last audit row, after rows were copied in as they are (a restore).

    Locks the head row until the transaction on ``connection`` ends.

    Returns:
        the id and hash of the last audit row (``None`` for an empty log, or a hash for a row
        written before the chain existed).
    """
    lock_head(connection, audit)
    last = connection.execute(
        select(audit.c.id, audit.c.hash).order_by(audit.c.id.desc()).limit(1)
    ).first()
    last_id, last_hash = (last[0], last[1]) if last is not None else (None, None)
    connection.execute(update(HEAD).where(HEAD.c.id == HEAD_ID).values(hash=last_hash))
    return last_id, last_hash


def lock_head(connection: Connection, audit: Table) -> str | None:
    """Lock the head row until the transaction on ``connection`` ends (creating it, from the
    last audit row, when it is missing) and return its hash."""
    if connection.dialect.name in _GAP_LOCKING:
        _create_missing_head_apart(connection, audit)
    lock = select(HEAD.c.hash).where(HEAD.c.id == HEAD_ID).with_for_update()
    found = connection.execute(lock).first()
    if found is None:
        # Two writers may both get here; the second one's insert is ignored and it waits below.
        _create_head(connection, audit)
        found = connection.execute(lock).first()
    return None if found is None else found[0]


def _create_missing_head_apart(connection: Connection, audit: Table) -> None:
    """On MySQL/MariaDB, create a missing head in a short transaction of its own, once per
    engine (the library never removes the head once it is there).

    There a locking read that finds no row locks the gap where it would be, and two writers
    holding that gap, both inserting the head, deadlock: one of them fails. A plain read
    takes no lock; a head created apart is committed at once, then locked as usual.
    """
    engine = connection.engine
    if engine in _HEAD_SEEN:
        return
    present = select(HEAD.c.id).where(HEAD.c.id == HEAD_ID)
    if connection.execute(present).first() is None:
        with engine.begin() as apart:
            _create_head(apart, audit)
    _HEAD_SEEN.add(engine)


def ensure_head(connection: Connection, audit: Table) -> None:
    """Create the head row when its table exists without it (a new database, or one from
    before the chain), so that the first writers do not race to create it: on MySQL/MariaDB
    two transactions that both find it missing can deadlock on creating it. Called by
    :func:`storage.bootstrap.prepare_database`, under the schema lock."""
    present = inspect(connection)
    if not (present.has_table(HEAD.name) and present.has_table(audit.name)):
        return
    if connection.execute(select(HEAD.c.id).where(HEAD.c.id == HEAD_ID)).first() is None:
        _create_head(connection, audit)


def _create_head(connection: Connection, audit: Table) -> None:
    # The chain starts after the last row: NULL for a new log or one from before the chain.
    last = connection.execute(select(audit.c.hash).order_by(audit.c.id.desc()).limit(1)).scalar()
    connection.execute(_insert_ignored(connection.dialect.name), {"id": HEAD_ID, "hash": last})


def _insert_ignored(dialect: str) -> Insert:
    if dialect == "postgresql":
        return postgresql.insert(HEAD).on_conflict_do_nothing()
    if dialect == "sqlite":
        return sqlite.insert(HEAD).on_conflict_do_nothing()
    return sa_insert(HEAD).prefix_with("IGNORE")

"""Verifying the audit log's hash chain (:mod:`storage._chain`) from the first row to the head.

The log is read in pages by id inside one read transaction (one consistent state while writers
carry on), so memory stays flat whatever its size. Rows written before the chain existed (no
hash) may precede it: they are counted, and the report says where the chain starts. After that,
each row must link to the one before it and hash to what it holds, and the last row must be the
head's. The first row that does not is reported, with what is wrong with it:

``hash_missing``
    a row without a hash after the chain started (inserted by hand, or a hash removed)
``link_broken``
    its ``prev_hash`` is not the previous row's hash: rows were removed or inserted before it
``content_changed``
    its content no longer gives its hash: the row was changed after it was written
``head_mismatch``
    the head holds another hash than the last row's: rows were removed from the end of the
    log, or appended without moving the head
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from pydantic import BaseModel
from sqlalchemy import Connection, inspect, select
from sqlalchemy.engine import Row

from storage import database as storage_database
from storage._chain import HEAD, HEAD_ID, row_hash
from storage.auditor import AUDIT_TABLE
from storage.database import Database

__all__ = ["ChainProblem", "ChainReport", "verify_chain", "verify_chain_on"]

logger = logging.getLogger("storage._verification")

ChainProblem = Literal["hash_missing", "link_broken", "content_changed", "head_mismatch"]
DEFAULT_PAGE_SIZE = 1000

_COLUMNS = ("id", "timestamp", "component", "record_id", "operation", "actor", "before", "after")
_PAGE = select(*(AUDIT_TABLE.c[name] for name in (*_COLUMNS, "prev_hash", "hash")))


class ChainReport(BaseModel):
    """The outcome of :func:`verify_chain`."""

    ok: bool
    """Whether every chained row and the head check out."""
    checked: int = 0
    """Chained rows checked (up to the first broken one)."""
    unchained: int = 0
    """Rows before the chain starts, written before it existed (no hash)."""
    starts_at: int | None = None
    """The id of the first chained row."""
    last_id: int | None = None
    """The id of the last row checked."""
    head: str | None = None
    """The hash of the last row checked: keep it elsewhere (see docs/audit.md) to tell later
    that the log up to that row was not rewritten as a whole."""
    broken_at: int | None = None
    """The id of the first row where the chain breaks."""
    problem: ChainProblem | None = None
    """What is wrong at ``broken_at`` (see :mod:`storage._verification`)."""
    detail: str | None = None
    """The problem in words."""


def verify_chain(
    *, page_size: int = DEFAULT_PAGE_SIZE, database: Database | None = None
) -> ChainReport:
    """Check a database's audit log against its hash chain, in pages.

    Args:
        page_size: rows read per query.
        database: default :func:`storage.database.get_database`.

    Returns:
        the report: ok, or the first broken row and what is wrong with it.

    Raises:
        ValueError: ``page_size`` is less than 1.
        StorageError: the database could not be read.
    """
    with (database or storage_database.get_database()).snapshot_read() as connection:
        return verify_chain_on(connection, page_size=page_size)


def verify_chain_on(connection: Connection, *, page_size: int = DEFAULT_PAGE_SIZE) -> ChainReport:
    """:func:`verify_chain` on ``connection`` (another database, such as a backup file); read
    in one transaction there for a consistent result.

    Raises:
        ValueError: ``page_size`` is less than 1.
    """
    if page_size < 1:
        raise ValueError("page_size must be at least 1")
    walk = _Walk()
    after: int | None = None
    while walk.broken is None:
        page = _PAGE.order_by(AUDIT_TABLE.c.id).limit(page_size)
        if after is not None:
            page = page.where(AUDIT_TABLE.c.id > after)
        rows = connection.execute(page).all()
        for row in rows:
            if not walk.step(row):
                break
        if len(rows) < page_size:
            break
        after = rows[-1].id
    if walk.broken is None:
        walk.check_head(_head(connection))
    return walk.report()


def _head(connection: Connection) -> tuple[bool, str | None]:
    if not inspect(connection).has_table(HEAD.name):
        return False, None
    found = connection.execute(select(HEAD.c.hash).where(HEAD.c.id == HEAD_ID)).first()
    return (False, None) if found is None else (True, found[0])


class _Walk:
    """The state of one verification, row by row."""

    def __init__(self) -> None:
        self.checked = self.unchained = 0
        self.starts_at: int | None = None
        self.last_id: int | None = None
        self.last_hash: str | None = None
        self.broken: tuple[int | None, ChainProblem, str] | None = None

    def step(self, row: Row[Any]) -> bool:
        """Check one row; ``False`` once the chain is broken."""
        values = row._mapping
        if values["hash"] is None:
            if self.starts_at is None:
                self.unchained += 1
                return True
            return self._break(row.id, "hash_missing", "the row has no hash")
        if self.starts_at is None:
            self.starts_at = row.id
            if values["prev_hash"] is not None:
                return self._break(
                    row.id, "link_broken", "the first row links to a row that is not there"
                )
        elif values["prev_hash"] != self.last_hash:
            return self._break(
                row.id,
                "link_broken",
                f"the row does not link to row {self.last_id}: rows were removed or inserted",
            )
        if row_hash(values, values["prev_hash"]) != values["hash"]:
            return self._break(row.id, "content_changed", "the row's content was changed")
        self.checked += 1
        self.last_id, self.last_hash = row.id, values["hash"]
        return True

    def check_head(self, head: tuple[bool, str | None]) -> None:
        present, expected = head
        if present and expected != self.last_hash:
            where = f"row {self.last_id}" if self.last_id is not None else "an empty chain"
            self._break(
                self.last_id,
                "head_mismatch",
                f"the chain's head is not {where}: rows were removed from the end or added "
                "without the head",
            )

    def _break(self, row_id: int | None, problem: ChainProblem, detail: str) -> bool:
        self.broken = (row_id, problem, detail)
        logger.warning("the audit chain is broken at row %s: %s", row_id, detail)
        return False

    def report(self) -> ChainReport:
        broken_at, problem, detail = self.broken or (None, None, None)
        return ChainReport(
            ok=self.broken is None,
            checked=self.checked,
            unchained=self.unchained,
            starts_at=self.starts_at,
            last_id=self.last_id,
            head=self.last_hash,
            broken_at=broken_at,
            problem=problem,
            detail=detail,
        )

"""A run's output and log records in the database while it runs: ``program_run_lines``.

The process executing a run keeps what it prints and logs in a :class:`LineBuffer`; its
runner writes the buffers of all its runs in one statement every ``flush_interval`` (and once
more when a run ends), so any process reads a run's output with a fraction of a second of lag,
and a long run only ever appends rows, never rewrites a growing text. The pieces of a stream
in ``seq`` order are exactly its text: a printed line is one row, a line still being printed
when the buffer is written is a row of its own, and a log record is one row.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, Literal

from sqlalchemy import insert, select
from sqlmodel import col

from programs._tables import ProgramRunLine
from storage.auditor import utcnow
from storage.database import Database

__all__ = ["STREAMS", "LineBuffer", "read_lines", "read_text", "write_lines"]

Stream = Literal["output", "log"]
STREAMS: tuple[Stream, ...] = ("output", "log")


class LineBuffer:
    """One run's lines waiting to be written; at most ``limit`` characters a stream are kept.

    Thread-safe: the run writes from its task or thread, the runner takes from another.
    """

    def __init__(self, run_id: int, limit: int) -> None:
        self.run_id = run_id
        self._limit = limit
        self._lock = threading.Lock()
        self._seq = 0
        self._pending: list[dict[str, Any]] = []
        self._partial = ""
        self._kept: dict[str, int] = dict.fromkeys(STREAMS, 0)
        self._full: set[str] = set()

    def add(self, stream: Stream, text: str) -> None:
        """Add printed text (``output``) or one formatted log record (``log``)."""
        with self._lock:
            if stream == "log":
                self._append(stream, text)
                return
            pieces = (self._partial + text).splitlines(keepends=True)
            self._partial = pieces.pop() if pieces and not pieces[-1].endswith("\n") else ""
            for piece in pieces:
                self._append(stream, piece)

    def take(self) -> list[dict[str, Any]]:
        """The rows to write now (a line still being printed included), oldest first."""
        with self._lock:
            if self._partial:
                self._append("output", self._partial)
                self._partial = ""
            rows, self._pending = self._pending, []
            return rows

    def _append(self, stream: str, text: str) -> None:
        if stream in self._full:
            return
        room = self._limit - self._kept[stream]
        if len(text) > room:
            self._full.add(stream)
            text = text[:room] + (
                f"\n[the live {stream} stops at {self._limit} characters; the run's final "
                f"{stream} keeps the newest]\n"
            )
        self._kept[stream] += len(text)
        self._seq += 1
        self._pending.append(
            {
                "run_id": self.run_id,
                "seq": self._seq,
                "stream": stream,
                "text": text,
                "created_at": utcnow(),
            }
        )


def write_lines(database: Database, rows: Sequence[dict[str, Any]]) -> None:
    """Insert rows taken from buffers into ``database``, in one transaction (not audited)."""
    if rows:
        with database.transaction(savepoints=False) as session:
            session.execute(insert(ProgramRunLine), list(rows))


def read_lines(
    database: Database,
    run_id: int,
    *,
    after: int = 0,
    limit: int = 1000,
    stream: Stream | None = None,
) -> list[ProgramRunLine]:
    """A run's lines in ``database`` with ``seq`` above ``after``, in order, at most ``limit``."""
    statement = (
        select(ProgramRunLine)
        .where(col(ProgramRunLine.run_id) == run_id, col(ProgramRunLine.seq) > after)
        .order_by(col(ProgramRunLine.seq))
        .limit(limit)
    )
    if stream is not None:
        statement = statement.where(col(ProgramRunLine.stream) == stream)
    with database.read_session() as session:
        return list(session.scalars(statement))


def read_text(database: Database, run_id: int) -> dict[str, str]:
    """The output and the logs of a run so far, from its lines in ``database``:
    ``{"output": .., "log": ..}``."""
    statement = (
        select(col(ProgramRunLine.stream), col(ProgramRunLine.text))
        .where(col(ProgramRunLine.run_id) == run_id)
        .order_by(col(ProgramRunLine.seq))
    )
    texts: dict[str, list[str]] = {stream: [] for stream in STREAMS}
    with database.read_session() as session:
        for stream, piece in session.execute(statement):
            texts.setdefault(stream, []).append(piece)
    return {stream: "".join(pieces) for stream, pieces in texts.items()}

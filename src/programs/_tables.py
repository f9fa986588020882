"""The tables of the program store: ``program_templates``, ``program_instances`` and the run
history, ``program_runs``.

The first two follow the seed app's schema (name keys, the template's model class and JSON
schema, the instance's JSON data, timestamps) and add what keeps instances honest when code
changes: a template's ``schema_hash`` and ``available`` flag, an instance's ``valid`` flag and
``validation_errors``. Timestamps are timezone-aware UTC.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, ForeignKey, Index, Integer, Text
from sqlalchemy.dialects.mysql import MEDIUMTEXT
from sqlmodel import Field, SQLModel

from storage.auditor import UTCDateTime, utcnow
from storage.importer import IMPORTABLE

__all__ = [
    "NAME_LENGTH",
    "ProgramCell",
    "ProgramInstance",
    "ProgramRun",
    "ProgramRunLine",
    "ProgramTemplate",
    "RunStatus",
    "RunnerInstance",
]

NAME_LENGTH = 200
# Logs and tracebacks outgrow MySQL's 64 KiB TEXT; MEDIUMTEXT holds 16 MiB.
_LONG_TEXT = Text().with_variant(MEDIUMTEXT(), "mysql", "mariadb")


class ProgramTemplate(SQLModel, table=True):
    """A template as last synced from code; ``available`` is false once the code is gone."""

    __tablename__ = "program_templates"

    name: str = Field(primary_key=True, max_length=NAME_LENGTH)
    title: str | None = Field(default=None, max_length=NAME_LENGTH)
    description: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    model_class_name: str = Field(max_length=NAME_LENGTH)
    model_path: str = Field(default="", max_length=500)
    function_path: str = Field(default="", max_length=500)
    # The column keeps the seed's name; the attribute avoids pydantic's BaseModel.schema.
    json_schema: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column("schema", JSON, nullable=False)
    )
    schema_hash: str = Field(default="", max_length=64)
    version: str | None = Field(default=None, max_length=100)
    available: bool = True
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class ProgramInstance(SQLModel, table=True):
    """A stored set of parameters for one template, under its own name."""

    __tablename__ = "program_instances"

    name: str = Field(primary_key=True, max_length=NAME_LENGTH)
    template_name: str = Field(
        foreign_key="program_templates.name", index=True, max_length=NAME_LENGTH
    )
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    valid: bool = True
    validation_errors: list[dict[str, Any]] | None = Field(
        default=None, sa_column=Column(JSON(none_as_null=True), nullable=True)
    )
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class RunStatus(StrEnum):
    """Where a run is: ``queued`` and ``running`` are active, the other three are final."""

    queued = "queued"
    running = "running"
    completed = "completed"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def is_final(self) -> bool:
        """Whether the run has ended (completed, failed or cancelled)."""
        return self not in (RunStatus.queued, RunStatus.running)


class ProgramRun(SQLModel, table=True):
    """One run of a program instance: what ran, on which backend and cell, how it ended.

    ``program_name`` is not a foreign key, so the history outlives a deleted program.
    ``cell`` is the robot cell it runs in; ``slot`` is set only while it runs, and the unique
    ``(cell, slot)`` pair is what makes the database refuse a second running program in a cell.
    ``runner`` is the process that accepted the start, ``owner`` the one that executes it,
    renewing ``heartbeat_at`` while it does (its lease).
    """

    __tablename__ = "program_runs"
    # A unique index rather than a constraint: added to an existing table, its new ``slot``
    # column is NULL everywhere, so auto-migration can create it safely (SQLite included).
    __table_args__ = (
        Index("uq_program_runs_cell_slot", "cell", "slot", unique=True),
        {"info": {IMPORTABLE: False}},  # the runner's record: written by running programs
    )

    id: int | None = Field(default=None, primary_key=True)
    program_name: str = Field(index=True, max_length=NAME_LENGTH)
    template_name: str = Field(max_length=NAME_LENGTH)
    backend: str = Field(max_length=50)
    runner: str = Field(default="default", max_length=100)
    cell: str = Field(default="default", index=True, max_length=NAME_LENGTH)
    owner: str | None = Field(default=None, max_length=100)
    slot: int | None = Field(default=None)
    heartbeat_at: datetime | None = Field(
        default=None, sa_column=Column(UTCDateTime(), nullable=True)
    )
    status: str = Field(default=RunStatus.queued.value, index=True, max_length=20)
    parameters: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    result: Any = Field(default=None, sa_column=Column(JSON(none_as_null=True), nullable=True))
    error: str | None = Field(default=None, sa_column=Column(_LONG_TEXT, nullable=True))
    traceback: str | None = Field(default=None, sa_column=Column(_LONG_TEXT, nullable=True))
    output: str = Field(default="", sa_column=Column(_LONG_TEXT, nullable=False))
    logs: str = Field(default="", sa_column=Column(_LONG_TEXT, nullable=False))
    started_by: str = Field(default="internal", max_length=NAME_LENGTH)
    stopped_by: str | None = Field(default=None, max_length=NAME_LENGTH)
    created_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    stop_requested_at: datetime | None = None
    finished_at: datetime | None = None


class ProgramRunLine(SQLModel, table=True):
    """A piece of a run's printed output (``stream="output"``) or one log record (``"log"``),
    written while the run goes on; the pieces of a stream, in ``seq`` order, are its text.

    Lines are not audited: the run's final output and logs are, on its row.
    """

    __tablename__ = "program_run_lines"
    __table_args__ = {"info": {IMPORTABLE: False}}  # the runner's own bookkeeping

    run_id: int = Field(
        sa_column=Column(
            Integer, ForeignKey("program_runs.id", ondelete="CASCADE"), primary_key=True
        )
    )
    seq: int = Field(primary_key=True)
    stream: str = Field(max_length=10)
    text: str = Field(sa_column=Column(_LONG_TEXT, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime()))


class ProgramCell(SQLModel, table=True):
    """One robot cell: the row that starts and claims in the cell lock, and whose ``version``
    changes with every run event in the cell (what idle runners poll)."""

    __tablename__ = "program_cells"
    __table_args__ = {"info": {IMPORTABLE: False}}  # the runner's own bookkeeping

    name: str = Field(primary_key=True, max_length=NAME_LENGTH)
    version: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))


class RunnerInstance(SQLModel, table=True):
    """A live runner process: what it serves, and its heartbeat (its lease on its runs)."""

    __tablename__ = "program_runners"
    __table_args__ = {"info": {IMPORTABLE: False}}  # the runner's own bookkeeping

    id: str = Field(primary_key=True, max_length=NAME_LENGTH)
    cell: str = Field(index=True, max_length=NAME_LENGTH)
    host: str = Field(max_length=NAME_LENGTH)
    pid: int
    executes: bool = True
    slots: int = 1
    started_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    heartbeat_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))

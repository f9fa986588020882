"""A small data set with every awkward value, and ways to compare whole databases."""

from __future__ import annotations

import os
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlmodel import SQLModel

from storage import database
from storage.accessor import ModelAccessor
from storage.database import Database
from support.models import Color, Gadget, Recipe, Sample, User

AWKWARD_TEXTS = ["=cmd|' /C calc'!A0", "+1", "-x", "@sum", "'quoted", "\\N", "", 'a,b\n"c"']


def seed() -> None:
    """Write rows with NULLs, empty strings, JSON, datetimes and formula-like text."""
    users = ModelAccessor(User, "users")
    ada = users.insert(User(name="Ada", email="ada@example.com", age=36), actor="seed")
    users.insert(User(name="Nobody", email="", age=None), actor="seed")
    gone = users.insert(User(name="Gone", email="gone@example.com", age=1), actor="seed")
    users.delete(gone.id, actor="seed")
    users.insert_many([User(name=text, email=text) for text in AWKWARD_TEXTS], actor="seed")
    gadgets = ModelAccessor(Gadget, "gadgets")
    gadgets.insert(Gadget(serial="g-1", owner_id=ada.id), actor="seed")
    gadgets.insert(Gadget(serial="@g-2", owner_id=None), actor="seed")
    recipes = ModelAccessor(Recipe, "recipes")
    recipes.insert(Recipe(name="pick", body='line 1\nline 2, "quoted"'), actor="seed")
    recipes.insert(Recipe(name="=place", body=""), actor="seed")
    samples = ModelAccessor(Sample, "samples")
    samples.insert(
        Sample(
            taken_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
            day=date(2026, 1, 2),
            weight=Decimal("12.345"),
            color=Color.GREEN,
            ratio=-0.25,
            active=False,
            payload={"nested": {"list": [1, 2.5, None, "ü"]}, "empty": "", "formula": "=1+1"},
            ref=uuid.uuid4(),
        ),
        actor="seed",
    )
    samples.insert(
        Sample(
            taken_at=datetime(2025, 12, 31, 23, 59, 59, tzinfo=UTC),
            day=date(2025, 12, 31),
            weight=Decimal("-0.5"),
            payload=None,
            ref=None,
        ),
        actor="seed",
    )


def every_kind_of_sample() -> Sample:
    """A sample with a value in every column, none of them a default."""
    return Sample(
        taken_at=datetime(2025, 3, 4, 5, 6, 7, 890000, tzinfo=UTC),
        day=date(2025, 3, 4),
        weight=Decimal("12.345"),
        color=Color.GREEN,
        ratio=0.25,
        active=False,
        payload={"joints": [0.1, -1.5], "name": "home", "nested": {"ok": True}},
        ref=uuid.UUID(int=7),
    )


def wal_checkpoint_blocked(path: str | os.PathLike[str]) -> bool:
    """Whether a reader keeps a full checkpoint (``TRUNCATE``) of a SQLite file's WAL from
    finishing; asked on a connection of its own."""
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        busy, _, _ = connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    finally:
        connection.close()
    return bool(busy)


def table_rows() -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every model table, ordered by primary key."""
    rows: dict[str, list[tuple[Any, ...]]] = {}
    with database.read_session() as session:
        for table in SQLModel.metadata.sorted_tables:
            statement = select(table).order_by(*table.primary_key.columns)
            rows[table.name] = [tuple(row) for row in session.execute(statement)]
    return rows


def table_counts() -> dict[str, int]:
    """The number of rows in every model table."""
    with database.read_session() as session:
        return {
            table.name: int(session.scalar(select(func.count()).select_from(table)) or 0)
            for table in SQLModel.metadata.sorted_tables
        }


@contextmanager
def a_long_write(db: Database | None = None) -> Iterator[None]:
    """For the block, a write transaction held open on another thread, as a long import or
    restore holds the database."""
    holding, release = threading.Event(), threading.Event()

    def write() -> None:
        with (db or database.get_database()).transaction():
            holding.set()
            release.wait(60)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        assert holding.wait(10), "the long write did not start"
        yield
    finally:
        release.set()
        writer.join()

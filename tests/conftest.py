"""Fixtures shared by every test: a fresh database per test on each backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import SQLModel

from storage import database, feed
from storage.changes import off_database_restored, on_database_restored
from support import models  # noqa: F401  (registers the test tables on SQLModel.metadata)
from support.backends import server_url

ALL_BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql"),
    pytest.param("mariadb", id="mariadb"),
]


def _configure(url: str, *, create_tables: bool = True) -> None:
    database.set_default_database(database.Database())
    database.set_database_url(url)
    if create_tables:
        SQLModel.metadata.create_all(database.get_engine())


@pytest.fixture(params=ALL_BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database with every test table, on SQLite, PostgreSQL and MariaDB in turn."""
    name = request.param
    if name == "sqlite":
        _configure(f"sqlite:///{tmp_path / 'test.db'}")
    else:
        _configure(server_url(name), create_tables=False)  # reset() left every model table
    yield name
    feed.close_all(wait=True)
    database.get_database().dispose()


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[Path]:
    """A fresh SQLite file database with every test table; yields its path."""
    path = tmp_path / "test.db"
    _configure(f"sqlite:///{path}")
    yield path
    feed.close_all(wait=True)
    database.get_database().dispose()


@pytest.fixture
def restored_calls() -> Iterator[list[str]]:
    """Records each call of the database-restored listeners while the test runs."""
    calls: list[str] = []
    listener = on_database_restored(lambda: calls.append("restored"))
    yield calls
    off_database_restored(listener)

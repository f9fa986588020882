"""Fixtures of the command-line tests: databases of their own on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.backends import fresh_database
from support.cli import release_database, use_database

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql"),
]


@pytest.fixture(params=BACKENDS)
def app_db(request: pytest.FixtureRequest) -> Iterator[str]:
    """A new database on each backend with the test tables, made this process's database;
    yields its URL."""
    with fresh_database(request.param) as url:
        use_database(url)
        yield url
        release_database()


@pytest.fixture
def other_db(app_db: str) -> Iterator[str]:
    """A second new database on the same backend as ``app_db`` (no tables)."""
    backend = "sqlite" if app_db.startswith("sqlite") else "postgresql"
    with fresh_database(backend) as url:
        yield url

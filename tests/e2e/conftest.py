"""Fixtures of the end-to-end tests: a database of their own on each backend."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.backends import fresh_database

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql"),
    pytest.param("mariadb", id="mariadb"),
]


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A database no other test uses: a SQLite file, or a new database on the server (the
    servers under test run in other processes)."""
    with fresh_database(request.param) as url:
        yield url

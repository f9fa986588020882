"""Fixtures of the end-to-end tests: a database of their own on each backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support.backends import scratch_database

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql"),
    pytest.param("mariadb", id="mariadb"),
]


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database no other test uses: a SQLite file, or a new database on the server (the
    servers under test run in other processes)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'cell.db'}"
        return
    with scratch_database(request.param) as url:
        yield url

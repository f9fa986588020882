"""Fixtures of the vention-storage compatibility suites."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from storage import database, feed
from support.backends import server_url

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql"),
    pytest.param("mariadb", id="mariadb"),
]


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database's URL (every test table, no rows) on each backend, with
    ``storage.database`` not configured yet: for the examples that call ``bootstrap()`` or
    ``set_database_url()`` themselves."""
    url = f"sqlite:///{tmp_path / 'my_app.db'}" if request.param == "sqlite" else None
    database.set_default_database(database.Database())
    yield url or server_url(request.param)
    feed.close_all(wait=True)
    database.get_database().dispose()

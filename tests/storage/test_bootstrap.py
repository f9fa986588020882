"""bootstrap() and prepare_database() without an app: URL, tables, migrations."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from storage import database
from storage.bootstrap import bootstrap
from storage.errors import ConfigurationError


@pytest.fixture
def fresh_database() -> Iterator[None]:
    database.set_default_database(database.Database())
    yield
    database.get_database().dispose()


@pytest.mark.usefixtures("fresh_database")
def test_bootstrap_without_app_creates_tables(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    bootstrap(database_url=url)
    tables = set(inspect(database.get_engine()).get_table_names())
    assert {"auditlog", "user", "gadget", "recipe", "sample"} <= tables
    with pytest.raises(ConfigurationError):
        bootstrap(database_url=f"sqlite:///{tmp_path / 'other.db'}")


@pytest.mark.usefixtures("fresh_database")
def test_bootstrap_auto_migrates_and_warns_without_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "old.db"
    database.set_database_url(f"sqlite:///{path}")
    with database.get_engine().begin() as connection:
        connection.execute(text("CREATE TABLE user (id INTEGER PRIMARY KEY, name VARCHAR(100))"))
        connection.execute(text("INSERT INTO user (name) VALUES ('old')"))
    with caplog.at_level(logging.WARNING, logger="storage.bootstrap"):
        bootstrap(create_tables=True)
    assert "add column user.email" in caplog.text
    bootstrap(auto_migrate=True)
    columns = {c["name"] for c in inspect(database.get_engine()).get_columns("user")}
    assert {"email", "age", "deleted_at"} <= columns

"""PreparedRead: the values a session would load, from a statement compiled once."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlalchemy import bindparam, select

from storage import database
from storage.accessor import ModelAccessor
from storage.prepared import PreparedRead
from support.dataset import every_kind_of_sample
from support.models import Sample, User


def test_values_match_a_session_for_every_column_type(sqlite_db: Path) -> None:
    samples = ModelAccessor(Sample, "samples")
    stored = samples.insert(every_kind_of_sample())
    statement = select(*Sample.__table__.c).where(Sample.__table__.c.id == bindparam("key"))
    read = PreparedRead(statement)
    engine = database.get_engine()
    with engine.connect() as connection:
        expected = dict(connection.execute(statement, {"key": stored.id}).mappings().one())
        driver = connection.connection.driver_connection
        assert read.first(driver, engine.dialect, {"key": stored.id}) == expected
        assert read.first(driver, engine.dialect, {"key": uuid.uuid4()}) is None


def test_values_bound_in_the_statement_are_used(sqlite_db: Path) -> None:
    users = ModelAccessor(User, "users")
    users.insert_many([User(name="ada", age=30), User(name="ada", age=40)])
    statement = select(User.age).where(User.name == bindparam("name"), User.age > 35)  # type: ignore[arg-type, operator]
    engine = database.get_engine()
    with engine.connect() as connection:
        driver = connection.connection.driver_connection
        assert PreparedRead(statement).first(driver, engine.dialect, {"name": "ada"}) == {"age": 40}


def test_statements_expanded_at_run_time_are_refused(sqlite_db: Path) -> None:
    statement = select(User.id).where(User.id.in_([1, 2]))  # type: ignore[union-attr]
    engine = database.get_engine()
    with engine.connect() as connection:
        driver = connection.connection.driver_connection
        with pytest.raises(ValueError, match="plain positional parameters"):
            PreparedRead(statement).first(driver, engine.dialect, {})

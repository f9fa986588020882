"""storage.errors.translate: real driver errors become typed storage errors."""

from __future__ import annotations

import pickle
import sqlite3
import threading

import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import text as sql

from storage import database
from storage.accessor import ModelAccessor
from storage.errors import (
    ColumnValueError,
    DatabaseBusyError,
    DriverError,
    IntegrityConflictError,
    MissingColumnError,
    SchemaDriftError,
    StorageError,
    ValidationError,
    translate,
)
from support.models import Gadget, User

SERVERS = [pytest.param("postgresql", id="postgresql"), pytest.param("mariadb", id="mariadb")]


@pytest.mark.parametrize("backend", SERVERS, indirect=True)
def test_a_value_too_long_for_its_column_is_a_validation_error(backend: str) -> None:
    users = ModelAccessor(User, "users")
    with pytest.raises(ValidationError, match=r"a value does not fit its column \(\w+\)"):
        users.insert(User(name="x" * 101))
    assert users.count() == 0


@pytest.mark.parametrize("backend", SERVERS, indirect=True)
def test_a_deadlock_is_a_busy_database(backend: str) -> None:
    """Two transactions lock two rows in opposite order: the server breaks the deadlock by
    failing one of them, which comes out as DatabaseBusyError (503, retry); the other
    commits."""
    users = ModelAccessor(User, "users")
    first, second = users.insert_many([User(name="a"), User(name="b")])
    both_locked = threading.Barrier(2, timeout=30)
    outcomes: list[str] = []

    def work(mine: int, other: int, name: str) -> None:
        try:
            with database.transaction():
                users.get_for_update(mine)
                both_locked.wait()
                users.get_for_update(other)
                users.update(mine, name=name)
            outcomes.append("committed")
        except DatabaseBusyError as exc:
            outcomes.append(str(exc))

    threads = [
        threading.Thread(target=work, args=(first.id, second.id, "x")),
        threading.Thread(target=work, args=(second.id, first.id, "y")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(outcomes) == [
        "committed",
        "the database is busy with another transaction; try again",
    ]


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        pytest.param(sqlite3.OperationalError("database is locked"), DatabaseBusyError,
                     id="sqlite-locked"),
        pytest.param(sqlite3.DataError("string or blob too big"), ColumnValueError,
                     id="sqlite-data"),
        pytest.param(sqlite3.OperationalError("disk I/O error"), DriverError, id="sqlite-other"),
    ],
)  # fmt: skip
def test_driver_errors_without_sqlalchemy(error: Exception, expected: type) -> None:
    translated = translate(error)
    assert type(translated) is expected
    assert "SELECT" not in str(translated)


@pytest.mark.parametrize(
    ("error", "ours", "theirs"),
    [
        pytest.param(sa_exc.IntegrityError("INSERT INTO t VALUES (?)", ("secret",),
                                           sqlite3.IntegrityError("UNIQUE constraint failed: t.a")),
                     IntegrityConflictError, sa_exc.IntegrityError, id="integrity"),
        pytest.param(sa_exc.OperationalError("INSERT INTO t VALUES (?)", ("secret",),
                                             sqlite3.OperationalError("database is locked")),
                     DatabaseBusyError, sa_exc.OperationalError, id="busy"),
        pytest.param(sa_exc.DataError("INSERT INTO t VALUES (?)", ("secret",),
                                      sqlite3.DataError("string or blob too big")),
                     ColumnValueError, sa_exc.DataError, id="data"),
        pytest.param(sa_exc.ProgrammingError("SELECT x FROM t WHERE y = ?", ("secret",),
                                             sqlite3.ProgrammingError("no such thing")),
                     DriverError, sa_exc.DBAPIError, id="other"),
    ],
)  # fmt: skip
def test_translated_errors_are_also_the_sqlalchemy_error(
    error: sa_exc.DBAPIError, ours: type[StorageError], theirs: type[Exception]
) -> None:
    """Code that catches SQLAlchemy's class keeps catching the translation; the message stays
    ours (no SQL, no parameters), SQLAlchemy's attributes stay SQLAlchemy's."""
    translated = translate(error)
    assert type(translated) is ours
    assert isinstance(translated, theirs) and isinstance(translated, StorageError)
    for text in (str(translated), repr(translated)):
        assert "INSERT" not in text and "SELECT" not in text and "secret" not in text
    assert translated.orig is error.orig
    assert (translated.statement, translated.params) == (error.statement, error.params)
    copied = pickle.loads(pickle.dumps(translated))
    assert type(copied) is ours and str(copied) == str(translated)
    assert str(ours("only a message")) == "only a message"


@pytest.mark.parametrize("backend", SERVERS + [pytest.param("sqlite", id="sqlite")],
                         indirect=True)  # fmt: skip
def test_a_constraint_violation_is_caught_as_sqlalchemy_integrity_error(backend: str) -> None:
    users = ModelAccessor(User, "users")
    gadgets = ModelAccessor(Gadget, "gadgets")
    gadgets.insert(Gadget(serial="S1"))
    with pytest.raises(sa_exc.IntegrityError) as caught, database.transaction():
        users.insert(User(name="kept only if the block commits"))
        gadgets.insert(Gadget(serial="S1"))
    assert isinstance(caught.value, IntegrityConflictError)
    assert "INSERT" not in str(caught.value)
    assert users.count() == 0 and gadgets.count() == 1


def test_a_table_named_like_a_lock_is_no_busy_database(backend: str) -> None:
    """Classified by code, not by words: "no such table: locked_jobs" is no lock."""
    with pytest.raises(MissingColumnError) as raised, database.transaction() as session:
        session.execute(sql("SELECT * FROM locked_jobs"))
    assert "table" in str(raised.value) and "locked_jobs" in str(raised.value)
    assert "SELECT" not in str(raised.value)


def test_a_model_ahead_of_its_table_names_the_missing_column(backend: str) -> None:
    """A column the code has and the database lacks (no migration ran): every backend
    answers a SchemaDriftError naming it, a 503 over HTTP, not a bare database error."""
    users = ModelAccessor(User, "users")
    alice = users.insert(User(name="Alice", age=30))
    table = database.get_engine().dialect.identifier_preparer.quote("user")
    with database.transaction() as session:
        session.execute(sql(f"ALTER TABLE {table} DROP COLUMN age"))
    try:
        for call in (
            users.all,
            lambda: users.insert(User(name="Bob")),
            lambda: users.get(alice.id),
        ):
            with pytest.raises(MissingColumnError, match=r"column (user\.)?age\b") as raised:
                call()
            assert isinstance(raised.value, SchemaDriftError)
            assert "SELECT" not in str(raised.value) and "INSERT" not in str(raised.value)
    finally:  # the next test finds the table as the model has it
        with database.transaction() as session:
            session.execute(sql(f"ALTER TABLE {table} ADD COLUMN age INTEGER"))

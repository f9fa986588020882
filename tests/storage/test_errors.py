"""storage.errors.translate: real driver errors become typed storage errors."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from storage import database
from storage.accessor import ModelAccessor
from storage.errors import DatabaseBusyError, StorageError, ValidationError, translate
from support.models import User

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
        pytest.param(sqlite3.DataError("string or blob too big"), ValidationError,
                     id="sqlite-data"),
        pytest.param(sqlite3.OperationalError("disk I/O error"), StorageError, id="sqlite-other"),
    ],
)  # fmt: skip
def test_driver_errors_without_sqlalchemy(error: Exception, expected: type) -> None:
    translated = translate(error)
    assert type(translated) is expected
    assert "SELECT" not in str(translated)

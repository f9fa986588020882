"""A transaction the database ends as a deadlock victim is run again, on PostgreSQL and
MariaDB, with two real transactions locking two rows in opposite orders; on the default
database and on another one, whose own current session decides whether to retry."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest

from storage import database
from storage._retries import retry_on_deadlock, retrying
from storage.accessor import ModelAccessor
from storage.bootstrap import prepare_database
from storage.database import Database
from storage.errors import DatabaseBusyError, is_deadlock
from support.backends import fresh_database
from support.models import User

Transaction = Callable[[], None]


class Writer:
    """Runs one transaction on its database, as the programs' cell ledger does."""

    def __init__(self, db: Database) -> None:
        self.database = db

    @retry_on_deadlock
    def write(self, transaction: Transaction) -> None:
        transaction()


def run_bare(db: Database, transaction: Transaction) -> None:
    transaction()


def run_retried(db: Database, transaction: Transaction) -> None:
    retrying(db, transaction)


def run_as_method(db: Database, transaction: Transaction) -> None:
    Writer(db).write(transaction)


def run_joined(db: Database, transaction: Transaction) -> None:
    with db.transaction():  # the caller's transaction: only the caller could run it again
        retrying(db, transaction)


def crossing_writers(
    db: Database, run: Callable[[Database, Transaction], None]
) -> tuple[list[str], list[BaseException], int]:
    """Two writers lock two rows in opposite orders; returns who finished, what they raised,
    and how many times their transactions began in all."""
    if db.is_sqlite:
        pytest.skip("SQLite has one writer at a time: its writers never deadlock")
    users = ModelAccessor(User, "users", database=db)
    first, second = (users.insert(User(name=n), actor="t").id for n in ("a", "b"))
    both_hold = threading.Barrier(2, timeout=10)
    done: list[str] = []
    errors: list[BaseException] = []
    attempts: list[str] = []

    def write(mine: int, theirs: int, name: str) -> None:
        def transaction() -> None:
            attempts.append(name)
            with db.transaction():  # the accessor's reads raise storage errors, joined or not
                users.get_for_update(mine)
                if attempts.count(name) == 1:
                    both_hold.wait()  # each holds its row and reaches for the other's
                users.get_for_update(theirs)
            done.append(name)

        try:
            run(db, transaction)
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=write, args=(first, second, "one")),
        threading.Thread(target=write, args=(second, first, "two")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return done, errors, len(attempts)


@pytest.fixture
def other(backend: str) -> Iterator[Database]:
    """A database on the same server that is not the default one."""
    with fresh_database(backend) as url:
        db = Database(url)
        prepare_database(database=db)
        yield db
        db.dispose()


def test_without_a_retry_one_writer_is_the_deadlock_victim(backend: str) -> None:
    done, errors, _ = crossing_writers(database.get_database(), run_bare)
    assert len(done) == 1 and len(errors) == 1
    assert isinstance(errors[0], DatabaseBusyError) and is_deadlock(errors[0])


@pytest.mark.parametrize(
    "run", [pytest.param(run_retried, id="retrying"), pytest.param(run_as_method, id="method")]
)
def test_the_deadlock_victim_is_run_again(
    backend: str, run: Callable[[Database, Transaction], None]
) -> None:
    done, errors, attempts = crossing_writers(database.get_database(), run)
    assert errors == []
    assert sorted(done) == ["one", "two"] and attempts == 3


@pytest.mark.parametrize(
    "run", [pytest.param(run_retried, id="retrying"), pytest.param(run_as_method, id="method")]
)
def test_the_victim_on_another_database_is_run_again(
    other: Database, run: Callable[[Database, Transaction], None]
) -> None:
    done, errors, attempts = crossing_writers(other, run)
    assert errors == []
    assert sorted(done) == ["one", "two"] and attempts == 3


def test_inside_a_transaction_of_that_database_the_victim_is_not_run_again(
    other: Database,
) -> None:
    done, errors, attempts = crossing_writers(other, run_joined)
    assert len(done) == 1 and len(errors) == 1 and attempts == 2
    assert isinstance(errors[0], DatabaseBusyError) and is_deadlock(errors[0])

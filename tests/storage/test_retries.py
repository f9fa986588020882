"""A transaction the database ends as a deadlock victim is run again, on PostgreSQL and
MariaDB, with two real transactions locking two rows in opposite orders."""

from __future__ import annotations

import threading

import pytest
from sqlmodel import select

from storage import database
from storage._retries import retry_on_deadlock
from storage.accessor import ModelAccessor
from storage.errors import DatabaseBusyError, is_deadlock
from support.models import User


def crossing_writers(backend: str, wrap: bool) -> tuple[list[str], list[BaseException]]:
    if backend == "sqlite":
        pytest.skip("SQLite has one writer at a time: its writers never deadlock")
    users = ModelAccessor(User, "users")
    first, second = (users.insert(User(name=n), actor="t").id for n in ("a", "b"))
    both_hold = threading.Barrier(2, timeout=10)
    done: list[str] = []
    errors: list[BaseException] = []

    def write(mine: int, theirs: int, name: str) -> None:
        calls = {"n": 0}

        def transaction() -> None:
            calls["n"] += 1
            with database.transaction() as session:
                session.exec(select(User).where(User.id == mine).with_for_update()).one()
                if calls["n"] == 1:
                    both_hold.wait()  # each holds its row and reaches for the other's
                session.exec(select(User).where(User.id == theirs).with_for_update()).one()
            done.append(name)

        try:
            (retry_on_deadlock(transaction) if wrap else transaction)()
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
    return done, errors


def test_without_a_retry_one_writer_is_the_deadlock_victim(backend: str) -> None:
    done, errors = crossing_writers(backend, wrap=False)
    assert len(done) == 1 and len(errors) == 1
    assert isinstance(errors[0], DatabaseBusyError) and is_deadlock(errors[0])


def test_the_deadlock_victim_is_run_again(backend: str) -> None:
    done, errors = crossing_writers(backend, wrap=True)
    assert errors == []
    assert sorted(done) == ["one", "two"]

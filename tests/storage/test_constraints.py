"""storage.constraints and the translation by code: each constraint kind, and each transient
conflict between transactions, on SQLite, PostgreSQL and MariaDB with real driver errors."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi import FastAPI
from sqlalchemy import text as sql

from storage import database
from storage.accessor import ModelAccessor
from storage.constraints import BrokenConstraint, broken_constraint
from storage.errors import DatabaseBusyError, IntegrityConflictError, is_deadlock
from storage.router_model import build_crud_router
from support.models import Gadget, User
from support.testclient import TestClient

SERVERS = [pytest.param("postgresql", id="postgresql"), pytest.param("mariadb", id="mariadb")]

# What each backend names, for a write that breaks each kind of constraint.
NAMES = {
    "sqlite": {
        "unique": "gadget.serial",
        "foreign key": "gadget.owner_id",
        "not null": "probe.qty",
        "check": "qty_positive",
    },
    "postgresql": {
        "unique": "gadget_serial_key",
        "foreign key": "gadget_owner_id_fkey",
        "not null": "probe.qty",
        "check": "qty_positive",
    },
    "mariadb": {
        "unique": "serial",
        "foreign key": "gadget.owner_id",
        "not null": "qty",
        "check": "qty_positive",
    },
}


@pytest.fixture
def probe(backend: str) -> Iterator[Callable[[str], None]]:
    """A table with a NOT NULL and a named CHECK constraint; yields a function that runs one
    statement on it in a transaction of its own."""
    with database.transaction() as session:
        session.execute(
            sql(
                "CREATE TABLE probe (id INTEGER PRIMARY KEY, qty INTEGER NOT NULL, "
                "CONSTRAINT qty_positive CHECK (qty > 0))"
            )
        )

    def run(statement: str) -> None:
        with database.transaction() as session:
            session.execute(sql(statement))

    yield run
    run("DROP TABLE probe")


def _broken(write: Callable[[], object]) -> IntegrityConflictError:
    with pytest.raises(IntegrityConflictError) as raised:
        write()
    return raised.value


def test_every_constraint_kind_is_named(backend: str, probe: Callable[[str], None]) -> None:
    gadgets = ModelAccessor(Gadget, "gadgets")
    gadgets.insert(Gadget(serial="SECRET-1"))
    broken = {
        "unique": _broken(lambda: gadgets.insert(Gadget(serial="SECRET-1"))),
        "foreign key": _broken(lambda: gadgets.insert(Gadget(serial="S2", owner_id=987654))),
        "not null": _broken(lambda: probe("INSERT INTO probe (id, qty) VALUES (1, NULL)")),
        "check": _broken(lambda: probe("INSERT INTO probe (id, qty) VALUES (2, -5)")),
    }
    for kind, error in broken.items():
        name = NAMES[backend][kind]
        assert error.constraint == BrokenConstraint(kind, name)
        assert str(error) == f"{kind} constraint violated ({name})"
        for secret in ("SECRET", "987654", "-5", "INSERT"):
            assert secret not in str(error)
    assert gadgets.count() == 1


def test_a_broken_foreign_key_in_an_update_is_named(backend: str) -> None:
    gadgets = ModelAccessor(Gadget, "gadgets")
    users = ModelAccessor(User, "users")
    owner = users.insert(User(name="Ada"))
    gadget = gadgets.insert(Gadget(serial="S1", owner_id=owner.id))
    error = _broken(lambda: gadgets.update(gadget.id, owner_id=4242))
    assert error.constraint == BrokenConstraint("foreign key", NAMES[backend]["foreign key"])
    assert gadgets.get(gadget.id).owner_id == owner.id  # type: ignore[union-attr]


def test_the_http_409_names_the_foreign_key(backend: str) -> None:
    """On a create, and on an update inside the route's own transaction (a PUT, a PATCH): the
    write's failed session is not asked which parent is missing."""
    app = FastAPI()
    app.include_router(build_crud_router(ModelAccessor(Gadget, "gadgets")))
    client = TestClient(app)
    op = {"X-User": "op"}
    expected = {"detail": f"foreign key constraint violated ({NAMES[backend]['foreign key']})"}
    answer = client.post("/gadgets/", json={"serial": "S1", "owner_id": 31337}, headers=op)
    assert (answer.status_code, answer.json()) == (409, expected)
    gadget = client.post("/gadgets/", json={"serial": "S2"}, headers=op).json()
    for method in ("PUT", "PATCH"):
        answer = client.request(
            method, f"/gadgets/{gadget['id']}", json={"owner_id": -6149}, headers=op
        )
        assert (answer.status_code, answer.json()) == (409, expected), method
    assert client.get(f"/gadgets/{gadget['id']}").json()["owner_id"] is None


def test_errors_without_a_code_are_no_constraint() -> None:
    assert broken_constraint(sqlite3.IntegrityError("UNIQUE constraint failed: t.a")) is None
    assert broken_constraint(ValueError("unique")) is None
    assert broken_constraint(None) is None


@contextmanager
def _locked_elsewhere(key: int) -> Iterator[None]:
    """Hold ``key``'s row lock in another connection while the caller's block runs."""
    connection = database.get_engine().connect()
    try:
        connection.execute(
            sql(f"SELECT id FROM {_user_table()} WHERE id = :id FOR UPDATE"), {"id": key}
        )
        yield
    finally:
        connection.rollback()
        connection.close()


def _user_table() -> str:
    return database.get_engine().dialect.identifier_preparer.quote("user")


@pytest.mark.parametrize("backend", SERVERS, indirect=True)
def test_a_lock_wait_that_runs_out_is_a_busy_database(backend: str) -> None:
    users = ModelAccessor(User, "users")
    key = users.insert(User(name="Ada")).id
    assert key is not None
    set_timeout = {
        "postgresql": "SET LOCAL lock_timeout = '200ms'",
        "mariadb": "SET SESSION innodb_lock_wait_timeout = 1",
    }[backend]
    with _locked_elsewhere(key):
        with pytest.raises(DatabaseBusyError) as raised, database.transaction() as session:
            session.execute(sql(set_timeout))
            users.get_for_update(key)
    assert not is_deadlock(raised.value)  # nothing was rolled back by the server
    assert users.get(key).name == "Ada"  # type: ignore[union-attr]


def test_a_locked_sqlite_database_is_busy(sqlite_db: Path) -> None:
    users = ModelAccessor(User, "users")
    database.get_database().dispose()
    database.get_database().set_busy_timeout(0.2)
    holder = sqlite3.connect(sqlite_db, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # another process writing
        with pytest.raises(DatabaseBusyError):
            users.insert(User(name="Bob"))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert users.count() == 0


@pytest.mark.parametrize("backend", SERVERS, indirect=True)
def test_a_serialization_failure_is_a_busy_database_to_retry(backend: str) -> None:
    """A snapshot transaction writes a row that another one changed since it began: the
    server rolls it back (PostgreSQL 40001; MariaDB 1020 with snapshot isolation)."""
    users = ModelAccessor(User, "users")
    key = users.insert(User(name="Ada")).id
    setup = {
        "postgresql": ["SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"],
        "mariadb": ["SET SESSION innodb_snapshot_isolation = ON"],
    }[backend]
    table = _user_table()
    read_done, changed = threading.Event(), threading.Event()

    def change_meanwhile() -> None:
        read_done.wait(30)
        users.update(key, name="changed by another writer")
        changed.set()

    other = threading.Thread(target=change_meanwhile)
    other.start()
    try:
        with pytest.raises(DatabaseBusyError) as raised, database.transaction() as session:
            for statement in setup:
                session.execute(sql(statement))
            session.execute(sql(f"SELECT name FROM {table} WHERE id = :id"), {"id": key})
            read_done.set()
            assert changed.wait(30)
            session.execute(sql(f"UPDATE {table} SET name = 'mine' WHERE id = :id"), {"id": key})
    finally:
        read_done.set()
        other.join(30)
    assert is_deadlock(raised.value)
    assert users.get(key).name == "changed by another writer"  # type: ignore[union-attr]

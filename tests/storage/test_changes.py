"""After-commit listeners and database-restored notifications."""

from __future__ import annotations

import logging
from datetime import datetime

import pytest
from sqlmodel import Session

from storage import changes, database
from storage.accessor import ModelAccessor
from storage.changes import Change
from support.models import Gadget, Recipe, User

pytestmark = pytest.mark.usefixtures("backend")


def test_listener_gets_one_call_per_committed_transaction() -> None:
    users = ModelAccessor(User, "users")
    gadgets = ModelAccessor(Gadget, "gadgets")
    user_batches: list[list[Change]] = []
    gadget_batches: list[list[Change]] = []
    users.after_commit()(user_batches.append)
    gadgets.after_commit()(gadget_batches.append)

    with database.transaction():
        alice = users.insert(User(name="alice"))
        users.update(alice.id, name="Alice")
        gadgets.insert(Gadget(serial="S1"))
        assert user_batches == []  # not before the commit
    assert len(user_batches) == 1 and len(gadget_batches) == 1
    assert [(c.table, c.operation) for c in user_batches[0]] == [
        ("user", "create"),
        ("user", "update"),
    ]
    assert user_batches[0][1].before is not None and user_batches[0][1].before["name"] == "alice"
    assert user_batches[0][1].values["name"] == "Alice"

    users.delete(alice.id)  # a soft delete is the update that sets deleted_at
    (deleted,) = user_batches[-1]
    assert deleted.operation == "update" and deleted.before is not None
    assert deleted.before["deleted_at"] is None
    assert isinstance(deleted.values["deleted_at"], datetime)  # Python values, not JSON text

    gadget = gadgets.all()[0]
    gadgets.delete(gadget.id)
    (removed,) = gadget_batches[-1]
    assert (removed.operation, removed.values["serial"], removed.before) == ("delete", "S1", None)


def test_listener_is_not_called_on_rollback() -> None:
    users = ModelAccessor(User, "users")
    batches: list[list[Change]] = []
    users.after_commit()(batches.append)
    with pytest.raises(RuntimeError), database.transaction():
        users.insert(User(name="a"))
        raise RuntimeError("rollback")
    assert batches == []


def test_rolled_back_savepoint_changes_are_not_reported() -> None:
    users = ModelAccessor(User, "users")
    batches: list[list[Change]] = []
    users.after_commit()(batches.append)

    @users.after_insert()
    def refuse(session: object, user: User) -> None:
        if user.name == "bad":
            raise ValueError("bad")

    with database.transaction():
        users.insert(User(name="good"))
        with pytest.raises(ValueError):
            users.insert(User(name="bad"))
    assert [c.values["name"] for c in batches[0]] == ["good"]


def test_failing_listener_is_logged_and_data_stays(caplog: pytest.LogCaptureFixture) -> None:
    users = ModelAccessor(User, "users")
    seen: list[int] = []

    @users.after_commit()
    def broken(batch: list[Change]) -> None:
        raise RuntimeError("listener bug")

    users.after_commit()(lambda batch: seen.append(len(batch)))
    with caplog.at_level(logging.ERROR, logger="storage.changes"):
        users.insert(User(name="a"))
    assert users.count() == 1 and seen == [1]
    assert "listener bug" in caplog.text


def test_listener_may_write_in_its_own_transaction() -> None:
    users = ModelAccessor(User, "users")
    gadgets = ModelAccessor(Gadget, "gadgets")

    @users.after_commit()
    def mirror(batch: list[Change]) -> None:
        assert database.CURRENT_SESSION.get() is None
        gadgets.insert_many([Gadget(serial=f"for-{c.values['id']}") for c in batch])

    user = users.insert(User(name="a"))
    assert [g.serial for g in gadgets.all()] == [f"for-{user.id}"]


def test_database_restored_listeners() -> None:
    calls: list[str] = []

    @changes.on_database_restored
    def first() -> None:
        calls.append("first")

    @changes.on_database_restored
    def broken() -> None:
        raise RuntimeError("ignored")

    try:
        changes.notify_database_restored()
        assert calls == ["first"]
    finally:
        changes.off_database_restored(first)
        changes.off_database_restored(broken)


def test_one_listener_on_several_tables_is_called_once_per_transaction() -> None:
    users = ModelAccessor(User, "users")
    gadgets = ModelAccessor(Gadget, "gadgets")
    batches: list[list[tuple[str, str]]] = []

    @users.after_commit()
    @gadgets.after_commit()
    def reload(batch: list[Change]) -> None:
        batches.append([(c.table, c.operation) for c in batch])

    with database.transaction():
        users.insert(User(name="a"))
        gadgets.insert(Gadget(serial="S1"))
    assert batches == [[("user", "create"), ("gadget", "create")]]


def test_writes_through_a_plain_session_and_other_accessors_are_reported() -> None:
    """Changes come from SQLAlchemy's unit of work: any ORM write to the table counts."""
    recipes = ModelAccessor(Recipe, "recipes")
    batches: list[list[tuple[str, str]]] = []
    recipes.after_commit()(
        lambda batch: batches.append([(c.operation, c.values["name"]) for c in batch])
    )

    with database.transaction() as session:
        session.add(Recipe(name="soup"))
    ModelAccessor(Recipe, "other").insert(Recipe(name="stew"))
    with Session(database.get_engine()) as session:  # not current, committed by hand
        stew = session.get(Recipe, "stew")
        assert stew is not None
        stew.body = "slow"
        session.commit()
        session.add(Recipe(name="same values"))
        session.flush()
        session.rollback()  # never reported
    assert batches == [[("create", "soup")], [("create", "stew")], [("update", "stew")]]


def test_saving_identical_values_is_not_a_change() -> None:
    users = ModelAccessor(User, "users")
    batches: list[list[Change]] = []
    users.after_commit()(batches.append)
    alice = users.insert(User(name="a"))
    users.save(User(id=alice.id, name="a"))
    users.update(alice.id, name="a")
    assert len(batches) == 1


def test_a_savepoint_rolled_back_by_the_caller_is_not_reported() -> None:
    users = ModelAccessor(User, "users")
    batches: list[list[Change]] = []
    users.after_commit()(batches.append)
    with database.transaction() as session:
        users.insert(User(name="kept"))
        savepoint = session.begin_nested()
        session.add(User(name="dropped"))
        session.flush()
        savepoint.rollback()
    assert [[c.values["name"] for c in batch] for batch in batches] == [["kept"]]


def test_add_commit_listener_and_held_until_exit() -> None:
    """The table-level registration and the hold of vention-storage 0.20."""
    seen: list[str] = []

    def listener(batch: list[Change]) -> None:
        seen.extend(f"{c.table}:{c.operation}" for c in batch)

    changes.add_commit_listener("recipe", listener)
    changes.add_commit_listener("recipe", listener)  # once is enough
    try:
        with Session(database.get_engine()) as session, changes.held_until_exit(session):
            session.add(Recipe(name="a"))
            session.commit()
            session.add(Recipe(name="b"))
            session.commit()
            assert seen == []  # held until the block exits
        assert seen == ["recipe:create", "recipe:create"]
    finally:
        changes.remove_commit_listener("recipe", listener)
    with database.transaction() as session:
        session.add(Recipe(name="c"))
    assert len(seen) == 2


def test_an_accessors_listeners_go_with_it() -> None:
    calls: list[int] = []
    ModelAccessor(Recipe, "recipes").after_commit()(lambda batch: calls.append(len(batch)))
    ModelAccessor(Recipe, "recipes").insert(Recipe(name="nobody listens"))
    assert calls == []

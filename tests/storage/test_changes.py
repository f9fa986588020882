"""After-commit listeners and database-restored notifications."""

from __future__ import annotations

import logging

import pytest

from storage import changes, database
from storage.accessor import ModelAccessor
from storage.changes import Change
from support.models import Gadget, User

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

    users.delete(alice.id)
    assert user_batches[-1][0].operation == "delete"
    assert user_batches[-1][0].values["deleted_at"] is not None


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

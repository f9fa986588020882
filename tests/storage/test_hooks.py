"""Lifecycle hooks run inside the write's transaction."""

from __future__ import annotations

import pytest
from sqlalchemy import func
from sqlmodel import Session, select

from storage import database
from storage.accessor import ModelAccessor
from storage.auditor import AuditLog
from storage.hooks import HOOK_EVENTS, HookRegistry
from support.models import Gadget, User

pytestmark = pytest.mark.usefixtures("backend")


def audit_count() -> int:
    with database.read_session() as session:
        return int(session.scalar(select(func.count()).select_from(AuditLog)) or 0)


def test_registry_emits_in_order_and_rejects_unknown_events() -> None:
    registry: HookRegistry[str] = HookRegistry()
    seen: list[str] = []
    registry.decorator("before_insert")(lambda s, i: seen.append(f"1:{i}"))
    registry.decorator("before_insert")(lambda s, i: seen.append(f"2:{i}"))
    registry.emit("before_insert", session=None, instance="x")  # type: ignore[arg-type]
    assert seen == ["1:x", "2:x"]
    assert registry.has("before_insert") and not registry.has("after_delete")
    assert len(HOOK_EVENTS) == 6
    with pytest.raises(ValueError, match="unknown hook event"):
        registry.decorator("on_save")  # type: ignore[arg-type]


def test_every_hook_runs_with_the_session_and_instance() -> None:
    users = ModelAccessor(User, "users")
    calls: list[tuple[str, str]] = []
    for event in HOOK_EVENTS:
        users.hooks.decorator(event)(
            lambda session, user, event=event: calls.append((event, user.name))
        )
    user = users.insert(User(name="a"))
    users.update(user.id, name="b")
    users.delete(user.id)
    users.restore(user.id)
    assert calls == [
        ("before_insert", "a"),
        ("after_insert", "a"),
        ("before_update", "b"),
        ("after_update", "b"),
        ("before_delete", "b"),
        ("after_delete", "b"),
        ("before_update", "b"),
        ("after_update", "b"),
    ]


def test_before_hook_may_change_the_row() -> None:
    users = ModelAccessor(User, "users")

    @users.before_insert()
    def normalise(session: Session, user: User) -> None:
        user.email = user.email.lower()

    user = users.insert(User(name="a", email="A@X.IO"))
    stored = users.get(user.id)
    assert stored is not None and stored.email == "a@x.io"


@pytest.mark.parametrize(
    "event",
    [
        pytest.param("before_insert", id="before-insert"),
        pytest.param("after_insert", id="after-insert"),
    ],
)
def test_failing_insert_hook_rolls_back_row_and_audit(event: str) -> None:
    users = ModelAccessor(User, "users")

    def fail(session: Session, user: User) -> None:
        raise ValueError("invalid")

    users.hooks.decorator(event)(fail)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="invalid"):
        users.insert(User(name="a"))
    with pytest.raises(ValueError, match="invalid"):
        users.insert_many([User(name="b"), User(name="c")])
    assert users.count(include_deleted=True) == 0
    assert audit_count() == 0


def test_failing_update_and_delete_hooks_roll_back() -> None:
    users = ModelAccessor(User, "users")
    user = users.insert(User(name="a"))

    @users.after_update()
    def refuse_update(session: Session, instance: User) -> None:
        raise RuntimeError("no updates")

    @users.before_delete()
    def refuse_delete(session: Session, instance: User) -> None:
        raise RuntimeError("no deletes")

    with pytest.raises(RuntimeError):
        users.update(user.id, name="b")
    with pytest.raises(RuntimeError):
        users.delete(user.id)
    stored = users.get(user.id)
    assert stored is not None and stored.name == "a"
    assert audit_count() == 1


def test_accessor_call_inside_a_hook_joins_the_transaction() -> None:
    users = ModelAccessor(User, "users")
    gadgets = ModelAccessor(Gadget, "gadgets")

    @users.after_insert()
    def give_gadget(session: Session, user: User) -> None:
        assert database.CURRENT_SESSION.get() is session
        gadgets.insert(Gadget(serial=f"G-{user.name}", owner_id=user.id))
        if user.name == "fail":
            raise RuntimeError("after the nested insert")

    users.insert(User(name="ok"))
    with pytest.raises(RuntimeError):
        users.insert(User(name="fail"))
    assert [g.serial for g in gadgets.all()] == ["G-ok"]
    assert [u.name for u in users.all()] == ["ok"]
    assert audit_count() == 2

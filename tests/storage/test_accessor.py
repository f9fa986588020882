"""ModelAccessor reads and writes on every backend."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlmodel import select

from storage import database
from storage.accessor import ModelAccessor
from storage.auditor import AuditLog
from storage.errors import IntegrityConflictError
from support.models import Gadget, Recipe, User

pytestmark = pytest.mark.usefixtures("backend")


def audit_rows(component: str | None = None) -> list[AuditLog]:
    with database.read_session() as session:
        statement = select(AuditLog).order_by(AuditLog.id)  # type: ignore[arg-type]
        if component:
            statement = statement.where(AuditLog.component == component)
        return list(session.exec(statement).all())


@pytest.fixture
def users() -> ModelAccessor[User]:
    return ModelAccessor(User, "users")


@pytest.fixture
def gadgets() -> ModelAccessor[Gadget]:
    return ModelAccessor(Gadget, "gadgets")


@pytest.fixture
def recipes() -> ModelAccessor[Recipe]:
    return ModelAccessor(Recipe, "recipes")


def test_attributes(users: ModelAccessor[User]) -> None:
    assert users.model is User
    assert users.component == "users"
    assert users.where is User
    assert users.primary_key == "id"
    assert users.soft_delete is True


def test_rejects_non_table_models() -> None:
    from sqlmodel import SQLModel

    class Plain(SQLModel):
        x: int

    with pytest.raises(TypeError, match="table=True"):
        ModelAccessor(Plain, "plain")


def test_insert_get_all_find_count(users: ModelAccessor[User]) -> None:
    alice = users.insert(User(name="Alice", email="a@x.io", age=30), actor="admin")
    assert alice.id is not None
    users.insert_many([User(name="Bob", age=20), User(name="Carol", age=40)])

    fetched = users.get(alice.id)
    assert fetched is not None and fetched.email == "a@x.io"
    assert users.get(alice.id + 1000) is None
    assert [u.name for u in users.all()] == ["Alice", "Bob", "Carol"]
    assert [u.name for u in users.all(order_by="age", order_desc=True)] == ["Carol", "Alice", "Bob"]
    assert [u.name for u in users.all(limit=1, offset=1)] == ["Bob"]
    assert [u.name for u in users.find(users.where.age >= 30)] == ["Alice", "Carol"]
    assert [u.name for u in users.find(users.where.age > 10, users.where.name != "Bob")] == [
        "Alice",
        "Carol",
    ]
    assert users.count() == 3
    assert users.count(users.where.age < 35) == 2
    assert users.get(str(alice.id)) is not None  # keys from URLs arrive as text


def test_unknown_order_by_raises(users: ModelAccessor[User]) -> None:
    with pytest.raises(ValueError, match="nope"):
        users.all(order_by="nope")


def test_insert_is_audited_with_actor(users: ModelAccessor[User]) -> None:
    alice = users.insert(User(name="Alice"), actor="operator")
    (row,) = audit_rows("users")
    assert (row.operation, row.actor, row.record_id) == ("create", "operator", str(alice.id))
    assert row.before is None
    assert row.after is not None and row.after["name"] == "Alice"


def test_save_inserts_new_and_explicit_ids_then_updates(users: ModelAccessor[User]) -> None:
    created = users.save(User(name="Alice"), actor="a")
    explicit = users.save(User(id=500, name="Bob"), actor="a")
    assert explicit.id == 500 and users.get(500) is not None

    changed = User(id=created.id, name="Alice Smith", email="", age=None)
    saved = users.save(changed, actor="b")
    assert saved.name == "Alice Smith"
    assert [r.operation for r in audit_rows("users")] == ["create", "create", "update"]
    update = audit_rows("users")[-1]
    assert update.before is not None and update.before["name"] == "Alice"
    assert update.after is not None and update.after["name"] == "Alice Smith"


def test_save_of_loaded_instance_audits_real_before(users: ModelAccessor[User]) -> None:
    alice = users.insert(User(name="Alice"))
    with database.transaction():
        loaded = users.get(alice.id)
        assert loaded is not None
        loaded.name = "Changed"
        users.save(loaded)
    update = audit_rows("users")[-1]
    assert update.before is not None and update.before["name"] == "Alice"
    assert update.after is not None and update.after["name"] == "Changed"


def test_save_without_changes_writes_nothing(users: ModelAccessor[User]) -> None:
    alice = users.insert(User(name="Alice"))
    users.save(User(id=alice.id, name="Alice", email="", age=None))
    assert len(audit_rows("users")) == 1


def test_update_with_the_stored_values_writes_nothing(users: ModelAccessor[User]) -> None:
    alice = users.insert(User(name="Alice", age=30))
    seen: list[str] = []
    users.before_update()(lambda session, user: seen.append("hook"))
    users.after_commit()(lambda change: seen.append("event"))
    updated = users.update(alice.id, name="Alice", age=30)
    assert updated is not None and (updated.name, updated.age) == ("Alice", 30)
    assert len(audit_rows("users")) == 1
    assert seen == []
    users.update(alice.id, age=31)
    assert [row.operation for row in audit_rows("users")] == ["create", "update"]
    assert seen == ["hook", "event"]


def test_save_copies_deleted_at_as_vention_storage_does(users: ModelAccessor[User]) -> None:
    alice = users.insert(User(name="Alice"))
    assert users.delete(alice.id)
    loaded = users.get(alice.id, include_deleted=True)
    assert loaded is not None
    loaded.name = "Still deleted"
    users.save(loaded)
    stored = users.get(alice.id, include_deleted=True)
    assert stored is not None and stored.deleted_at is not None and stored.name == "Still deleted"

    back = users.save(User(id=alice.id, name="Back"))  # a new instance: deleted_at is None
    assert back.deleted_at is None and users.get(alice.id) is not None
    assert [r.operation for r in audit_rows("users")] == [
        "create",
        "soft_delete",
        "update",
        "update",
    ]


def test_update_partial(users: ModelAccessor[User]) -> None:
    alice = users.insert(User(name="Alice", email="a@x.io", age=3))
    updated = users.update(alice.id, actor="ops", age=4)
    assert updated is not None and (updated.age, updated.email) == (4, "a@x.io")
    row = audit_rows("users")[-1]
    assert (row.operation, row.actor) == ("update", "ops")
    assert row.before is not None and row.before["age"] == 3
    assert row.after is not None and row.after["age"] == 4


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"nope": 1}, id="unknown-field"),
        pytest.param({"id": 9}, id="primary-key"),
        pytest.param({"deleted_at": None}, id="deleted-at"),
        pytest.param({"age": 5, "nope": 1}, id="unknown-with-valid"),
    ],
)
def test_update_refuses_bad_fields(users: ModelAccessor[User], fields: dict[str, Any]) -> None:
    alice = users.insert(User(name="Alice", age=3))
    with pytest.raises(ValueError):
        users.update(alice.id, **fields)
    stored = users.get(alice.id)
    assert stored is not None and stored.age == 3
    assert len(audit_rows("users")) == 1


def test_update_missing_deleted_or_empty(users: ModelAccessor[User]) -> None:
    alice = users.insert(User(name="Alice"))
    same = users.update(alice.id)
    assert same is not None and same.name == "Alice"
    assert users.update(99999, name="x") is None
    users.delete(alice.id)
    assert users.update(alice.id, name="x") is None
    assert [r.operation for r in audit_rows("users")] == ["create", "soft_delete"]


def test_soft_delete_and_restore(users: ModelAccessor[User]) -> None:
    alice = users.insert(User(name="Alice"))
    assert users.delete(alice.id, actor="ops") is True
    assert users.get(alice.id) is None
    assert users.get(alice.id, include_deleted=True) is not None
    assert users.count() == 0 and users.count(include_deleted=True) == 1
    assert users.all() == [] and len(users.all(include_deleted=True)) == 1

    deleted_at = users.get(alice.id, include_deleted=True).deleted_at  # type: ignore[union-attr]
    assert users.delete(alice.id) is True  # already deleted: it stays so, nothing written
    assert users.delete_many([alice.id, alice.id, 123456]) == 1
    assert users.get(alice.id, include_deleted=True).deleted_at == deleted_at  # type: ignore[union-attr]
    assert [r.operation for r in audit_rows("users")] == ["create", "soft_delete"]

    assert users.restore(alice.id, actor="sup") is True
    assert users.get(alice.id) is not None
    assert users.restore(alice.id) is True  # not deleted: nothing written
    assert users.restore(123456) is False
    ops = [(r.operation, r.actor) for r in audit_rows("users")]
    assert ops == [("create", "internal"), ("soft_delete", "ops"), ("restore", "sup")]
    restore_row = audit_rows("users")[-1]
    assert restore_row.before is not None and restore_row.before["deleted_at"] is not None
    assert restore_row.after is not None and restore_row.after["deleted_at"] is None


def test_restore_runs_update_hooks(users: ModelAccessor[User]) -> None:
    seen: list[str] = []
    users.before_update()(lambda session, user: seen.append(f"before:{user.deleted_at}"))
    users.after_update()(lambda session, user: seen.append("after"))
    alice = users.insert(User(name="Alice"))
    users.delete(alice.id)
    users.restore(alice.id)
    assert seen == ["before:None", "after"]


def test_hard_delete(gadgets: ModelAccessor[Gadget]) -> None:
    g = gadgets.insert(Gadget(serial="S1"))
    assert gadgets.delete(g.id) is True
    assert gadgets.get(g.id, include_deleted=True) is None
    assert gadgets.delete(g.id) is False
    row = audit_rows("gadgets")[-1]
    assert row.operation == "delete" and row.after is None
    assert row.before is not None and row.before["serial"] == "S1"
    kept = gadgets.insert(Gadget(serial="S2"))
    assert gadgets.restore(kept.id) is False  # no deleted_at: nothing to restore
    assert gadgets.restore(g.id) is False


def test_batch_writes(users: ModelAccessor[User], gadgets: ModelAccessor[Gadget]) -> None:
    created = users.insert_many([User(name=f"u{i}") for i in range(10)], actor="batch")
    assert all(u.id is not None for u in created)
    ids = [u.id for u in created]
    assert users.delete_many([*ids[:4], ids[0], 999999], actor="batch") == 4
    assert users.delete_many(ids[:4]) == 4  # already deleted: counted, nothing written
    assert users.count() == 6
    ops = [r.operation for r in audit_rows("users")]
    assert ops.count("create") == 10 and ops.count("soft_delete") == 4

    made = gadgets.insert_many([Gadget(serial=f"S{i}") for i in range(5)])
    assert gadgets.delete_many([g.id for g in made]) == 5 and gadgets.count() == 0
    assert users.insert_many([]) == [] and users.delete_many([]) == 0


def test_string_keys(recipes: ModelAccessor[Recipe]) -> None:
    recipes.insert(Recipe(name="pick", body="v1"), actor="a")
    assert recipes.update("pick", body="v2") is not None
    assert recipes.delete("pick")
    assert recipes.restore("pick")
    recipes.save(Recipe(name="place", body="x"))
    assert {r.name for r in recipes.all()} == {"pick", "place"}
    records = [(r.record_id, r.operation) for r in audit_rows("recipes")]
    assert records == [
        ("pick", "create"),
        ("pick", "update"),
        ("pick", "soft_delete"),
        ("pick", "restore"),
        ("place", "create"),
    ]


def test_unique_violation_is_a_typed_conflict(gadgets: ModelAccessor[Gadget]) -> None:
    gadgets.insert(Gadget(serial="S1"))
    with pytest.raises(IntegrityConflictError) as info:
        gadgets.insert(Gadget(serial="S1"))
    assert "INSERT" not in str(info.value) and "S1" not in str(info.value)
    assert gadgets.count() == 1
    assert len(audit_rows("gadgets")) == 1


def test_foreign_keys_are_enforced(gadgets: ModelAccessor[Gadget]) -> None:
    with pytest.raises(IntegrityConflictError):
        gadgets.insert(Gadget(serial="S1", owner_id=424242))
    assert gadgets.count() == 0


def test_auditing_can_be_disabled() -> None:
    quiet = ModelAccessor(User, "quiet_users", enable_auditing=False)
    u = quiet.insert(User(name="x"))
    quiet.update(u.id, name="y")
    quiet.delete(u.id)
    assert audit_rows() == []


def test_audit_record_id_accepts_integers(users: ModelAccessor[User]) -> None:
    alice = users.insert(User(name="Alice"))
    with database.read_session() as session:
        rows = session.exec(select(AuditLog).where(AuditLog.record_id == alice.id)).all()
    assert len(rows) == 1


def test_uuid_keys() -> None:
    from datetime import UTC, date, datetime
    from decimal import Decimal

    from support.models import Sample

    samples = ModelAccessor(Sample, "samples")
    sample = samples.insert(
        Sample(
            taken_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
            day=date(2026, 1, 2),
            weight=Decimal("1.5"),
        )
    )
    assert isinstance(sample.id, uuid.UUID)
    assert samples.get(sample.id) is not None
    assert samples.get(str(sample.id)) is not None
    assert samples.update(str(sample.id), ratio=0.75) is not None
    assert samples.delete(sample.id)
    assert {r.record_id for r in audit_rows("samples")} == {str(sample.id)}

"""vention-storage 0.20's documented Python API (its README and docstrings), run unchanged.

Each test copies a documented example; only the imports differ (the README's ``User`` and
``Product`` are ``support.models``' models of the same fields, its device and rule accessors
two other test models), and assertions say what the documentation promises. ConnectRPC
(``storage.vention_communication``) is not part of this library.
"""

from __future__ import annotations

import io
import threading
import zipfile
from datetime import datetime

import pytest
from sqlalchemy import text
from sqlmodel import Session, select

from storage import changes, database, utils
from storage.accessor import ModelAccessor
from storage.auditor import AuditLog
from storage.bootstrap import bootstrap
from storage.changes import Change, on_database_restored
from storage.crud_service import (
    ConflictError,
    CrudError,
    CrudService,
    Filter,
    FilterOperation,
    NotFoundError,
    UnsupportedError,
    ValidationError,
)
from storage.database_service import DatabaseService
from storage.migrations import (
    MigrationError,
    MigrationExecutionError,
    UnsupportedMigrationError,
    apply_sqlmodel_migrations,
    plan_sqlmodel_migrations,
)
from support.models import Gadget, Product, Recipe, User


def test_quickstart_bootstrap_with_auto_migrate(database_url: str) -> None:
    # Initialize database
    bootstrap(
        database_url=database_url,
        auto_migrate=True,
    )

    # Create accessor
    user_accessor = ModelAccessor(User, "users")
    user = user_accessor.insert(User(name="Alice", email="alice@example.com"), actor="admin")
    assert user_accessor.get(user.id) is not None
    assert plan_sqlmodel_migrations().is_empty


def test_auto_migrate_rejects_a_type_change(database_url: str) -> None:
    """Troubleshooting: "Auto-migrate rejects my schema change"."""
    database.set_database_url(database_url)
    engine = database.get_engine()
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE IF EXISTS product"))
        connection.execute(text("CREATE TABLE product (id INTEGER PRIMARY KEY, name INTEGER)"))
    try:
        with pytest.raises(UnsupportedMigrationError) as refused:
            bootstrap(auto_migrate=True)
        assert isinstance(refused.value, MigrationError)
        assert isinstance(refused.value, RuntimeError) and "product.name" in str(refused.value)
        assert issubclass(MigrationExecutionError, MigrationError)
        with pytest.raises(MigrationError):
            apply_sqlmodel_migrations()
    finally:
        with engine.begin() as connection:
            connection.execute(text("DROP TABLE product"))  # the next test makes it again


@pytest.mark.usefixtures("backend")
def test_using_the_model_accessors() -> None:
    user_accessor = ModelAccessor(User, "users")
    for name, email in (("Bob", "bob@example.com"), ("Carol Smith", "carol@gmail.com")):
        user_accessor.insert(User(name=name, email=email))

    # Create
    user = user_accessor.insert(User(name="Alice", email="alice@example.com"), actor="admin")

    # Read
    user = user_accessor.get(user.id)
    assert user is not None

    # Update some fields (returns None if there's no such user)
    user_accessor.update(user.id, actor="admin", name="Alice Smith")
    assert user_accessor.update(424242, actor="admin", name="nobody") is None

    # Save a whole object (inserts it if it doesn't exist)
    user.name = "Alice Smith"
    user_accessor.save(user, actor="admin")

    # Delete
    user_accessor.delete(user.id, actor="admin")
    assert user_accessor.get(user.id) is None

    # Restore (for soft-deleted models)
    user_accessor.restore(user.id, actor="admin")
    assert user_accessor.get(user.id) is not None

    # Find users by exact match
    users = user_accessor.find(user_accessor.where.email == "alice@example.com")
    assert [u.name for u in users] == ["Alice Smith"]

    # Multiple conditions (AND logic)
    users = user_accessor.find(
        user_accessor.where.name == "Alice", user_accessor.where.email == "alice@example.com"
    )
    assert users == []

    # Comparison operators
    recent_users = user_accessor.find(user_accessor.where.id > 10)
    first_users = user_accessor.find(user_accessor.where.id <= 5)
    assert recent_users == [] and len(first_users) == 3

    # String operations
    smiths = user_accessor.find(user_accessor.where.name.contains("Smith"))
    gmail_users = user_accessor.find(user_accessor.where.email.endswith("@gmail.com"))
    search = user_accessor.find(user_accessor.where.name.ilike("%alice%"))  # case-insensitive
    assert sorted(u.name for u in smiths) == ["Alice Smith", "Carol Smith"]
    assert [u.name for u in gmail_users] == ["Carol Smith"]
    assert [u.name for u in search] == ["Alice Smith"]

    # Collection check
    selected_users = user_accessor.find(
        user_accessor.where.email.in_(["alice@example.com", "bob@example.com"])
    )
    assert sorted(u.name for u in selected_users) == ["Alice Smith", "Bob"]

    # Null checks
    active_users = user_accessor.find(user_accessor.where.deleted_at.is_(None))  # type: ignore[union-attr]
    deleted_users = user_accessor.find(user_accessor.where.deleted_at.isnot(None))  # type: ignore[union-attr]
    assert len(active_users) == 3 and deleted_users == []

    # With pagination and sorting
    page = user_accessor.find(
        user_accessor.where.email.contains("@example.com"),
        limit=10,
        offset=1,
        order_by="id",
        order_desc=True,
    )
    assert [u.name for u in page] == ["Bob"]

    # Include soft-deleted records
    user_accessor.delete(user.id)
    all_users = user_accessor.find(
        user_accessor.where.email.contains("@example.com"), include_deleted=True
    )
    assert len(all_users) == 2
    with pytest.raises(ValueError):
        user_accessor.all(order_by="no_such_field")


@pytest.mark.usefixtures("backend")
def test_lifecycle_hooks(capsys: pytest.CaptureFixture[str]) -> None:
    user_accessor = ModelAccessor(User, "users")

    @user_accessor.before_insert()
    def validate_email(session: Session, instance: User) -> None:
        if "@" not in instance.email:
            raise ValueError("Invalid email")

    @user_accessor.after_insert()
    def log_creation(session: Session, instance: User) -> None:
        print(f"User created: {instance.name}")

    user_accessor.insert(User(name="Ada", email="ada@example.com"))
    with pytest.raises(ValueError):
        user_accessor.insert(User(name="Bob", email="nope"))
    assert capsys.readouterr().out == "User created: Ada\n"
    assert [u.name for u in user_accessor.all()] == ["Ada"]


@pytest.mark.usefixtures("backend")
def test_react_to_committed_changes() -> None:
    user_accessor = ModelAccessor(User, "users")
    user_cache_is_stale = threading.Event()
    heard: list[list[Change]] = []

    @user_accessor.after_commit()
    def reload_users(changes: list[Change]) -> None:
        heard.append(changes)
        user_cache_is_stale.set()

    with database.transaction():
        alice = user_accessor.insert(User(name="Alice", email="a@example.com"))
        assert not user_cache_is_stale.is_set()  # not before the commit
    assert user_cache_is_stale.is_set()
    (created,) = heard[-1]
    assert (created.table, created.operation, created.before) == ("user", "create", None)

    # "It is not called if the transaction only read, or if it rolled back."
    user_accessor.all()
    with pytest.raises(RuntimeError), database.transaction():
        user_accessor.update(alice.id, name="never")
        raise RuntimeError("roll back")
    assert len(heard) == 1

    # "A savepoint is only reported once the outer transaction commits, and not at all if it
    # rolled back."
    with database.transaction() as session:
        with session.begin_nested():
            user_accessor.update(alice.id, name="Alice Smith")
        savepoint = session.begin_nested()
        user_accessor.update(alice.id, name="rolled back")
        savepoint.rollback()
    assert [(c.operation, c.values["name"], c.before["name"]) for c in heard[-1]] == [  # type: ignore[index]
        ("update", "Alice Smith", "Alice")
    ]

    # "Saving a row with identical values is not a change."
    user_accessor.save(user_accessor.get(alice.id))  # type: ignore[arg-type]
    assert len(heard) == 2

    # "A soft delete is reported as an "update" that sets deleted_at, and restoring a
    # soft-deleted row as an "update" that clears it."
    user_accessor.delete(alice.id)
    user_accessor.restore(alice.id)
    (deleted,), (restored,) = heard[-2:]
    assert deleted.operation == "update" and isinstance(deleted.values["deleted_at"], datetime)
    assert restored.operation == "update" and restored.values["deleted_at"] is None


@pytest.mark.usefixtures("backend")
def test_one_listener_for_several_tables() -> None:
    device_accessor = ModelAccessor(Gadget, "devices")
    rule_accessor = ModelAccessor(Recipe, "rules")
    rules_are_stale = threading.Event()
    calls: list[list[str]] = []

    @device_accessor.after_commit()
    @rule_accessor.after_commit()
    def reload_rules(changes: list[Change]) -> None:
        calls.append([change.table for change in changes])
        rules_are_stale.set()

    with database.transaction():
        device_accessor.insert(Gadget(serial="D1"))
        rule_accessor.insert(Recipe(name="R1"))
    assert rules_are_stale.is_set() and calls == [["gadget", "recipe"]]


@pytest.mark.usefixtures("backend")
def test_listeners_see_every_orm_write_and_may_use_accessors() -> None:
    """ "Changes are recorded from SQLAlchemy itself, so every ORM write to a watched table
    counts" and "a listener can read and write through an accessor"."""
    user_accessor = ModelAccessor(User, "users")
    gadgets = ModelAccessor(Gadget, "gadgets")
    names: list[str] = []

    @user_accessor.after_commit()
    def mirror(changes: list[Change]) -> None:
        for change in changes:
            names.append(change.values["name"])
            if change.operation == "create":
                gadgets.insert(Gadget(serial=f"for-{change.values['id']}"))

    with database.transaction() as session:
        session.add(User(name="plain session write"))
    with Session(database.get_engine()) as session:
        session.add(User(name="own session"))
        session.commit()
    assert names == ["plain session write", "own session"]
    assert len(gadgets.all()) == 2


@pytest.mark.usefixtures("backend")
def test_add_commit_listener_and_held_until_exit() -> None:
    """The docstrings of ``changes.add_commit_listener`` and ``changes.held_until_exit``."""
    batches: list[list[str]] = []

    def listener(changes: list[Change]) -> None:
        batches.append([change.operation for change in changes])

    changes.add_commit_listener("product", listener)
    try:
        with Session(database.get_engine()) as session, changes.held_until_exit(session):
            session.add(Product(name="Arm", sku="A1"))
            session.commit()
            assert batches == []  # held until the block has exited
        assert batches == [["create"]]
    finally:
        changes.remove_commit_listener("product", listener)


@pytest.mark.usefixtures("backend")
def test_database_restored_listeners_and_database_service() -> None:
    user_accessor = ModelAccessor(User, "users")
    user_cache_is_stale = threading.Event()

    @on_database_restored
    def reload_everything() -> None:
        user_cache_is_stale.set()

    try:
        user_accessor.insert(User(name="in the backup"), actor="admin")
        service = DatabaseService(audit_default_limit=100, audit_max_limit=1000)
        assert service.health() == {"status": "ok"}
        backup = service.backup_sqlite()
        assert backup["filename"].startswith("backup-") and backup["filename"].endswith(".sqlite")
        user_accessor.insert(User(name="after the backup"))

        checked = service.restore_sqlite(backup["data"], integrity_check=True, dry_run=True)
        assert checked == {"status": "ok", "restored": False, "bytes": len(backup["data"])}
        assert not user_cache_is_stale.is_set() and len(user_accessor.all()) == 2

        result = service.restore_sqlite(backup["data"], filename="backup.sqlite")
        assert result["restored"] is True and user_cache_is_stale.is_set()
        assert [u.name for u in user_accessor.all()] == ["in the backup"]

        user_cache_is_stale.clear()
        changes.notify_database_restored()  # "If you replace the database file some other way"
        assert user_cache_is_stale.is_set()
    finally:
        changes.off_database_restored(reload_everything)


@pytest.mark.usefixtures("backend")
def test_database_service_audit_export_and_errors() -> None:
    user_accessor = ModelAccessor(User, "users")
    for name in ("a", "b", "c"):
        user_accessor.insert(User(name=name), actor="operator" if name != "c" else "admin")
    service = DatabaseService(audit_default_limit=2, audit_max_limit=5)

    newest = service.read_audit()
    assert [log.after["name"] for log in newest] == ["c", "b"]  # type: ignore[index]
    assert len(service.read_audit(actor="operator", limit=100)) == 2
    assert len(service.read_audit(component="users", operation="create", limit=5)) == 3
    assert service.read_audit(since=datetime(2999, 1, 1)) == []

    archive = zipfile.ZipFile(io.BytesIO(service.export_zip()))
    assert {"user.csv", "auditlog.csv"} <= set(archive.namelist())
    assert service.schema_diagram_svg().lstrip().startswith(b"<?xml")

    from storage import database_service

    with pytest.raises(database_service.ValidationError) as invalid:
        service.restore_sqlite(b"not a SQLite file")
    assert invalid.value.code == "VALIDATION_ERROR"
    assert isinstance(invalid.value, database_service.DatabaseError)


@pytest.mark.usefixtures("backend")
def test_query_audit_logs() -> None:
    ModelAccessor(User, "users").insert(User(name="Alice"), actor="admin")
    with database.transaction() as session:
        logs = session.exec(select(AuditLog).where(AuditLog.component == "users")).all()
    assert [(log.operation, log.actor) for log in logs] == [("create", "admin")]


@pytest.mark.usefixtures("backend")
def test_enable_auditing_false() -> None:
    quiet = ModelAccessor(Gadget, "gadgets", enable_auditing=False)
    quiet.insert(Gadget(serial="S1"))
    with database.transaction() as session:
        assert session.exec(select(AuditLog)).all() == []


@pytest.mark.usefixtures("backend")
def test_crud_service_find_records_docstring_example() -> None:
    crud = CrudService(ModelAccessor(User, "users"))
    for name, age in (("alice", 30), ("Alicia", 12), ("bob", 40)):
        crud.create_record({"name": name, "age": age}, actor="admin")

    filters: list[Filter] = [
        {"field": "name", "operation": FilterOperation.LIKE, "value": "alice%"},
        {"field": "age", "operation": FilterOperation.GREATER_THAN_OR_EQUALS, "value": 18},
    ]
    results = crud.find_records(filters)
    assert [user.name for user in results] == ["alice"]


@pytest.mark.parametrize(
    ("operation", "value", "expected"),
    [
        pytest.param("eq", "bob", ["bob"], id="eq"),
        pytest.param("ne", "bob", ["ann", "cy", "dee"], id="ne"),
        pytest.param("gt", 2, ["cy"], id="gt"),
        pytest.param("gte", 2, ["bob", "cy"], id="gte"),
        pytest.param("lt", 2, ["ann"], id="lt"),
        pytest.param("lte", 2, ["ann", "bob"], id="lte"),
        pytest.param("in", ["ann", "cy"], ["ann", "cy"], id="in"),
        pytest.param("not_in", ["ann", "cy"], ["bob", "dee"], id="not_in"),
        pytest.param("contains", "o", ["bob"], id="contains"),
        pytest.param("startswith", "c", ["cy"], id="startswith"),
        pytest.param("endswith", "n", ["ann"], id="endswith"),
        pytest.param("like", "A%", ["ann"], id="like"),
        pytest.param("is_null", None, ["dee"], id="is_null"),
        pytest.param("is_not_null", None, ["ann", "bob", "cy"], id="is_not_null"),
    ],
)
@pytest.mark.usefixtures("backend")
def test_filter_operations_reference(operation: str, value: object, expected: list[str]) -> None:
    crud = CrudService(ModelAccessor(User, "users"))
    for name, age in (("ann", 1), ("bob", 2), ("cy", 3), ("dee", None)):
        crud.create_record({"name": name, "age": age}, actor="t")
    field = "age" if operation in ("gt", "gte", "lt", "lte", "is_null", "is_not_null") else "name"
    found = crud.find_records(
        [{"field": field, "operation": operation, "value": value}], order_by="name"
    )
    assert [user.name for user in found] == expected


@pytest.mark.usefixtures("backend")
def test_crud_service_operations_and_errors() -> None:
    crud = CrudService(ModelAccessor(User, "users"), max_records=2)
    alice = crud.create_record({"name": "Alice", "email": "a@x.io"}, actor="admin")
    assert crud.get_record(alice.id).name == "Alice"

    updated = crud.update_record(alice.id, {"name": "Alice Smith", "id": 999}, actor="admin")
    assert (updated.id, updated.name, updated.email) == (alice.id, "Alice Smith", "a@x.io")
    created = crud.update_record(50, {"name": "Bob"}, actor="admin")  # PUT creates
    assert created.id == 50

    with pytest.raises(ConflictError) as full:
        crud.create_record({"name": "Carol"}, actor="admin")
    assert full.value.code == "CONFLICT" and isinstance(full.value, CrudError)

    crud.delete_record(alice.id, actor="admin")
    with pytest.raises(NotFoundError) as missing:
        crud.get_record(alice.id)
    assert missing.value.code == "NOT_FOUND"
    assert crud.get_record(alice.id, include_deleted=True).deleted_at is not None
    assert crud.restore_record(alice.id, actor="admin").deleted_at is None
    assert crud.restore_record(alice.id, actor="admin").name == "Alice Smith"  # not deleted
    with pytest.raises(NotFoundError):
        crud.delete_record(424242, actor="admin")

    listed = crud.list_records(order_by="name", order_desc=True, limit=1)
    assert [user.name for user in listed] == ["Bob"]
    for bad in (
        lambda: crud.list_records(order_by="nope"),
        lambda: crud.find_records([{"field": "nope", "operation": "eq", "value": 1}]),
        lambda: crud.find_records([{"field": "name", "operation": "regex", "value": "x"}]),
    ):
        with pytest.raises(ValidationError) as invalid:
            bad()
        assert invalid.value.code == "VALIDATION_ERROR"

    gadgets = CrudService(ModelAccessor(Gadget, "gadgets"))
    gadget = gadgets.create_record({"serial": "S1"}, actor="admin")
    with pytest.raises(UnsupportedError) as unsupported:
        gadgets.restore_record(gadget.id, actor="admin")
    assert unsupported.value.code == "UNSUPPORTED_OPERATION"
    with pytest.raises(ValidationError) as duplicate:  # the database refuses it
        gadgets.create_record({"serial": "S1"}, actor="admin")
    assert "INSERT" not in str(duplicate.value)


def test_utils_parsers() -> None:
    assert utils.parse_audit_operation("soft_delete") == "soft_delete"
    assert utils.parse_audit_operation(None) is None
    with pytest.raises(ValueError):
        utils.parse_audit_operation("explode")
    parsed = utils.parse_audit_datetime("2023-01-01T00:00:00Z")
    assert parsed is not None and parsed.utcoffset() is not None and parsed.year == 2023
    assert utils.parse_audit_datetime(None) is None
    assert set(utils.ChangeOperation.__args__) == {"create", "update", "delete"}  # type: ignore[attr-defined]

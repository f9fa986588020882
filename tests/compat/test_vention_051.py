"""vention-storage 0.5.1's documented Python API (its README, seed 002), run unchanged.

Each test copies a README example; only the imports differ (the README's ``User`` is
``support.models.User``, with the same fields, and its ``MyModel`` a model of the test tables),
and assertions say what the README promises. The HTTP examples run in tests/e2e/test_seed_readme.py.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import pytest
from fastapi import Depends, FastAPI
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlmodel import Session, SQLModel, select

from storage import database, io_helpers, utils
from storage.accessor import ModelAccessor
from storage.auditor import AuditLog, audit_operation
from storage.bootstrap import bootstrap
from storage.hooks import HookRegistry, ModelRecord
from storage.router_database import build_db_router
from storage.router_model import DEFAULT_MAX_RECORDS_PER_MODEL, build_crud_router, get_actor
from support.models import Gadget, Product, User
from support.testclient import TestClient

ADMIN = {"X-User": "admin"}


def test_basic_usage_and_bootstrap(database_url: str) -> None:
    # 2. Quick setup with bootstrap
    app = FastAPI()
    user_accessor = ModelAccessor(User, "users")
    product_accessor = ModelAccessor(Product, "products")

    bootstrap(
        app,
        accessors=[user_accessor, product_accessor],
        database_url=database_url,
        create_tables=True,
        max_records_per_model=100,
        enable_db_router=True,
    )

    # "Now you have full CRUD API at /users with audit trails, backup/restore, and CSV export!"
    client = TestClient(app)
    created = client.post("/users/", json={"name": "Alice", "email": "a@x.io"}, headers=ADMIN)
    assert created.is_success
    assert client.post("/products/", json={"name": "Arm", "sku": "A1"}, headers=ADMIN).is_success
    assert [u["name"] for u in client.get("/users/").json()] == ["Alice"]
    assert client.get("/db/health").json()["status"] == "ok"
    assert [row["operation"] for row in client.get("/db/audit").json()] == ["create", "create"]
    export = zipfile.ZipFile(io.BytesIO(client.get("/db/export.zip").content))
    assert {"user.csv", "product.csv", "auditlog.csv"} <= set(export.namelist())
    assert client.get("/db/backup.sqlite").content.startswith(b"SQLite format 3\x00")


def test_database_management(database_url: str) -> None:
    user_accessor = ModelAccessor(User, "users")

    # Configure database URL (must be called before first use)
    database.set_database_url(database_url)

    # Get the engine
    engine = database.get_engine()
    assert engine is database.get_engine()
    SQLModel.metadata.create_all(engine)  # what bootstrap() did in the README's app
    with pytest.raises(RuntimeError):  # too late now
        database.set_database_url("sqlite:///./elsewhere.db")

    # Use transactions for atomic operations
    with database.transaction() as session:
        # All operations in this block are atomic
        user_accessor.insert(User(name="Alice"), actor="system")
        user_accessor.insert(User(name="Bob"), actor="system")
        assert database.CURRENT_SESSION.get() is session
    assert [u.name for u in user_accessor.all()] == ["Alice", "Bob"]

    # If any operation fails, both are rolled back
    gadgets = ModelAccessor(Gadget, "gadgets")
    gadgets.insert(Gadget(serial="S1"))
    with pytest.raises(IntegrityError), database.transaction():
        user_accessor.insert(User(name="Carol"), actor="system")
        gadgets.insert(Gadget(serial="S1"), actor="system")
    assert [u.name for u in user_accessor.all()] == ["Alice", "Bob"]

    # Session context manager
    with database.use_session() as session:
        assert session.exec(select(User).where(User.name == "Bob")).one().name == "Bob"


@pytest.mark.usefixtures("backend")
def test_model_accessors() -> None:
    # Create accessor for your model
    accessor = ModelAccessor(User, "component_name")

    # Basic CRUD operations
    obj = accessor.insert(User(name="Ada", email="ada@x.io"), actor="user")
    obj = accessor.get(obj.id)
    assert obj is not None and obj.name == "Ada"
    obj.name = "Ada L."
    updated_obj = obj
    obj = accessor.save(updated_obj, actor="user")
    assert accessor.get(obj.id).name == "Ada L."  # type: ignore[union-attr]
    success = accessor.delete(obj.id, actor="user")
    assert success is True and accessor.get(obj.id) is None
    assert accessor.get(obj.id, include_deleted=True) is not None

    # Batch operations
    objects = accessor.insert_many([User(name="B"), User(name="C")], actor="user")
    assert [o.id for o in objects] == [o.id for o in accessor.all()]
    deleted_count = accessor.delete_many([objects[0].id, objects[1].id], actor="user")
    assert deleted_count == 2 and accessor.all() == []
    assert len(accessor.all(include_deleted=True)) == 3

    # Soft delete operations
    success = accessor.restore(obj.id, actor="user")  # Only for models with deleted_at
    assert success is True and accessor.get(obj.id) is not None

    # ... a model without deleted_at has nothing to restore
    gadgets = ModelAccessor(Gadget, "gadgets")
    gadget = gadgets.insert(Gadget(serial="G1"))
    assert gadgets.restore(gadget.id, actor="user") is False
    assert (
        gadgets.delete(gadget.id) is True and gadgets.get(gadget.id, include_deleted=True) is None
    )
    assert gadgets.delete(gadget.id) is False and gadgets.restore(gadget.id) is False


@pytest.mark.usefixtures("backend")
def test_lifecycle_hooks(capsys: pytest.CaptureFixture[str]) -> None:
    accessor = ModelAccessor(User, "users")

    @accessor.before_insert()
    def validate_email(session: Session, instance: User) -> None:
        """Enforce schema-level validation (safe here)."""
        if not instance.email or "@" not in instance.email:
            raise ValueError("Invalid email")

    @accessor.after_insert()
    def log_creation(session: Session, instance: User) -> None:
        """Lightweight side-effect: write to a log or metrics system."""
        print(f"Row created in {session.bind.url}: {instance}")  # type: ignore[union-attr]

    accessor.insert(User(name="Ada", email="ada@x.io"))
    assert "Row created in" in capsys.readouterr().out

    # Hooks run in the same transaction as the operation
    # If a hook fails, the entire operation is rolled back
    with pytest.raises(ValueError, match="Invalid email"):
        accessor.insert(User(name="Bob", email="nope"))
    assert [u.name for u in accessor.all()] == ["Ada"]
    with database.transaction() as session:
        assert len(session.exec(select(AuditLog)).all()) == 1


@pytest.mark.usefixtures("backend")
def test_audit_trails() -> None:
    user_accessor = ModelAccessor(User, "users")

    # Audit logs are automatically created for all operations
    with database.transaction() as session:
        # This operation will be audited
        user = user_accessor.insert(User(name="Alice"), actor="admin")

        # Query audit logs
        logs = session.exec(select(AuditLog).where(AuditLog.component == "users")).all()
        for log in logs:
            print(f"{log.timestamp}: {log.operation} by {log.actor}")
            print(f"  Before: {log.before}")
            print(f"  After: {log.after}")
    assert [(log.operation, log.actor, log.before) for log in logs] == [("create", "admin", None)]
    assert logs[0].after is not None and logs[0].after["name"] == "Alice"

    # Querying audit logs: by component, record, operation type and actor
    user_accessor.delete(user.id, actor="operator")
    user_accessor.restore(user.id, actor="admin")
    with database.transaction() as session:
        by_record = session.exec(select(AuditLog).where(AuditLog.record_id == user.id)).all()
        creates = session.exec(select(AuditLog).where(AuditLog.operation == "create")).all()
        by_actor = session.exec(select(AuditLog).where(AuditLog.actor == "admin")).all()
    assert [log.operation for log in by_record] == ["create", "soft_delete", "restore"]
    assert len(creates) == 1 and [log.operation for log in by_actor] == ["create", "restore"]


@pytest.mark.usefixtures("backend")
def test_audit_operation_in_the_same_transaction() -> None:
    with database.transaction() as session:
        audit_operation(
            session=session,
            component="robots",
            operation="update",
            record_id=7,
            actor="integration",
            before={"speed": 1},
            after={"speed": 2},
        )
    with database.transaction() as session:
        (log,) = session.exec(select(AuditLog).where(AuditLog.record_id == 7)).all()
    assert (log.component, log.operation, log.before, log.after) == (
        "robots",
        "update",
        {"speed": 1},
        {"speed": 2},
    )


@pytest.mark.usefixtures("backend")
def test_sqlalchemy_errors_are_still_caught() -> None:
    """Code written for vention-storage catches SQLAlchemy's exceptions around writes."""
    gadgets = ModelAccessor(Gadget, "gadgets")
    gadgets.insert(Gadget(serial="S1"))
    with pytest.raises(IntegrityError) as caught:
        gadgets.insert(Gadget(serial="S1"))
    assert "INSERT" not in str(caught.value) and caught.value.orig is not None
    try:
        with database.transaction() as session:
            session.add(Gadget(serial="S1"))
            session.flush()
    except SQLAlchemyError as exc:
        assert isinstance(exc, IntegrityError)
    else:
        pytest.fail("the duplicate was accepted")
    assert gadgets.count() == 1


def test_api_reference_signatures() -> None:
    accessor = ModelAccessor(User, "users")
    router = build_crud_router(accessor, max_records=100)
    paths = {route.path for route in router.routes}  # type: ignore[attr-defined]
    assert {"/users/", "/users/{id}", "/users/{id}/restore"} <= paths
    db_paths = {
        route.path  # type: ignore[attr-defined]
        for route in build_db_router(audit_default_limit=100, audit_max_limit=1000).routes
    }
    assert {
        "/db/health",
        "/db/audit",
        "/db/diagram.svg",
        "/db/export.zip",
        "/db/backup.sqlite",
        "/db/restore",
    } <= db_paths
    assert DEFAULT_MAX_RECORDS_PER_MODEL == 100


def test_get_actor_in_an_apps_own_route() -> None:
    app = FastAPI()

    @app.post("/calibrate")
    def calibrate(actor: str = Depends(get_actor)) -> dict[str, str]:
        return {"actor": actor}

    client = TestClient(app)
    assert client.post("/calibrate", headers={"X-User": "Operator"}).json() == {"actor": "Operator"}
    assert client.post("/calibrate").status_code == 400


def test_hooks_and_utils_names() -> None:
    registry: HookRegistry[User] = HookRegistry()
    seen: list[str] = []
    registry.decorator("before_insert")(lambda session, instance: seen.append(instance.name))
    registry.emit("before_insert", session=None, instance=User(name="x"))  # type: ignore[arg-type]
    assert seen == ["x"] and ModelRecord.__bound__ is not None

    assert utils.utcnow().tzinfo is not None
    assert utils.to_primitive(utils.utcnow().date()) == utils.utcnow().date().isoformat()
    assert utils.to_primitive(5) == 5
    assert "soft_delete" in utils.Operation.__args__  # type: ignore[attr-defined]


@pytest.mark.usefixtures("backend")
def test_io_helpers_export_backup_and_restore(tmp_path: Path) -> None:
    users = ModelAccessor(User, "users")
    users.insert(User(name="kept", email="a, b"))

    tables = io_helpers.discover_user_tables()
    assert {"user", "auditlog"} <= {table.name for table in tables}
    archive = zipfile.ZipFile(io.BytesIO(io_helpers.build_export_zip_bytes(tables)))
    assert archive.read("user.csv").decode().splitlines()[1].startswith('1,kept,"a, b"')
    with database.transaction() as session:
        csv_text = io_helpers.write_table_csv_buffer(session, User.__table__).getvalue()  # type: ignore[attr-defined]
    assert csv_text.splitlines()[0].startswith("id,name,email")

    data = io_helpers.build_backup_bytes(io_helpers.db_file_path())
    saved, size = _saved_upload(data, tmp_path)
    assert size == len(data)
    io_helpers.validate_sqlite_file(saved, run_integrity_check=True)
    broken = tmp_path / "broken.sqlite"
    broken.write_bytes(b"not a database" * 10)
    with pytest.raises(ValueError):
        io_helpers.validate_sqlite_file(broken)

    users.insert(User(name="after the backup"))
    io_helpers.atomic_replace_db(saved, Path(io_helpers.db_file_path()))
    assert [u.name for u in users.all()] == ["kept"]
    io_helpers.safe_unlink(saved)
    io_helpers.safe_unlink(tmp_path / "never-there")


def _saved_upload(data: bytes, folder: Path) -> tuple[Path, int]:
    class Upload:  # what FastAPI hands a route: an object with a binary .file
        file: Any = io.BytesIO(data)

    return io_helpers.save_upload_to_temp(Upload(), folder)  # type: ignore[arg-type]


@pytest.mark.usefixtures("backend")
def test_a_hook_finds_the_database_url_in_a_capped_write() -> None:
    """docs/compatibility.md: ``session.get_bind().engine.url`` works in every write, a write
    that the row cap guards on MySQL/MariaDB included."""
    accessor = ModelAccessor(User, "users")
    urls: list[str] = []

    @accessor.after_insert()
    def remember_url(session: Session, instance: User) -> None:
        urls.append(str(session.get_bind().engine.url))

    app = FastAPI()
    app.include_router(build_crud_router(accessor, max_records=5))
    created = TestClient(app).post(
        "/users/", json={"name": "Ada", "email": "ada@x.io"}, headers={"X-User": "op"}
    )
    assert created.status_code == 201, created.text
    assert urls == [str(database.get_engine().url)]

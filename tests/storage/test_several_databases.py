"""Two databases in one process: each :class:`Database` object keeps its rows, its audit log
and its transactions, whatever the default database is.

``a`` is a SQLite file, ``b`` a database on SQLite, PostgreSQL or MariaDB; the default
database (the ``sqlite_db`` fixture) must stay untouched by all of it.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlmodel import SQLModel

from storage import backup, database, export, importer, restore
from storage._verification import verify_chain
from storage.accessor import ModelAccessor
from storage.auditor import AuditLog
from storage.bootstrap import bootstrap, prepare_database
from storage.database import Database
from storage.errors import ConfigurationError
from support.backends import fresh_database
from support.docs import python_blocks, run_example
from support.models import User
from support.servers import ROOT
from support.testclient import TestClient

pytestmark = pytest.mark.usefixtures("sqlite_db")


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def databases(request: pytest.FixtureRequest) -> Iterator[tuple[Database, Database]]:
    """``a`` (SQLite) and ``b`` (each backend in turn), prepared, disposed afterwards."""
    with fresh_database("sqlite") as url_a, fresh_database(request.param) as url_b:
        a, b = Database(url_a), Database(url_b)
        for db in (a, b):
            prepare_database(database=db)
        yield a, b
        a.dispose()
        b.dispose()


def names(db: Database) -> list[str]:
    with db.read_session() as session:
        return sorted(session.scalars(select(User.name)).all())


def audit_count(db: Database) -> int:
    with db.read_session() as session:
        return session.scalar(select(func.count()).select_from(AuditLog)) or 0


def test_accessors_write_their_own_database(databases: tuple[Database, Database]) -> None:
    a, b = databases
    users_a = ModelAccessor(User, "users", database=a)
    users_b = ModelAccessor(User, "users", database=b)
    users_a.insert(User(name="Ada"), actor="op")
    users_b.insert_many([User(name="Bo"), User(name="Cy")], actor="op")
    users_b.update(users_b.all()[0].id, actor="op", name="Bob")

    assert names(a) == ["Ada"]
    assert names(b) == ["Bob", "Cy"]
    assert (audit_count(a), audit_count(b)) == (1, 3)
    assert names(database.get_database()) == []  # the default database saw nothing
    assert verify_chain(database=a).ok and verify_chain(database=b).ok
    assert users_b.database is b and users_b.bound_database is b


def test_transactions_of_two_databases_are_separate(databases: tuple[Database, Database]) -> None:
    a, b = databases
    users_a = ModelAccessor(User, "users", database=a)
    users_b = ModelAccessor(User, "users", database=b)
    with pytest.raises(RuntimeError), a.transaction() as session:
        users_a.insert(User(name="joins a"), actor="op")  # joins a's transaction
        assert a.current_session() is session and b.current_session() is None
        users_b.insert(User(name="own b"), actor="op")  # b's own transaction, committed
        raise RuntimeError("roll a back")

    assert names(a) == []
    assert names(b) == ["own b"]
    assert (audit_count(a), audit_count(b)) == (0, 1)


def test_an_accessor_belongs_to_one_database(databases: tuple[Database, Database]) -> None:
    a, b = databases
    users = ModelAccessor(User, "users")
    assert users.bound_database is None and users.database is database.get_database()
    users.bind(a)
    users.bind(a)  # the same one again is fine
    with pytest.raises(ConfigurationError, match="cannot also use"):
        users.bind(b)
    with pytest.raises(ConfigurationError, match="cannot also use"):
        bootstrap(FastAPI(), accessors=[users], database=b)


def test_an_app_serves_the_database_it_was_given(databases: tuple[Database, Database]) -> None:
    a, b = databases
    app = FastAPI()
    bootstrap(app, accessors=[ModelAccessor(User, "users")], database=b)
    with TestClient(app) as client:
        created = client.post("/users/", json={"name": "Dee"}, headers={"X-User": "op"})
        assert created.status_code == 201, created.text
        assert client.get("/users/").json()[0]["name"] == "Dee"
        assert client.get("/db/health").json()["backend"] == _backend(b)
        audit = client.get("/db/audit").json()
        assert [(row["component"], row["actor"]) for row in audit] == [("users", "op")]
        assert client.get("/db/audit/verify").json()["ok"] is True
        stream = client.get("/db/changes", params={"after": 0, "follow": "false"})
        assert '"Dee"' in stream.text
        exported = client.get("/db/export.zip").content
        backed_up = client.get("/db/backup.sqlite").content
    assert names(b) == ["Dee"]
    assert names(a) == [] and names(database.get_database()) == []
    with zipfile.ZipFile(io.BytesIO(exported)) as archive:
        assert "Dee" in archive.read("user.csv").decode()
    assert backed_up.startswith(b"SQLite format 3\x00")


def test_backup_export_import_and_restore_take_a_database(
    databases: tuple[Database, Database],
) -> None:
    a, b = databases
    ModelAccessor(User, "users", database=b).insert(User(name="Eve"), actor="op")
    tables = [SQLModel.metadata.tables["user"]]
    zipped = io.BytesIO()
    assert export.write_export(zipped, tables=tables, database=b) == {"user": 1}

    zipped.seek(0)
    summary = importer.import_upload(zipped, actor="op", database=a)
    assert summary.tables == {"user": 1}
    assert names(a) == ["Eve"]

    ModelAccessor(User, "users", database=a).insert(User(name="Fay"), actor="op")
    with backup.open_snapshot(database=a) as snapshot:
        restored = restore.restore_upload(snapshot, actor="op", database=b)
    assert restored.restored
    assert names(b) == ["Eve", "Fay"]
    assert verify_chain(database=a).ok and verify_chain(database=b).ok
    assert names(database.get_database()) == []


def test_set_default_database_switches_what_the_module_functions_use(
    databases: tuple[Database, Database],
) -> None:
    a, _ = databases
    previous = database.set_default_database(a)
    try:
        assert database.get_database() is a and database.get_engine() is a.engine
        with database.transaction() as session:
            assert database.CURRENT_SESSION.get() is session is a.current_session()
            ModelAccessor(User, "users").insert(User(name="Gus"), actor="op")
    finally:
        assert database.set_default_database(previous) is a
    assert names(a) == ["Gus"] and names(previous) == []
    assert a.current_session() is None


def test_the_database_page_example_runs(tmp_path: Path) -> None:
    doc = (ROOT / "docs" / "database.md").read_text()
    section = doc.split("## Several databases in one process")[1].split("\n## ")[0]
    (example,) = python_blocks(section)
    run = run_example(example, tmp_path)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "line.db").exists() and (tmp_path / "archive.db").exists()
    assert not (tmp_path / "storage.db").exists()  # the default database was never used


def _backend(db: Database) -> str:
    dialect = db.engine.dialect
    return "mariadb" if getattr(dialect, "is_mariadb", False) else dialect.name

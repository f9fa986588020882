"""Alembic beside auto-migration: a database made by auto-migration starts an Alembic history
with no differences, then takes the change auto-migration refuses; on every backend."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import (
    Column,
    Connection,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    inspect,
    select,
)
from sqlalchemy.pool import NullPool
from sqlmodel import SQLModel

import programs._tables  # noqa: F401  (the program store's tables, as an app using it has them)
from storage import alembic, database
from storage.accessor import ModelAccessor
from storage.auditor import AuditLog
from storage.errors import MigrationError
from storage.migrations import apply_sqlmodel_migrations
from support.backends import fresh_database
from support.models import User

BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql"),
    pytest.param("mariadb", id="mariadb"),
]


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A new database, brought to the models by auto-migration, holding two audited writes."""
    with fresh_database(request.param) as database_url:
        database.set_default_database(database.Database())
        database.set_database_url(database_url)
        apply_sqlmodel_migrations()
        users = ModelAccessor(User, "users")
        users.insert(User(name="Ada"), actor="ada")
        users.update(1, name="Ada L.", actor="ada")
        yield database_url
        database.get_database().dispose()


def models_with(column: Column[object]) -> MetaData:
    """The models as they are, with one more column on ``user``: a model change."""
    changed = MetaData()
    for table in SQLModel.metadata.sorted_tables:
        table.to_metadata(changed)
    changed.tables["user"].append_column(column)
    return changed


def body(script: Path, function: str) -> str:
    text = script.read_text(encoding="utf-8")
    start = text.index(f"def {function}()")
    end = text.find("\ndef ", start + 1)
    return text[start : end if end != -1 else None]


@contextmanager
def connect(url: str) -> Iterator[Connection]:
    """A connection of its own: a pooled SQLite connection can answer schema PRAGMAs from the
    schema it cached before another connection changed it."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            yield connection
    finally:
        engine.dispose()


def read(url: str, name: str) -> list[dict[str, object]]:
    with connect(url) as connection:
        table = Table(name, MetaData(), autoload_with=connection)
        return [dict(row._mapping) for row in connection.execute(select(table).order_by("id"))]


def foreign_keys(url: str, table: str) -> list[tuple[str | None, list[str]]]:
    with connect(url) as connection:
        keys = inspect(connection).get_foreign_keys(table)
    return [(key["name"], key["constrained_columns"]) for key in keys]


def test_an_auto_migrated_database_moves_to_alembic(url: str, tmp_path: Path) -> None:
    folder = alembic.init(tmp_path / "migrations")
    first = alembic.revision("baseline", directory=folder, database_url=url)
    assert first is not None
    # Our tables, types and index names read back as the models declare them: nothing to do.
    assert "op." not in body(first, "upgrade") + body(first, "downgrade")
    assert alembic.current(directory=folder, database_url=url) == ()
    alembic.stamp("head", directory=folder, database_url=url)
    assert alembic.current(directory=folder, database_url=url) == alembic.heads(directory=folder)

    changed = models_with(Column("serial_number", String(50), nullable=False))
    with pytest.raises(MigrationError, match=r"user\.serial_number: new required column"):
        apply_sqlmodel_migrations(changed, engine=database.get_engine())

    second = alembic.revision("serial number", directory=folder, database_url=url, metadata=changed)
    assert second is not None
    upgrade = body(second, "upgrade")
    added = "add_column(sa.Column('serial_number', sa.String(length=50), nullable=False))"
    assert added in upgrade and upgrade.count("_column(") == 1  # that column, nothing else
    # What a user does with a required column: give existing rows a value.
    edited = added.replace("nullable=False)", "nullable=False, server_default='unknown')")
    second.write_text(second.read_text(encoding="utf-8").replace(added, edited), "utf-8")

    sql = alembic.upgrade("head", directory=folder, database_url=url, sql=True)
    assert sql is not None and "serial_number" in sql  # offline: the SQL, nothing run
    assert "serial_number" not in read(url, "user")[0]
    alembic.upgrade("head", directory=folder, database_url=url)

    users = read(url, "user")
    assert [(u["name"], u["serial_number"]) for u in users] == [("Ada L.", "unknown")]
    audit = read(url, AuditLog.__tablename__)
    assert [(a["operation"], a["actor"]) for a in audit] == [("create", "ada"), ("update", "ada")]
    assert alembic.check(directory=folder, database_url=url, metadata=changed) == []


def test_baseline_stamps_the_database_and_builds_new_ones(url: str, tmp_path: Path) -> None:
    folder = alembic.init(tmp_path / "migrations", models=["support.models", "programs._tables"])
    changed = models_with(Column("serial_number", String(50), nullable=False))
    with pytest.raises(MigrationError, match=r"add_column user\.serial_number"):
        alembic.baseline(directory=folder, database_url=url, metadata=changed)
    assert not list((folder / "versions").glob("*.py"))

    first = alembic.baseline(directory=folder, database_url=url)
    assert alembic.current(directory=folder, database_url=url) == alembic.heads(directory=folder)
    script = first.read_text(encoding="utf-8")
    assert "op.create_table('auditlog'" in script
    assert "import sqlmodel.sql.sqltypes\n" in script and "import storage.auditor\n" in script
    with pytest.raises(MigrationError, match="has revisions already"):
        alembic.baseline(directory=folder, database_url=url)

    backend = database.get_engine().dialect.name
    with fresh_database("sqlite" if backend == "sqlite" else _server(url)) as new:
        alembic.upgrade("head", directory=folder, database_url=new)
        assert alembic.check(directory=folder, database_url=new) == []
        assert alembic.current(directory=folder, database_url=new) == alembic.heads(
            directory=folder
        )


def test_new_constraints_are_named_and_create_all_is_not(url: str, tmp_path: Path) -> None:
    folder = alembic.init(tmp_path / "migrations")
    alembic.baseline(directory=folder, database_url=url)
    changed = models_with(Column("cell_id", Integer, ForeignKey("cell.id"), nullable=True))
    script = alembic.revision("user cell", directory=folder, database_url=url, metadata=changed)
    assert script is not None
    name = "fk_user_cell_id_cell"
    assert f"create_foreign_key(batch_op.f('{name}')" in body(script, "upgrade")
    assert f"drop_constraint(batch_op.f('{name}')" in body(script, "downgrade")

    alembic.upgrade("head", directory=folder, database_url=url)
    assert foreign_keys(url, "user") == [(name, ["cell_id"])]
    alembic.downgrade("-1", directory=folder, database_url=url)
    assert foreign_keys(url, "user") == []
    # The convention held while Alembic ran only: create_all names as it always did.
    assert set(SQLModel.metadata.naming_convention) == {"ix"}


def test_init_leaves_a_folder_in_use_alone(tmp_path: Path) -> None:
    (tmp_path / "env.py").write_text("# mine\n", encoding="utf-8")
    with pytest.raises(FileExistsError):
        alembic.init(tmp_path)
    assert (tmp_path / "env.py").read_text(encoding="utf-8") == "# mine\n"


def _server(url: str) -> str:
    return "postgresql" if url.startswith("postgresql") else "mariadb"

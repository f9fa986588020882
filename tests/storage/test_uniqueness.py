"""A soft-deleted row stops holding its unique values on PostgreSQL and SQLite (partial unique
indexes), keeps them on MariaDB (the 409 names it); restoring it once its value is taken is a
clear 409; databases made before are brought over by ``make_unique_live``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import (
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    create_engine,
)
from sqlmodel import SQLModel

from storage import database
from storage.accessor import ModelAccessor
from storage.errors import IntegrityConflictError, RestoreConflictError
from storage.router_model import build_crud_router
from storage.uniqueness import _LIVE_UNIQUE, live_only, make_unique_live
from support.backends import fresh_database
from support.cli import json_out, run_cli
from support.models import Bay, Site, Tag
from support.testclient import TestClient

OPS = {"X-User": "ops"}


def test_unique_constraints_of_soft_delete_tables_become_partial_indexes() -> None:
    table: Any = Site.__table__  # type: ignore[attr-defined]
    assert not [c for c in table.constraints if isinstance(c, UniqueConstraint)]
    (index,) = [i for i in table.indexes if i.unique]
    assert index.name == "uq_site_name" and [c.name for c in index.columns] == ["name"]
    where = index.dialect_options["postgresql"]["where"]
    assert str(where) == "site.deleted_at IS NULL"
    assert index.dialect_options["sqlite"]["where"] is where

    scratch = MetaData()
    kept = Table(
        "kept",
        scratch,
        Column("id", Integer, primary_key=True),
        Column("code", String(10), unique=True),
        Column("deleted_at", DateTime),
        info={_LIVE_UNIQUE: False},
    )
    live_only(kept)
    assert [c for c in kept.constraints if isinstance(c, UniqueConstraint)]


def test_a_deleted_rows_value_can_be_taken_where_the_backend_allows(backend: str) -> None:
    sites = ModelAccessor(Site, "sites")
    old = sites.insert(Site(name="Cell A"))
    assert sites.delete(old.id)
    if backend == "mariadb":  # no partial indexes: the deleted row keeps its name
        with pytest.raises(IntegrityConflictError):
            sites.insert(Site(name="Cell A"))
        assert sites.purge(old.id)
        sites.insert(Site(name="Cell A"))
        return
    new = sites.insert(Site(name="Cell A"))
    with pytest.raises(RestoreConflictError) as refused:
        sites.restore(old.id)
    assert str(refused.value) == (
        f"sites {old.id} cannot be restored: sites {new.id} now holds its name; change or "
        "delete that one first"
    )
    sites.update(new.id, name="Cell B")
    assert sites.restore(old.id)
    with pytest.raises(IntegrityConflictError):  # two live rows: refused as ever
        sites.insert(Site(name="Cell A"))


def test_restoring_a_cascade_whose_child_value_was_taken_is_refused(backend: str) -> None:
    if backend == "mariadb":
        pytest.skip("a deleted row keeps its unique values on MariaDB: nobody can take them")
    sites, bays = ModelAccessor(Site, "sites"), ModelAccessor(Bay, "bays")
    first, second = sites.insert(Site(name="First")), sites.insert(Site(name="Second"))
    bays.insert(Bay(code="B1", site_id=first.id))
    assert sites.delete(first.id)
    taker = bays.insert(Bay(code="B1", site_id=second.id))
    with pytest.raises(RestoreConflictError, match=f"bays {taker.id} now holds its code"):
        sites.restore(first.id)
    assert sites.get(first.id) is None  # nothing restored


def test_uniqueness_over_http(backend: str) -> None:
    app = FastAPI()
    app.include_router(build_crud_router(ModelAccessor(Tag, "tags")))
    client = TestClient(app)
    tag = client.post("/tags/", json={"code": "A-1"}, headers=OPS).json()
    assert client.delete(f"/tags/{tag['id']}", headers=OPS).status_code == 204
    again = client.post("/tags/", json={"code": "A-1"}, headers=OPS)
    if backend == "mariadb":
        assert again.status_code == 409
        assert again.json()["detail"].startswith(f"tags {tag['id']} is deleted but still holds")
        return
    assert again.status_code == 201
    restore = client.post(f"/tags/{tag['id']}/restore", headers=OPS)
    assert restore.status_code == 409
    assert "now holds its code" in restore.json()["detail"]
    taken = client.post("/tags/", json={"code": "A-1"}, headers=OPS)  # by a live row
    assert taken.status_code == 409 and "deleted" not in taken.json()["detail"]


def _before_partial_indexes() -> MetaData:
    """The test models as a database made before partial indexes has them: the site's name a
    plain unique constraint."""
    old = MetaData()
    for table in SQLModel.metadata.sorted_tables:
        table.to_metadata(old)
    site = old.tables["site"]
    for index in [i for i in site.indexes if i.unique]:
        site.indexes.discard(index)
    site.append_constraint(UniqueConstraint("name", name="site_name_key"))
    return old


@pytest.mark.parametrize("name", ["sqlite", "postgresql", "mariadb"])
def test_make_unique_live_brings_an_older_database_over(name: str) -> None:
    with fresh_database(name) as url:
        database.set_default_database(database.Database())
        database.set_database_url(url)
        try:
            engine = database.get_engine()
            _before_partial_indexes().create_all(engine)
            sites = ModelAccessor(Site, "sites")
            old = sites.insert(Site(name="Cell A"))
            bays = ModelAccessor(Bay, "bays")
            bays.insert(Bay(code="K1", site_id=old.id))
            assert sites.delete(old.id)
            with pytest.raises(IntegrityConflictError):
                sites.insert(Site(name="Cell A"))
            done = make_unique_live()
            if name == "mariadb":
                assert done == []
                return
            assert any("site" in line for line in done), done
            assert make_unique_live() == []  # done once
            sites.insert(Site(name="Cell A"))
            assert bays.get(1, include_deleted=True) is not None  # rows kept, keys intact
        finally:
            database.get_database().dispose()


def test_the_migrate_live_unique_command(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_engine(url)
    _before_partial_indexes().create_all(engine)
    engine.dispose()
    first = json_out(run_cli("migrate", "live-unique", url, "--models", "support.models", "--json"))
    assert first["done"] == [
        "rebuilt table site with its unique indexes over live rows",
    ], first
    again = json_out(run_cli("migrate", "live-unique", url, "--models", "support.models", "--json"))
    assert again == {"done": []}

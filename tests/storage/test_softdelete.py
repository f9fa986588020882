"""Soft delete across relations: each policy (cascade, refuse, leave) through the accessor, the
CRUD routes and the CSV import; restore after a cascade; no live row under a deleted parent; on
SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import io
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import Column, ForeignKey, Integer, MetaData, Table, event, select

from storage import database
from storage.accessor import ModelAccessor
from storage.auditor import AuditLog
from storage.errors import DeletedParentError, LiveChildrenError
from storage.importer import import_upload
from storage.relations import SOFT_DELETE_POLICY, _policy_of, children_of
from storage.router_model import build_crud_router
from support import softdelete_writers
from support.docs import python_blocks, run_example
from support.models import Bay, Fixture, Permit, Site, Visit
from support.servers import ROOT
from support.testclient import TestClient

OPS = {"X-User": "ops"}


@pytest.fixture
def accessors(backend: str) -> dict[str, ModelAccessor[Any]]:
    return softdelete_writers.accessors()


def plant(acc: dict[str, ModelAccessor[Any]]) -> tuple[Site, list[Bay]]:
    """A site with two bays (the first with two fixtures) and a visit."""
    site = acc["sites"].insert(Site(name="Cell A"))
    bays = acc["bays"].insert_many(
        [Bay(code="A1", site_id=site.id), Bay(code="A2", site_id=site.id)]
    )
    acc["fixtures"].insert_many([Fixture(bay_id=bays[0].id), Fixture(bay_id=bays[0].id)])
    acc["visits"].insert(Visit(site_id=site.id))
    return site, bays


def audit(component: str) -> list[tuple[str, str]]:
    with database.read_session() as session:
        rows = session.scalars(select(AuditLog).where(AuditLog.component == component))
        return [(row.operation, row.record_id) for row in rows]


def deleted_at(model: type[Any]) -> list[datetime | None]:
    """Each row's deleted_at, naive UTC, in key order."""
    with database.read_session() as session:
        column = model.__table__.c.deleted_at
        found = session.scalars(select(column).order_by(model.__table__.c.id))
        return [None if t is None else t.replace(tzinfo=None) for t in found]


# -- policies -----------------------------------------------------------------------------------


def test_the_default_policy_follows_ondelete_and_info_overrides_it() -> None:
    policies = {r.name: r.policy for r in children_of(Site.__table__)}  # type: ignore[attr-defined]
    assert policies == {
        "bay.site_id": "cascade",
        "permit.site_id": "refuse",
        "visit.site_id": "leave",
    }
    scratch = MetaData()
    parent = Table(
        "p", scratch, Column("id", Integer, primary_key=True), Column("deleted_at", Integer)
    )
    child = Table(
        "c",
        scratch,
        Column("id", Integer, primary_key=True),
        Column("p_id", Integer, ForeignKey("p.id", ondelete="CASCADE")),
        Column("q_id", Integer, ForeignKey("p.id", ondelete="SET NULL")),
        Column("r_id", Integer, ForeignKey("p.id", info={SOFT_DELETE_POLICY: "cascade"})),
        Column("s_id", Integer, ForeignKey("p.id", info={SOFT_DELETE_POLICY: "maybe"})),
    )
    assert parent is not None
    keys = {fk.parent.name: fk for fk in child.foreign_keys}
    assert _policy_of(keys["p_id"]) == "leave"  # CASCADE, but no deleted_at to set on c
    assert _policy_of(keys["q_id"]) == "refuse"
    with pytest.raises(ValueError, match="'cascade' needs a deleted_at column on c"):
        _policy_of(keys["r_id"])
    with pytest.raises(ValueError, match="'maybe' is not one of"):
        _policy_of(keys["s_id"])


def test_cascade_takes_live_children_and_restore_brings_back_only_those(
    accessors: dict[str, ModelAccessor[Any]],
) -> None:
    site, bays = plant(accessors)
    other = accessors["bays"].insert(Bay(code="A3", site_id=site.id))
    assert accessors["bays"].delete(other.id, actor="ops")  # on its own, maybe in this second
    statements: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(database.get_engine(), "before_cursor_execute", seen)
    try:
        assert accessors["sites"].delete(site.id, actor="ops")
    finally:
        event.remove(database.get_engine(), "before_cursor_execute", seen)
    moment = accessors["sites"].get(site.id, include_deleted=True).deleted_at.replace(tzinfo=None)
    assert deleted_at(Bay)[:2] == [moment, moment] and deleted_at(Fixture) == [moment, moment]
    assert deleted_at(Bay)[2] != moment
    assert accessors["visits"].all()  # leave: still live
    assert audit("bays")[-2:] == [
        ("soft_delete", str(bays[0].id)),
        ("soft_delete", str(bays[1].id)),
    ]
    assert [op for op, _ in audit("fixtures")] == ["create", "create", "soft_delete", "soft_delete"]
    assert len(statements) <= 12, statements  # per relation and level, not per row

    assert accessors["sites"].restore(site.id, actor="ops")
    assert deleted_at(Bay) == [None, None, deleted_at(Bay)[2]] and deleted_at(Bay)[2] is not None
    assert deleted_at(Fixture) == [None, None]
    assert [op for op, _ in audit("fixtures")][-2:] == ["restore", "restore"]


def test_refuse_names_the_live_children_and_changes_nothing(
    accessors: dict[str, ModelAccessor[Any]],
) -> None:
    site, _ = plant(accessors)
    permits = accessors["permits"].insert_many([Permit(site_id=site.id), Permit(site_id=site.id)])
    with pytest.raises(LiveChildrenError) as refused:
        accessors["sites"].delete(site.id, actor="ops")
    assert str(refused.value) == (
        f"sites {site.id} still has 2 live rows in permit (permit.site_id): delete or move them "
        "first"
    )
    assert accessors["sites"].get(site.id) is not None and deleted_at(Bay) == [None, None]
    accessors["permits"].delete_many([permit.id for permit in permits])
    assert accessors["sites"].delete(site.id, actor="ops")


def test_no_live_row_is_created_moved_or_restored_under_a_deleted_parent(
    accessors: dict[str, ModelAccessor[Any]],
) -> None:
    site, bays = plant(accessors)
    spare = accessors["sites"].insert(Site(name="Spare"))
    loose = accessors["bays"].insert(Bay(code="L1", site_id=spare.id))
    assert accessors["bays"].delete(loose.id)
    assert accessors["sites"].delete(spare.id)
    with pytest.raises(DeletedParentError, match=f"sites {spare.id} is deleted: restore it"):
        accessors["bays"].insert(Bay(code="B9", site_id=spare.id))
    with pytest.raises(DeletedParentError, match=r"\(bay.site_id\)"):
        accessors["bays"].update(bays[0].id, site_id=spare.id)
    with pytest.raises(DeletedParentError):
        accessors["visits"].insert(Visit(site_id=spare.id))  # leave too: no new rows under it
    with pytest.raises(DeletedParentError):
        accessors["bays"].restore(loose.id)
    assert accessors["bays"].get(bays[0].id).site_id == site.id


# -- over HTTP ----------------------------------------------------------------------------------


def client_for(accessors: dict[str, ModelAccessor[Any]]) -> TestClient:
    app = FastAPI()
    for accessor in accessors.values():
        app.include_router(build_crud_router(accessor, max_records=None))
    return TestClient(app)


def test_policies_over_http(accessors: dict[str, ModelAccessor[Any]]) -> None:
    client = client_for(accessors)
    site = client.post("/sites/", json={"name": "North"}, headers=OPS).json()
    bay = client.post("/bays/", json={"code": "N1", "site_id": site["id"]}, headers=OPS).json()
    permit = client.post("/permits/", json={"site_id": site["id"]}, headers=OPS).json()
    visit = client.post("/visits/", json={"site_id": site["id"]}, headers=OPS).json()
    south = client.post("/sites/", json={"name": "South"}, headers=OPS).json()
    assert client.delete(f"/sites/{south['id']}", headers=OPS).status_code == 204

    refused = client.delete(f"/sites/{site['id']}", headers=OPS)
    assert refused.status_code == 409
    assert "1 live row in permit (permit.site_id)" in refused.json()["detail"]
    assert client.delete(f"/permits/{permit['id']}", headers=OPS).status_code == 204
    assert client.delete(f"/sites/{site['id']}", headers=OPS).status_code == 204
    assert client.get("/bays/").json() == [] and len(client.get("/visits/").json()) == 1

    orphan = client.post("/bays/", json={"code": "N2", "site_id": site["id"]}, headers=OPS)
    assert orphan.status_code == 409
    assert orphan.json()["detail"].startswith(f"sites {site['id']} is deleted")
    moved = client.patch(f"/visits/{visit['id']}", json={"site_id": south["id"]}, headers=OPS)
    assert moved.status_code == 409
    assert moved.json()["detail"].startswith(f"sites {south['id']} is deleted")
    unchanged = client.patch(f"/visits/{visit['id']}", json={"site_id": site["id"]}, headers=OPS)
    assert unchanged.status_code == 200  # leave: it may stay where it is

    assert client.post(f"/sites/{site['id']}/restore", headers=OPS).status_code == 200
    assert [row["id"] for row in client.get("/bays/").json()] == [bay["id"]]


# -- through the CSV import ---------------------------------------------------------------------


def csv_file(*rows: list[str]) -> io.BytesIO:
    return io.BytesIO("\n".join(",".join(row) for row in rows).encode() + b"\n")


def test_policies_through_the_csv_import(accessors: dict[str, ModelAccessor[Any]]) -> None:
    site, bays = plant(accessors)
    when = "2024-05-01T10:00:00"
    header = ["id", "name", "deleted_at"]
    marked = csv_file(header, [str(site.id), "Cell A", when])
    permit = accessors["permits"].insert(Permit(site_id=site.id))
    with pytest.raises(LiveChildrenError, match="1 live row in permit"):
        import_upload(marked, table="site", mode="upsert", actor="importer")
    assert accessors["sites"].get(site.id) is not None  # all or nothing
    accessors["permits"].delete(permit.id)

    marked.seek(0)
    import_upload(marked, table="site", mode="upsert", actor="importer")
    moment = datetime.fromisoformat(when)
    assert deleted_at(Bay) == [moment, moment] and deleted_at(Fixture) == [moment, moment]
    assert accessors["visits"].all()  # leave
    assert audit("bays")[-2:] == [
        ("soft_delete", str(bays[0].id)),
        ("soft_delete", str(bays[1].id)),
    ]

    live_bay = csv_file(["code", "site_id"], ["Z1", str(site.id)])
    with pytest.raises(DeletedParentError, match=f"sites {site.id} is deleted"):
        import_upload(live_bay, table="bay", actor="importer")
    deleted_bay = csv_file(["code", "site_id", "deleted_at"], ["Z2", str(site.id), when])
    assert import_upload(deleted_bay, table="bay", actor="importer").tables == {"bay": 1}
    visit = csv_file(["site_id"], [str(site.id)])  # leave: an export of such rows imports
    assert import_upload(visit, table="visit", actor="importer").tables == {"visit": 1}

    assert accessors["sites"].restore(site.id)
    assert deleted_at(Bay)[:2] == [None, None]


def test_the_accessor_page_example_runs(tmp_path: Path) -> None:
    doc = (ROOT / "docs" / "accessor.md").read_text()
    section = doc.split("## Soft delete, relations and unique values")[1].split("\n## ")[0]
    run = run_example(python_blocks(section)[-1], tmp_path)  # its database is ./sites.db
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == [
        "sites 1 still has 1 live row in permit (permit.site_id): delete or move them first",
        "0",
        "2",
    ]

"""Deleting a row audits every row the delete takes with it, in the same transaction: children
and grandchildren removed by ON DELETE CASCADE or an ORM cascade, children whose key becomes
NULL (ON DELETE SET NULL, or an ORM relationship without cascade) as updates; found with one
query per foreign key and level, on SQLite, PostgreSQL and MariaDB. Purging a soft-deleted row
deletes it for good, audited, and over HTTP only for admins."""

from typing import Any

from fastapi import Depends, FastAPI, Header, HTTPException
from sqlalchemy import event, select
from sqlmodel import SQLModel

from storage import database
from storage.accessor import ModelAccessor
from storage.auditor import AuditLog
from storage.http import RouteAuth
from storage.router_model import build_crud_router
from support.models import Badge, Cell, Clamp, Line, Rack, Robot, Slot, Station, User
from support.testclient import TestClient

# No ``from __future__ import annotations``: SQLModel reads the annotations at class creation.


def audit() -> list[tuple[str, str, str, Any]]:
    with database.read_session() as session:
        rows = session.scalars(select(AuditLog).order_by(AuditLog.id))  # type: ignore[arg-type]
        return [(row.component, row.operation, row.record_id, row.after) for row in rows]


def count(model: type[SQLModel]) -> int:
    with database.read_session() as session:
        return len(session.scalars(select(model)).all())


def test_database_cascades_are_audited_with_one_query_per_level(backend: str) -> None:
    lines = ModelAccessor(Line, "lines")
    ModelAccessor(Station, "stations")  # files the stations' audit rows under its component
    line = lines.insert(Line(name="A"))
    with database.transaction() as session:
        stations = [Station(line_id=line.id) for _ in range(3)]
        session.add_all(stations)
        session.flush()
        session.add_all([Clamp(station_id=station.id) for station in stations for _ in range(2)])
        session.add_all([Badge(line_id=line.id), Badge(line_id=None)])
    selects: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            selects.append(statement)

    event.listen(database.get_engine(), "before_cursor_execute", seen)
    try:
        assert lines.delete(line.id, actor="ops")
    finally:
        event.remove(database.get_engine(), "before_cursor_execute", seen)
    written = audit()[1:]
    assert written[0] == ("lines", "delete", str(line.id), None)
    operations = sorted((component, operation) for component, operation, _, _ in written[1:])
    assert operations == [
        ("badge", "update"),
        *[("clamp", "delete")] * 6,
        *[("stations", "delete")] * 3,
    ]
    badge = next(after for component, _, _, after in written if component == "badge")
    assert badge is not None and badge["line_id"] is None
    assert (count(Station), count(Clamp), count(Badge)) == (0, 0, 2)
    # the line itself; then stations, badges (one level); clamps (the next); far from 1 per row
    assert len(selects) <= 6, selects


def test_orm_cascades_are_audited(backend: str) -> None:
    racks, cells = ModelAccessor(Rack, "racks"), ModelAccessor(Cell, "cells")
    ModelAccessor(Robot, "robots")  # files the robots' audit rows under its component
    rack, cell = racks.insert(Rack()), cells.insert(Cell(name="north"))
    with database.transaction() as session:
        session.add_all([Slot(rack_id=rack.id), Slot(rack_id=rack.id)])
        session.add(Robot(name="arm", cell_id=cell.id))
    assert racks.delete(rack.id, actor="ops")
    assert cells.delete(cell.id, actor="ops")
    written = [(component, operation) for component, operation, _, _ in audit()[2:]]
    assert written == [
        ("racks", "delete"),
        ("slot", "delete"),
        ("slot", "delete"),
        ("cells", "delete"),
        ("robots", "update"),  # SQLAlchemy set its cell_id to NULL
    ]
    assert count(Slot) == 0
    with database.read_session() as session:
        assert session.scalars(select(Robot.cell_id)).all() == [None]


def test_purge_deletes_only_deleted_rows_for_good_with_an_audit_row(backend: str) -> None:
    users = ModelAccessor(User, "users")
    alice, bob = users.insert(User(name="Alice")), users.insert(User(name="Bob"))
    assert not users.purge(alice.id, actor="admin")  # live: never purged
    assert users.delete(alice.id, actor="ops") and users.delete(bob.id, actor="ops")
    assert users.purge(alice.id, actor="admin")
    assert users.get(alice.id, include_deleted=True) is None
    assert not users.purge(alice.id, actor="admin")  # gone
    assert users.purge_deleted(actor="admin") == 1
    operations = [
        (operation, key) for component, operation, key, _ in audit() if component == "users"
    ]
    assert operations[-2:] == [("purge", str(alice.id)), ("purge", str(bob.id))]
    assert not ModelAccessor(Line, "lines").purge(1)  # no deleted_at: nothing to purge


def test_purge_over_http_is_an_admin_route(backend: str) -> None:
    def admin_only(x_admin: str = Header(default="")) -> None:
        if x_admin != "yes":
            raise HTTPException(status_code=403, detail="admins only")

    app = FastAPI()
    auth = RouteAuth(admin=[Depends(admin_only)])
    app.include_router(build_crud_router(ModelAccessor(User, "users"), auth=auth))
    client = TestClient(app)
    ops, admin = {"X-User": "ops"}, {"X-User": "root", "X-Admin": "yes"}
    user = client.post("/users/", json={"name": "Ada"}, headers=ops).json()
    url = f"/users/{user['id']}/purge"
    assert client.delete(url, headers=admin).status_code == 409  # live
    assert client.delete(f"/users/{user['id']}", headers=ops).status_code == 204
    assert client.delete(url, headers=ops).status_code == 403
    assert client.delete(url, headers=admin).status_code == 204
    assert client.delete(url, headers=admin).status_code == 404
    assert client.get(f"/users/{user['id']}?include_deleted=true").status_code == 404

"""The example machine app: its behaviour over HTTP, and that it serves under uvicorn."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from storage import database
from support.servers import ROOT, served
from support.testclient import TestClient

ADMIN = {"X-User": "admin"}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    database.set_default_database(database.Database())
    sys.path.insert(0, str(ROOT))
    try:
        from examples.machine_app import create_app

        with TestClient(create_app(f"sqlite:///{tmp_path / 'machine.db'}")) as client:
            yield client
    finally:
        sys.path.remove(str(ROOT))
        database.get_database().dispose()


def test_cells_machines_and_tools(client: TestClient) -> None:
    cell = client.post("/workcells/", json={"name": "Cell A", "location": "Hall 1"}, headers=ADMIN)
    assert cell.status_code == 201
    cell_id = cell.json()["id"]

    robot = client.post(
        "/machines/",
        json={"serial": "  ur10e-001 ", "workcell_id": cell_id, "payload_kg": 10},
        headers=ADMIN,
    )
    assert robot.status_code == 201
    assert robot.json()["serial"] == "UR10E-001"  # the before_insert hook normalised it

    refused = client.post("/machines/", json={"serial": "   "}, headers=ADMIN)
    assert refused.status_code == 422 and "serial" in refused.text

    unknown_cell = client.post(
        "/machines/", json={"serial": "X1", "workcell_id": 9999}, headers=ADMIN
    )
    assert unknown_cell.status_code == 409  # foreign key

    zero = client.post("/tools/", json={"name": "vacuum", "max_payload_kg": 0}, headers=ADMIN)
    assert zero.status_code == 422
    created = client.put("/tools/vacuum", json={"max_payload_kg": 2.5}, headers=ADMIN)
    assert created.status_code == 201
    assert client.delete("/tools/vacuum", headers=ADMIN).status_code == 204
    assert client.get("/tools/vacuum").status_code == 404

    assert client.delete(f"/workcells/{cell_id}", headers=ADMIN).status_code == 204
    assert client.get(f"/workcells/{cell_id}").status_code == 404
    assert client.get("/machines/").json() == []  # its machines went with it
    assert client.post(f"/workcells/{cell_id}/restore", headers=ADMIN).status_code == 200
    assert client.get(f"/workcells/{cell_id}").json()["name"] == "Cell A"
    assert [m["serial"] for m in client.get("/machines/").json()] == ["UR10E-001"]

    audit = client.get("/db/audit", params={"component": "workcells"}).json()
    assert [row["operation"] for row in audit] == ["restore", "soft_delete", "create"]
    assert client.get("/db/health").json()["status"] == "ok"


def test_serves_under_uvicorn(tmp_path: Path) -> None:
    env = {"STORAGE_DATABASE_URL": f"sqlite:///{tmp_path / 'served.db'}"}
    with served(["-m", "examples.machine_app"], env=env, ready_path="/db/health") as http:
        assert http.get("/docs").status_code == 200
        paths = http.get("/openapi.json").json()["paths"]
        assert "/machines/" in paths and "/api/v2/programs/{program_name}" in paths
        stored = {program["name"] for program in http.get("/api/v2/programs").json()}
        assert {"demo_pick", "euro_pallet_4x3"} <= stored  # seeded on first start
        created = http.post("/workcells/", json={"name": "Cell B"}, headers=ADMIN)
        assert created.status_code == 201

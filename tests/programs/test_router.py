"""The /api/v2 routes over HTTP on every backend: every route and status code."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, HTTPException
from fastapi.params import Depends
from sqlalchemy import select

from programs import ProgramRegistry, ProgramStore, build_programs_router, setup
from storage import database
from storage.auditor import AuditLog
from storage.http import RouteAuth
from support.program_templates import registry_with_templates
from support.testclient import TestClient

ADA = {"X-User": "ada"}
SEAM = {"length_mm": 12.5}
API = "/api/v2"


def create(client: TestClient, name: str = "seam_1", **body: Any) -> Any:
    payload = {"template_name": "weld", "data": SEAM, **body}
    return client.post(f"{API}/programs/{name}", json=payload, headers=ADA)


# -- templates -------------------------------------------------------------------------------


def test_list_templates_with_their_json_schema(client: TestClient) -> None:
    response = client.get(f"{API}/program-templates")
    assert response.status_code == 200
    templates = {t["name"]: t for t in response.json()}
    assert sorted(templates) == ["inspect", "weld"]
    weld = templates["weld"]
    assert weld["json_schema"]["properties"]["speed"]["maximum"] == 100
    assert weld["json_schema"]["required"] == ["length_mm"]
    assert (weld["model_class_name"], weld["available"], weld["version"]) == ("Weld", True, "2")


def test_get_one_template_with_etag_and_304(client: TestClient) -> None:
    response = client.get(f"{API}/program-templates/weld")
    assert response.status_code == 200
    assert response.json()["title"] == "Weld a seam"
    etag = response.headers["ETag"]
    cached = client.get(f"{API}/program-templates/weld", headers={"If-None-Match": etag})
    assert (cached.status_code, cached.headers["ETag"]) == (304, etag)
    assert client.get(f"{API}/program-templates/nope").status_code == 404


# -- programs: reads and create --------------------------------------------------------------


def test_create_then_read_back(client: TestClient) -> None:
    response = create(client)
    assert response.status_code == 201
    body = response.json()
    assert body["name"] == "seam_1" and body["template_name"] == "weld"
    assert body["data"] == {"length_mm": 12.5, "speed": 10.0, "passes": 1}
    assert body["valid"] is True and body["validation_errors"] is None
    assert {"created_at", "updated_at"} <= set(body)
    assert response.headers["Location"].endswith(f"{API}/programs/seam_1")
    read = client.get(f"{API}/programs/seam_1")
    assert (read.status_code, read.json()) == (200, body)
    assert read.headers["ETag"] == response.headers["ETag"]
    not_modified = client.get(
        f"{API}/programs/seam_1", headers={"If-None-Match": read.headers["ETag"]}
    )
    assert not_modified.status_code == 304
    assert client.get(f"{API}/programs").json() == [body]


@pytest.mark.parametrize(
    ("name", "body", "headers", "status"),
    [
        pytest.param("x", {"template_name": "nope", "data": SEAM}, ADA, 404, id="no-template"),
        pytest.param("taken", {"template_name": "weld", "data": SEAM}, ADA, 409, id="taken"),
        pytest.param("x", {"template_name": "weld", "data": {}}, ADA, 422, id="missing-field"),
        pytest.param("x", {"template_name": "weld", "data": [1]}, ADA, 422, id="data-not-object"),
        pytest.param("x", {"data": SEAM}, ADA, 422, id="no-template-name"),
        pytest.param("x", {"template_name": "weld", "data": SEAM, "x": 1}, ADA, 422,
                     id="unknown-body-field"),
        pytest.param("x" * 201, {"template_name": "weld", "data": SEAM}, ADA, 422,
                     id="name-too-long"),
    ],
)  # fmt: skip
def test_create_errors(
    client: TestClient, name: str, body: dict[str, Any], headers: dict[str, str], status: int
) -> None:
    assert create(client, "taken").status_code == 201
    response = client.post(f"{API}/programs/{name}", json=body, headers=headers)
    assert response.status_code == status, response.text
    assert [p["name"] for p in client.get(f"{API}/programs").json()] == ["taken"]


def test_invalid_data_is_a_422_naming_each_field(client: TestClient) -> None:
    data = {"length_mm": -1, "speed": "fast", "colour": "red"}
    response = create(client, data=data)
    assert response.status_code == 422
    errors = {tuple(e["loc"]): e["type"] for e in response.json()["detail"]}
    assert errors == {
        ("body", "data", "length_mm"): "greater_than",
        ("body", "data", "speed"): "float_parsing",
        ("body", "data", "colour"): "extra_forbidden",
    }


def test_an_unavailable_template_is_a_409(store: ProgramStore) -> None:
    app = FastAPI()
    app.include_router(build_programs_router(ProgramRegistry()))
    client = TestClient(app)
    assert create(client).status_code == 409


def test_programs_of_one_template(client: TestClient) -> None:
    create(client, "b")
    create(client, "a")
    create(client, "c", template_name="inspect", data={"camera": "top"})
    response = client.get(f"{API}/programs/template/weld")
    assert response.status_code == 200
    assert [p["name"] for p in response.json()] == ["a", "b"]
    assert client.get(f"{API}/programs/template/nope").status_code == 404
    assert client.get(f"{API}/programs/nope").status_code == 404


# -- programs: update and delete -------------------------------------------------------------


def test_update_replaces_data_and_honours_if_match(client: TestClient) -> None:
    etag = create(client).headers["ETag"]
    stale = client.put(
        f"{API}/programs/seam_1",
        json={"data": {"length_mm": 3}},
        headers={**ADA, "If-Match": '"stale"'},
    )
    assert stale.status_code == 412
    response = client.put(
        f"{API}/programs/seam_1",
        json={"data": {"length_mm": 3, "passes": 2}},
        headers={**ADA, "If-Match": etag},
    )
    assert response.status_code == 200
    assert response.json()["data"] == {"length_mm": 3.0, "speed": 10.0, "passes": 2}
    assert response.headers["ETag"] != etag
    assert client.get(f"{API}/programs/seam_1").headers["ETag"] == response.headers["ETag"]
    again = client.put(
        f"{API}/programs/seam_1", json={"data": {"length_mm": 4}}, headers={**ADA, "If-Match": etag}
    )
    assert again.status_code == 412
    anything = client.put(
        f"{API}/programs/seam_1", json={"data": {"length_mm": 4}}, headers={**ADA, "If-Match": "*"}
    )
    assert anything.status_code == 200


def test_update_can_switch_template(client: TestClient) -> None:
    create(client)
    response = client.put(
        f"{API}/programs/seam_1",
        json={"template_name": "inspect", "data": {"camera": "top"}},
        headers=ADA,
    )
    assert response.status_code == 200
    assert response.json()["template_name"] == "inspect"


@pytest.mark.parametrize(
    ("name", "body", "headers", "status"),
    [
        pytest.param("nope", {"data": SEAM}, ADA, 404, id="no-program"),
        pytest.param("seam_1", {"data": SEAM, "template_name": "nope"}, ADA, 404,
                     id="no-template"),
        pytest.param("seam_1", {"data": {"length_mm": 0}}, ADA, 422, id="invalid-data"),
        pytest.param("seam_1", {}, ADA, 422, id="no-data"),
        pytest.param("nope", {"data": SEAM}, {**ADA, "If-Match": "*"}, 404,
                     id="if-match-on-missing"),
    ],
)  # fmt: skip
def test_update_errors(
    client: TestClient, name: str, body: dict[str, Any], headers: dict[str, str], status: int
) -> None:
    before = create(client).json()
    response = client.put(f"{API}/programs/{name}", json=body, headers=headers)
    assert response.status_code == status, response.text
    assert client.get(f"{API}/programs/seam_1").json() == before


# -- the actor: seed 000 clients send no X-User ------------------------------------------------


def instance_actors() -> list[str]:
    column = AuditLog.component
    with database.read_session() as session:
        rows = session.scalars(
            select(AuditLog.actor).where(column == "program_instances").order_by(AuditLog.id)  # type: ignore[arg-type]
        )
        return list(rows)


def test_writes_without_x_user_are_recorded_as_the_default_actor(client: TestClient) -> None:
    body = {"template_name": "weld", "data": SEAM}
    assert client.post(f"{API}/programs/seam_1", json=body).status_code == 201
    update = client.put(f"{API}/programs/seam_1", json={"data": {**SEAM, "passes": 2}})
    assert update.status_code == 200
    assert client.post(f"{API}/database/backup").status_code == 201
    assert client.delete(f"{API}/programs/seam_1").status_code == 204
    create(client, "seam_2")
    assert instance_actors() == ["anonymous", "anonymous", "anonymous", "ada"]


def test_the_default_actor_is_configurable(store: ProgramStore, tmp_path: Path) -> None:
    app = FastAPI()
    setup(app, store, backup_dir=tmp_path, default_actor="panel line 3")
    client = TestClient(app)
    body = {"template_name": "weld", "data": SEAM}
    assert client.post(f"{API}/programs/seam_1", json=body).status_code == 201
    assert instance_actors() == ["panel line 3"]


def test_an_app_can_require_x_user(store: ProgramStore, tmp_path: Path) -> None:
    app = FastAPI()
    setup(app, store, backup_dir=tmp_path / "backups", default_actor=None)
    client = TestClient(app)
    create(client)
    requests = [
        ("POST", "/programs/seam_2", {"template_name": "weld", "data": SEAM}),
        ("PUT", "/programs/seam_1", {"data": SEAM}),
        ("DELETE", "/programs/seam_1", None),
        ("POST", "/database/backup", None),
    ]
    for method, path, body in requests:
        response = client.request(method, f"{API}{path}", json=body)
        assert (response.status_code, response.json()) == (
            400,
            {"detail": "the X-User header is required"},
        ), path
    assert instance_actors() == ["ada"]
    assert not (tmp_path / "backups").exists(), "a backup was written"


def test_delete(client: TestClient) -> None:
    etag = create(client).headers["ETag"]
    stale = client.delete(f"{API}/programs/seam_1", headers={**ADA, "If-Match": '"old"'})
    assert stale.status_code == 412
    response = client.delete(f"{API}/programs/seam_1", headers={**ADA, "If-Match": etag})
    assert response.status_code == 204
    assert client.get(f"{API}/programs/seam_1").status_code == 404
    assert client.delete(f"{API}/programs/seam_1", headers=ADA).status_code == 404


def test_every_change_is_audited_with_the_x_user(client: TestClient) -> None:
    create(client)
    client.put(f"{API}/programs/seam_1", json={"data": SEAM}, headers={"X-User": "bob"})
    client.delete(f"{API}/programs/seam_1", headers={"X-User": "cy"})
    with database.read_session() as session:
        rows = session.scalars(
            select(AuditLog).where(AuditLog.component == "program_instances").order_by(AuditLog.id)  # type: ignore[arg-type]
        ).all()
        trail = [(r.operation, r.record_id, r.actor) for r in rows]
        after = rows[0].after
    assert trail == [("create", "seam_1", "ada"), ("update", "seam_1", "bob"),
                     ("delete", "seam_1", "cy")]  # fmt: skip
    assert after is not None and after["data"] == {"length_mm": 12.5, "speed": 10.0, "passes": 1}


def test_flagged_programs_show_why(client: TestClient, store: ProgramStore) -> None:
    create(client)
    ProgramStore(ProgramRegistry()).sync()  # the code of every template is gone
    body = client.get(f"{API}/programs/seam_1").json()
    assert body["valid"] is False
    assert body["validation_errors"][0]["type"] == "template_unavailable"
    templates = client.get(f"{API}/program-templates").json()
    assert {t["name"]: t["available"] for t in templates} == {"inspect": False, "weld": False}


# -- database --------------------------------------------------------------------------------


def test_stats(client: TestClient, backend: str) -> None:
    create(client)
    stats = client.get(f"{API}/database/stats").json()
    assert stats["backend"] == backend
    assert stats["tables"]["program_templates"] == 2
    assert stats["tables"]["program_instances"] == 1
    assert stats["tables"]["auditlog"] >= 3
    assert (stats["templates"], stats["programs"]) == (2, 1)
    assert (stats["unavailable_templates"], stats["invalid_programs"]) == (0, 0)
    assert stats["size_bytes"] > 0
    assert stats["discovery_problems"] == []


def test_stats_show_modules_that_failed_to_load(store: ProgramStore) -> None:
    registry = ProgramRegistry()
    registry.discover("robot_programs_that_are_not_installed")
    app = FastAPI()
    app.include_router(build_programs_router(registry))
    stats = TestClient(app).get(f"{API}/database/stats").json()
    assert stats["discovery_problems"] == [
        {
            "module": "robot_programs_that_are_not_installed",
            "error": "ModuleNotFoundError: No module named 'robot_programs_that_are_not_installed'",
            "source": "package",
        }
    ]


def test_backup_writes_a_consistent_sqlite_snapshot(client: TestClient, tmp_path: Path) -> None:
    create(client)
    first = client.post(f"{API}/database/backup", headers=ADA)
    second = client.post(f"{API}/database/backup", headers=ADA)
    assert (first.status_code, second.status_code) == (201, 201)
    info = first.json()
    path = Path(info["path"])
    assert path.parent == (tmp_path / "backups").resolve()
    assert path.name.startswith("backup-") and path.suffix == ".sqlite"
    assert second.json()["path"] != info["path"]
    assert path.stat().st_size == info["size_bytes"]
    with closing(sqlite3.connect(path)) as snapshot:
        rows = snapshot.execute("SELECT name, template_name FROM program_instances").fetchall()
    assert rows == [("seam_1", "weld")]


def test_backup_dir_defaults_next_to_a_sqlite_file(sqlite_db: Path) -> None:
    store = ProgramStore(registry_with_templates())
    store.sync()
    app = FastAPI()
    app.include_router(build_programs_router(store))
    response = TestClient(app).post(f"{API}/database/backup", headers=ADA)
    assert Path(response.json()["path"]).parent == sqlite_db.parent.resolve() / "backups"


# -- the API's shape -------------------------------------------------------------------------


def test_exactly_the_seed_routes_with_typed_schemas(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    routes = {(path, method) for path, item in spec["paths"].items() for method in item}
    assert routes == {
        ("/api/v2/program-templates", "get"),
        ("/api/v2/program-templates/{template_name}", "get"),
        ("/api/v2/programs", "get"),
        ("/api/v2/programs/{program_name}", "get"),
        ("/api/v2/programs/{program_name}", "post"),
        ("/api/v2/programs/{program_name}", "put"),
        ("/api/v2/programs/{program_name}", "delete"),
        ("/api/v2/programs/template/{template_name}", "get"),
        ("/api/v2/database/stats", "get"),
        ("/api/v2/database/backup", "post"),
        ("/api/v2/programs/{program_name}/runs", "post"),
        ("/api/v2/programs/{program_name}/runs", "get"),
        ("/api/v2/runs", "get"),
        ("/api/v2/runs/{run_id}", "get"),
        ("/api/v2/runs/{run_id}/stop", "post"),
        ("/api/v2/runs/{run_id}/logs", "get"),
        ("/api/v2/runs/{run_id}/events", "get"),
        ("/api/v2/runs/events", "get"),
    }
    schemas = spec["components"]["schemas"]
    assert {"TemplateRead", "ProgramRead", "ProgramCreate", "ProgramUpdate", "DatabaseStats",
            "BackupInfo"} <= set(schemas)  # fmt: skip
    assert "json_schema" in schemas["TemplateRead"]["properties"]
    post = spec["paths"]["/api/v2/programs/{program_name}"]["post"]
    assert post["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/ProgramCreate"
    )
    assert {"201", "400", "404", "409", "422"} <= set(post["responses"])


def test_auth_guards_reads_writes_and_the_backup(store: ProgramStore, tmp_path: Path) -> None:
    def deny(detail: str) -> Depends:
        def check() -> None:
            raise HTTPException(status_code=403, detail=detail)

        return Depends(check)

    app = FastAPI()
    auth = RouteAuth(write=[deny("write")], admin=[deny("admin")])
    app.include_router(build_programs_router(store, auth=auth, backup_dir=tmp_path))
    client = TestClient(app)
    assert client.get(f"{API}/programs").status_code == 200
    assert create(client).json() == {"detail": "write"}
    assert client.post(f"{API}/database/backup", headers=ADA).json() == {"detail": "admin"}

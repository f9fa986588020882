"""The generated CRUD routes, over HTTP, against SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi import FastAPI, Header, HTTPException, Request
from fastapi.params import Depends
from sqlalchemy import func, select

from storage import database
from storage.accessor import ModelAccessor
from storage.auditor import AuditLog
from storage.http import RouteAuth
from storage.router_model import build_crud_router
from support.models import Gadget, Recipe, Sample, User
from support.testclient import TestClient

pytestmark = pytest.mark.usefixtures("backend")

ADMIN = {"X-User": "admin"}
MODELS: tuple[Any, ...] = (User, Gadget, Recipe, Sample)


# -- fixtures and helpers --------------------------------------------------------------------


def accessors() -> list[ModelAccessor[Any]]:
    return [
        ModelAccessor(User, "users"),
        ModelAccessor(Gadget, "gadgets"),
        ModelAccessor(Recipe, "recipes"),
        ModelAccessor(Sample, "samples"),
    ]


def client_for(*routed: ModelAccessor[Any], **options: Any) -> TestClient:
    app = FastAPI()
    for accessor in routed or accessors():
        app.include_router(build_crud_router(accessor, **options))
    return TestClient(app)


@pytest.fixture
def client() -> TestClient:
    return client_for()


def state() -> dict[str, Any]:
    """Every stored row of the test tables and the number of audit rows."""
    with database.read_session() as session:
        tables: dict[str, Any] = {
            model.__name__: sorted(
                (row.model_dump(mode="json") for row in session.scalars(select(model))), key=str
            )
            for model in MODELS
        }
        tables["audit"] = session.scalar(select(func.count()).select_from(AuditLog))
    return tables


def audit(component: str) -> list[tuple[str, str]]:
    with database.read_session() as session:
        rows = session.scalars(
            select(AuditLog).where(AuditLog.component == component).order_by(AuditLog.id)  # type: ignore[arg-type]
        )
        return [(row.operation, row.actor) for row in rows]


def create_user(client: TestClient, **fields: Any) -> dict[str, Any]:
    response = client.post("/users/", json={"name": "Alice", **fields}, headers=ADMIN)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


SAMPLE = {"taken_at": "2026-01-02T03:04:05Z", "day": "2026-01-02", "weight": "1.5"}


# -- the seed README, end to end -------------------------------------------------------------


def test_seed_readme_http_example(client: TestClient) -> None:
    response = client.post(
        "/users/", json={"name": "Alice", "email": "alice@example.com"}, headers=ADMIN
    )
    assert response.status_code == 201
    user = response.json()
    assert user == {
        "id": user["id"],
        "name": "Alice",
        "email": "alice@example.com",
        "age": None,
        "deleted_at": None,
    }

    response = client.put(f"/users/{user['id']}", json={"name": "Alice Smith"}, headers=ADMIN)
    assert response.status_code == 200
    assert response.json() == {**user, "name": "Alice Smith"}

    response = client.get("/users/")
    assert response.status_code == 200
    assert [u["name"] for u in response.json()] == ["Alice Smith"]

    response = client.delete(f"/users/{user['id']}", headers=ADMIN)
    assert response.status_code == 204
    assert client.get("/users/").json() == []
    (deleted,) = client.get("/users/", params={"include_deleted": True}).json()
    assert deleted["deleted_at"] is not None

    response = client.post(f"/users/{user['id']}/restore", headers=ADMIN)
    assert response.status_code == 200
    assert response.json()["deleted_at"] is None
    assert [u["name"] for u in client.get("/users/").json()] == ["Alice Smith"]
    assert audit("users") == [
        ("create", "admin"),
        ("update", "admin"),
        ("soft_delete", "admin"),
        ("restore", "admin"),
    ]


# -- reads ------------------------------------------------------------------------------------


def test_get_one(client: TestClient) -> None:
    user = create_user(client, age=30)
    response = client.get(f"/users/{user['id']}")
    assert response.status_code == 200
    assert response.json() == user
    assert response.headers["etag"].startswith('"')

    assert client.get("/users/424242").status_code == 404
    assert client.delete(f"/users/{user['id']}", headers=ADMIN).status_code == 204
    assert client.get(f"/users/{user['id']}").status_code == 404
    deleted = client.get(f"/users/{user['id']}", params={"include_deleted": "true"})
    assert deleted.status_code == 200 and deleted.json()["deleted_at"] is not None


@pytest.mark.parametrize(
    ("url", "where", "kind"),
    [
        pytest.param("/users/1?include_deleted=perhaps", ["query", "include_deleted"],
                     "bool_parsing", id="bad-include-deleted"),
        pytest.param("/users/one", ["path", "id"], "int_parsing", id="bad-int-key"),
        pytest.param("/samples/not-a-uuid", ["path", "id"], "uuid_parsing", id="bad-uuid-key"),
    ],
)  # fmt: skip
def test_bad_get_parameters_are_422_like_fastapi(
    client: TestClient, url: str, where: list[str], kind: str
) -> None:
    create_user(client)
    response = client.get(url)
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert (error["loc"], error["type"]) == (where, kind)


def test_get_include_deleted_takes_every_boolean_spelling(client: TestClient) -> None:
    user = create_user(client)
    client.delete(f"/users/{user['id']}", headers=ADMIN)
    for yes in ("true", "1", "on", "YES"):
        assert client.get(f"/users/{user['id']}?include_deleted={yes}").status_code == 200
    for no in ("false", "0", "off", "no"):
        assert client.get(f"/users/{user['id']}?include_deleted={no}").status_code == 404


def test_string_and_uuid_keys(client: TestClient) -> None:
    created = client.post("/recipes/", json={"name": "pick", "body": "v1"}, headers=ADMIN)
    assert created.status_code == 201
    assert client.get("/recipes/pick").json() == {"name": "pick", "body": "v1", "deleted_at": None}
    assert client.get("/recipes/place").status_code == 404

    sample = client.post("/samples/", json=SAMPLE, headers=ADMIN).json()
    assert uuid.UUID(sample["id"])
    assert client.get(f"/samples/{sample['id']}").json() == sample
    assert client.get(f"/samples/{uuid.uuid4()}").status_code == 404
    assert client.get(f"/samples/{uuid.UUID(sample['id']).hex}").status_code == 200


# -- create -----------------------------------------------------------------------------------


def test_create_returns_the_stored_record(client: TestClient) -> None:
    response = client.post("/users/", json={"name": "Bob", "age": 7}, headers=ADMIN)
    assert response.status_code == 201
    body = response.json()
    assert body["email"] == ""  # the model's default
    assert response.headers["location"].endswith(f"/users/{body['id']}")
    stored = client.get(response.headers["location"])
    assert stored.json() == body
    assert stored.headers["etag"] == response.headers["etag"]
    assert audit("users") == [("create", "admin")]


def test_create_with_every_column_type(client: TestClient) -> None:
    ref = str(uuid.uuid4())
    payload = {
        "taken_at": "2026-01-02T03:04:05",  # naive: taken as UTC
        "day": "2026-01-02",
        "weight": 1.5,
        "color": "green",
        "ratio": 0.1,
        "active": False,
        "payload": {"a": [1, 2], "b": None},
        "ref": ref,
    }
    response = client.post("/samples/", json=payload, headers=ADMIN)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["taken_at"] in ("2026-01-02T03:04:05Z", "2026-01-02T03:04:05+00:00")
    assert float(body["weight"]) == 1.5
    assert (body["color"], body["active"], body["payload"], body["ref"]) == (
        "green",
        False,
        {"a": [1, 2], "b": None},
        ref,
    )
    for _ in range(2):  # the first read opens the connection for immediate reads on SQLite
        stored = client.get(f"/samples/{body['id']}")
        # The ETag is computed from the stored row (MariaDB keeps FLOAT in single precision).
        assert stored.headers["etag"] == response.headers["etag"]
        assert stored.content == response.content  # the same bytes: one canonical rendering
    assert client.get("/samples/").json() == [body]


def test_infinite_floats_stored_by_python_code_are_served_as_null(
    client: TestClient, backend: str
) -> None:
    if backend == "mariadb":
        pytest.skip("MariaDB cannot store an infinite DOUBLE")
    samples = ModelAccessor(Sample, "samples")
    stored = samples.insert(
        Sample(
            taken_at=datetime(2026, 1, 2, tzinfo=UTC),
            day=date(2026, 1, 2),
            weight=Decimal("1.5"),
            ratio=float("inf"),
        )
    )
    for _ in range(2):
        one = client.get(f"/samples/{stored.id}")
        assert one.status_code == 200 and one.json()["ratio"] is None
    assert client.get("/samples/").json()[0]["ratio"] is None


@pytest.mark.parametrize(
    ("path", "body", "loc", "kind"),
    [
        pytest.param("/users/", {"name": 5}, ["body", "name"], "string_type", id="int-for-str"),
        pytest.param("/users/", {"name": "A", "age": "30"}, ["body", "age"], "int_type",
                     id="str-for-int"),
        pytest.param("/users/", {"name": "A", "age": True}, ["body", "age"], "int_type",
                     id="bool-for-int"),
        pytest.param("/users/", {"name": "A", "age": 1.5}, ["body", "age"], "int_type",
                     id="float-for-int"),
        pytest.param("/users/", {}, ["body", "name"], "missing", id="missing-required"),
        pytest.param("/users/", {"name": None}, ["body", "name"], "string_type",
                     id="null-for-required"),
        pytest.param("/users/", {"name": "x" * 101}, ["body", "name"], "string_too_long",
                     id="too-long"),
        pytest.param("/users/", {"name": "A", "nope": 1}, ["body", "nope"], "extra_forbidden",
                     id="unknown-field"),
        pytest.param("/users/", {"name": "A", "id": 9}, ["body", "id"], "extra_forbidden",
                     id="generated-key"),
        pytest.param("/users/", {"name": "A", "deleted_at": None}, ["body", "deleted_at"],
                     "extra_forbidden", id="server-managed"),
        pytest.param("/users/", [{"name": "A"}], ["body"], "model_attributes_type",
                     id="not-an-object"),
        pytest.param("/gadgets/", {"serial": "S", "owner_id": "x"}, ["body", "owner_id"],
                     "int_type", id="bad-foreign-key-type"),
        pytest.param("/samples/", {**SAMPLE, "ref": "nope"}, ["body", "ref"], "uuid_parsing",
                     id="bad-uuid"),
        pytest.param("/samples/", {**SAMPLE, "color": "blue"}, ["body", "color"], "enum",
                     id="bad-enum"),
        pytest.param("/samples/", {**SAMPLE, "day": "2026-13-01"}, ["body", "day"],
                     "date_from_datetime_parsing", id="bad-date"),
        pytest.param("/samples/", {**SAMPLE, "weight": "12345678"}, ["body", "weight"],
                     "decimal_whole_digits", id="decimal-too-big"),
        pytest.param("/samples/", {**SAMPLE, "weight": "1.2345"}, ["body", "weight"],
                     "decimal_max_places", id="decimal-too-precise"),
        pytest.param("/samples/", {**SAMPLE, "payload": [1]}, ["body", "payload"], "dict_type",
                     id="json-not-object"),
        pytest.param("/samples/", {**SAMPLE, "active": "yes"}, ["body", "active"], "bool_type",
                     id="str-for-bool"),
        pytest.param("/samples/", {**SAMPLE, "ratio": float("nan")}, ["body", "ratio"],
                     "float_type", id="nan"),
        pytest.param("/samples/", {**SAMPLE, "weight": float("inf")}, ["body", "weight"],
                     "finite_number", id="infinity"),
    ],
)  # fmt: skip
def test_invalid_create_bodies_are_422_and_store_nothing(
    client: TestClient, path: str, body: Any, loc: list[str], kind: str
) -> None:
    before = state()
    # Sent as text: httpx refuses to encode NaN, which Python's JSON parser accepts.
    content = json.dumps(body).encode()
    headers = {**ADMIN, "Content-Type": "application/json"}
    response = client.post(path, content=content, headers=headers)
    assert response.status_code == 422
    errors = response.json()["detail"]
    assert any(e["loc"] == loc and e["type"] == kind and e["msg"] for e in errors), errors
    assert state() == before


def test_invalid_json_is_422(client: TestClient) -> None:
    response = client.post(
        "/users/", content=b"{not json", headers={**ADMIN, "Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert state()["User"] == []


def test_database_errors_do_not_leak_sql(client: TestClient) -> None:
    assert client.post("/gadgets/", json={"serial": "S-17"}, headers=ADMIN).status_code == 201
    before = state()
    duplicate = client.post("/gadgets/", json={"serial": "S-17"}, headers=ADMIN)
    orphan = client.post("/gadgets/", json={"serial": "S-18", "owner_id": 424242}, headers=ADMIN)
    for response in (duplicate, orphan):
        assert response.status_code == 409
        detail = response.json()["detail"]
        assert "constraint" in detail
        for leak in ("INSERT", "S-1", "424242", "VALUES", "%s", "?"):
            assert leak not in detail
    assert state() == before


def test_a_hook_refusing_a_record_is_422() -> None:
    users = ModelAccessor(User, "users")

    @users.before_insert()
    @users.before_update()
    def validate_email(session: Any, user: User) -> None:
        if "@" not in user.email:
            raise ValueError("Invalid email")

    client = client_for(users)
    before = state()
    for method, path in (("POST", "/users/"), ("PUT", "/users/5")):
        refused = client.request(method, path, json={"name": "A", "email": "x"}, headers=ADMIN)
        assert refused.status_code == 422 and refused.json()["detail"] == "Invalid email"
    assert state() == before
    user = create_user(client, email="a@b.c")
    refused = client.patch(f"/users/{user['id']}", json={"email": "nope"}, headers=ADMIN)
    assert refused.status_code == 422
    assert client.get(f"/users/{user['id']}").json() == user


# -- X-User -----------------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [{}, {"X-User": "   "}], ids=["missing", "blank"])
@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        pytest.param("POST", "/users/", {"name": "Bob"}, id="create"),
        pytest.param("PUT", "/users/{id}", {"name": "Bob"}, id="put-update"),
        pytest.param("PUT", "/users/999", {"name": "Bob"}, id="put-create"),
        pytest.param("PATCH", "/users/{id}", {"name": "Bob"}, id="patch"),
        pytest.param("DELETE", "/users/{id}", None, id="delete"),
        pytest.param("POST", "/users/{id}/restore", None, id="restore"),
    ],
)
def test_mutations_require_x_user(
    client: TestClient, method: str, path: str, body: Any, headers: dict[str, str]
) -> None:
    user = create_user(client)
    before = state()
    response = client.request(method, path.format(id=user["id"]), json=body, headers=headers)
    assert response.status_code == 400
    assert "X-User" in response.json()["detail"]
    assert state() == before


# -- PUT --------------------------------------------------------------------------------------


def test_put_updates_only_the_fields_sent(client: TestClient) -> None:
    user = create_user(client, email="a@x.io", age=30)
    response = client.put(f"/users/{user['id']}", json={"age": 31}, headers={"X-User": "ops"})
    assert response.status_code == 200
    assert response.json() == {**user, "age": 31}
    assert audit("users")[-1] == ("update", "ops")


def test_put_accepts_a_record_read_back_with_get(client: TestClient) -> None:
    user = create_user(client)
    record = client.get(f"/users/{user['id']}").json()
    response = client.put(f"/users/{user['id']}", json={**record, "name": "Al"}, headers=ADMIN)
    assert response.status_code == 200
    assert response.json() == {**record, "name": "Al"}


def test_put_creates_with_every_required_field(client: TestClient) -> None:
    response = client.put("/users/77", json={"name": "Pat"}, headers=ADMIN)
    assert response.status_code == 201
    assert response.json() == {
        "id": 77, "name": "Pat", "email": "", "age": None, "deleted_at": None
    }  # fmt: skip
    assert response.headers["location"].endswith("/users/77")
    assert client.get("/users/77").headers["etag"] == response.headers["etag"]

    assert client.put("/recipes/pick", json={"body": "v1"}, headers=ADMIN).status_code == 201
    assert client.put("/recipes/pick", json={"body": "v2"}, headers=ADMIN).status_code == 200
    assert client.get("/recipes/pick").json()["body"] == "v2"

    key = str(uuid.uuid4())
    created = client.put(f"/samples/{key}", json={**SAMPLE, "id": key}, headers=ADMIN)
    assert created.status_code == 201 and created.json()["id"] == key
    assert client.put("/gadgets/5", json={"serial": "G5"}, headers=ADMIN).status_code == 201
    assert audit("users") == [("create", "admin")]
    assert audit("recipes") == [("create", "admin"), ("update", "admin")]


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        pytest.param("/users/78", {"email": "a@b.c"}, "missing", id="create-missing-required"),
        pytest.param("/samples/{uuid}", {"day": "2026-01-02"}, "missing",
                     id="create-missing-several"),
        pytest.param("/recipes/{long}", {"body": "x"}, "string_too_long", id="key-too-long"),
        pytest.param("/users/{id}", {"id": 999, "name": "x"}, "differs", id="key-mismatch"),
        pytest.param("/users/{id}", {"age": "old"}, "int_type", id="wrong-type"),
        pytest.param("/users/{id}", {"nope": 1}, "extra_forbidden", id="unknown-field"),
        pytest.param("/users/{id}", {"name": None}, "string_type", id="null-for-required"),
    ],
)  # fmt: skip
def test_invalid_puts_are_422_and_change_nothing(
    client: TestClient, path: str, body: dict[str, Any], message: str
) -> None:
    user = create_user(client)
    before = state()
    url = path.format(id=user["id"], uuid=uuid.uuid4(), long="r" * 101)
    response = client.put(url, json=body, headers=ADMIN)
    assert response.status_code == 422
    assert message in str(response.json()["detail"])
    assert state() == before


def test_put_on_a_soft_deleted_record_is_409(client: TestClient) -> None:
    user = create_user(client)
    client.delete(f"/users/{user['id']}", headers=ADMIN)
    before = state()
    response = client.put(f"/users/{user['id']}", json={"name": "Back"}, headers=ADMIN)
    assert response.status_code == 409
    assert "restore" in response.json()["detail"]
    assert state() == before


# -- PATCH ------------------------------------------------------------------------------------


def test_patch_changes_the_fields_sent(client: TestClient) -> None:
    user = create_user(client, email="a@x.io", age=30)
    response = client.patch(f"/users/{user['id']}", json={"age": None}, headers={"X-User": "ops"})
    assert response.status_code == 200
    assert response.json() == {**user, "age": None}
    with database.read_session() as session:
        row = session.scalars(select(AuditLog).order_by(AuditLog.id.desc())).first()  # type: ignore[union-attr]
    assert row is not None and (row.operation, row.actor) == ("update", "ops")
    assert row.before is not None and row.before["age"] == 30
    assert row.after is not None and row.after["age"] is None


def test_patch_with_an_empty_body_writes_nothing(client: TestClient) -> None:
    user = create_user(client)
    before = state()
    response = client.patch(f"/users/{user['id']}", json={}, headers=ADMIN)
    assert response.status_code == 200 and response.json() == user
    assert state() == before


def test_writes_that_change_nothing_write_nothing(client: TestClient) -> None:
    """PUT or PATCH with the stored values: no audit row, no change, the same ETag; on every
    kind of column (dates, decimals, JSON, enums, UUIDs)."""
    payload = {**SAMPLE, "payload": {"a": [1, 2]}, "ref": str(uuid.uuid4())}
    created = client.post("/samples/", json=payload, headers=ADMIN)
    sample, etag = created.json(), created.headers["ETag"]
    url = f"/samples/{sample['id']}"
    body = {name: value for name, value in sample.items() if name != "id"}
    before = state()
    for method, sent in (("PATCH", body), ("PUT", body), ("PATCH", {"ratio": sample["ratio"]})):
        response = client.request(method, url, json=sent, headers={**ADMIN, "If-Match": etag})
        assert (response.status_code, response.json()) == (200, sample), method
        assert response.headers["ETag"] == etag
    assert state() == before
    changed = client.patch(url, json={"ratio": 0.75}, headers=ADMIN)
    assert changed.status_code == 200 and changed.headers["ETag"] != etag


@pytest.mark.parametrize(
    ("body", "status"),
    [
        pytest.param({"id": 5}, 422, id="primary-key"),
        pytest.param({"deleted_at": None}, 422, id="deleted-at"),
        pytest.param({"name": None}, 422, id="null-for-required"),
        pytest.param({"age": "3"}, 422, id="wrong-type"),
        pytest.param({"nope": 1}, 422, id="unknown-field"),
    ],
)
def test_invalid_patches_change_nothing(client: TestClient, body: Any, status: int) -> None:
    user = create_user(client)
    before = state()
    assert client.patch(f"/users/{user['id']}", json=body, headers=ADMIN).status_code == status
    assert state() == before


def test_patch_missing_or_deleted_is_404(client: TestClient) -> None:
    user = create_user(client)
    assert client.patch("/users/424242", json={"age": 1}, headers=ADMIN).status_code == 404
    client.delete(f"/users/{user['id']}", headers=ADMIN)
    before = state()
    assert client.patch(f"/users/{user['id']}", json={"age": 1}, headers=ADMIN).status_code == 404
    assert state() == before


# -- DELETE and restore -----------------------------------------------------------------------


def test_soft_delete_keeps_the_row(client: TestClient) -> None:
    user = create_user(client)
    response = client.delete(f"/users/{user['id']}", headers={"X-User": "ops"})
    assert response.status_code == 204 and response.content == b""
    (row,) = state()["User"]
    assert row["deleted_at"] is not None
    assert client.delete(f"/users/{user['id']}", headers=ADMIN).status_code == 404
    assert client.delete("/users/424242", headers=ADMIN).status_code == 404
    assert audit("users") == [("create", "admin"), ("soft_delete", "ops")]


def test_hard_delete(client: TestClient) -> None:
    gadget = client.post("/gadgets/", json={"serial": "G1"}, headers=ADMIN).json()
    assert client.delete(f"/gadgets/{gadget['id']}", headers=ADMIN).status_code == 204
    assert state()["Gadget"] == []
    assert client.delete(f"/gadgets/{gadget['id']}", headers=ADMIN).status_code == 404
    assert audit("gadgets") == [("create", "admin"), ("delete", "admin")]


def test_restore(client: TestClient) -> None:
    user = create_user(client)
    assert client.post("/users/424242/restore", headers=ADMIN).status_code == 404
    before = state()
    live = client.post(f"/users/{user['id']}/restore", headers=ADMIN)
    assert live.status_code == 200 and live.json() == user  # not deleted: nothing written
    assert state() == before

    gadget = client.post("/gadgets/", json={"serial": "G1"}, headers=ADMIN).json()
    before = state()
    refused = client.post(f"/gadgets/{gadget['id']}/restore", headers=ADMIN)
    assert refused.status_code == 409 and "restore" in refused.json()["detail"]
    assert client.post("/gadgets/424242/restore", headers=ADMIN).status_code == 409
    assert state() == before


# -- malformed ids ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        pytest.param("GET", "/users/abc", id="get-text-for-int"),
        pytest.param("GET", "/users/1.5", id="get-fraction"),
        pytest.param("GET", f"/users/{2**70}", id="get-beyond-64-bit"),
        pytest.param("PUT", f"/users/{2**70}", id="put-beyond-64-bit"),
        pytest.param("PATCH", "/users/abc", id="patch-text"),
        pytest.param("DELETE", "/users/1e3", id="delete-exponent"),
        pytest.param("POST", "/users/abc/restore", id="restore-text"),
        pytest.param("GET", "/samples/not-a-uuid", id="get-bad-uuid"),
        pytest.param("DELETE", "/samples/1234", id="delete-bad-uuid"),
    ],
)
def test_malformed_ids_are_422(client: TestClient, method: str, path: str) -> None:
    create_user(client)
    before = state()
    body = {"name": "x"} if method in ("PUT", "PATCH") else None
    response = client.request(method, path, json=body, headers=ADMIN)
    assert response.status_code == 422, response.text
    assert state() == before


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE"])
def test_ids_beyond_the_column_are_never_a_server_error(
    client: TestClient, backend: str, method: str
) -> None:
    body = {"name": "x"} if method in ("PUT", "PATCH") else None
    response = client.request(method, "/users/99999999999", json=body, headers=ADMIN)
    if backend == "sqlite":  # SQLite integers are 64-bit
        assert response.status_code == {"PUT": 201}.get(method, 404)
    else:
        assert response.status_code == 422
        assert "out of range" in response.json()["detail"]


# -- ETag and If-Match ------------------------------------------------------------------------


def test_etags_follow_the_stored_row(client: TestClient) -> None:
    created = client.post("/users/", json={"name": "Alice"}, headers=ADMIN)
    url = created.headers["location"]
    etag = created.headers["etag"]
    assert client.get(url).headers["etag"] == etag
    patched = client.patch(url, json={"age": 3}, headers=ADMIN)
    assert patched.headers["etag"] != etag
    assert client.get(url).headers["etag"] == patched.headers["etag"]
    put = client.put(url, json={"age": 4}, headers=ADMIN)
    assert client.get(url).headers["etag"] == put.headers["etag"] != patched.headers["etag"]
    client.delete(url, headers=ADMIN)
    restored = client.post(f"{url}/restore", headers=ADMIN)
    assert client.get(url).headers["etag"] == restored.headers["etag"] == put.headers["etag"]


@pytest.mark.parametrize(
    ("method", "suffix", "body", "deleted"),
    [
        pytest.param("PUT", "", {"age": 9}, False, id="put"),
        pytest.param("PATCH", "", {"age": 9}, False, id="patch"),
        pytest.param("DELETE", "", None, False, id="delete"),
        pytest.param("POST", "/restore", None, True, id="restore"),
    ],
)
def test_if_match(client: TestClient, method: str, suffix: str, body: Any, deleted: bool) -> None:
    user = create_user(client)
    url = f"/users/{user['id']}"
    client.patch(url, json={"age": 1}, headers=ADMIN)
    if deleted:
        client.delete(url, headers=ADMIN)
    current = client.get(url, params={"include_deleted": True}).headers["etag"]
    stale = client.post("/users/", json={"name": "other"}, headers=ADMIN).headers["etag"]
    before = state()
    for header in (stale, f"W/{current}", f'{stale}, "nope"'):
        response = client.request(
            method, url + suffix, json=body, headers={**ADMIN, "If-Match": header}
        )
        assert response.status_code == 412, header
        assert "changed" in response.json()["detail"]
    assert state() == before
    for form in ("in-a-list", "unquoted", "star"):
        header = {"in-a-list": f'"nope", {current}', "unquoted": current.strip('"')}.get(form, "*")
        response = client.request(
            method, url + suffix, json=body, headers={**ADMIN, "If-Match": header}
        )
        assert response.status_code in (200, 204), (header, response.text)
        # Put the row back the way this test needs it, then read its new ETag.
        if method == "DELETE":
            client.post(f"{url}/restore", headers=ADMIN)
        elif deleted:
            client.delete(url, headers=ADMIN)
        current = client.get(url, params={"include_deleted": True}).headers["etag"]


def test_concurrent_writers_with_the_same_etag_cannot_both_win(client: TestClient) -> None:
    user = create_user(client)
    url = f"/users/{user['id']}"
    etag = client.get(url).headers["etag"]
    workers = 6
    barrier = threading.Barrier(workers)
    statuses: list[int] = []

    def patch(age: int) -> None:
        barrier.wait()
        headers = {**ADMIN, "If-Match": etag}
        statuses.append(client.patch(url, json={"age": age}, headers=headers).status_code)

    threads = [threading.Thread(target=patch, args=(age,)) for age in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200] + [412] * (workers - 1)
    assert audit("users") == [("create", "admin"), ("update", "admin")]


def test_put_preconditions_on_missing_and_existing_records(client: TestClient) -> None:
    before = state()
    for header in ('"x"', "*"):
        refused = client.put("/users/50", json={"name": "x"}, headers={**ADMIN, "If-Match": header})
        assert refused.status_code == 412 and "does not exist" in refused.json()["detail"]
    assert state() == before
    create_only = {**ADMIN, "If-None-Match": "*"}
    assert client.put("/users/50", json={"name": "x"}, headers=create_only).status_code == 201
    before = state()
    again = client.put("/users/50", json={"name": "y"}, headers=create_only)
    assert again.status_code == 412 and "already exists" in again.json()["detail"]
    assert state() == before


def test_get_if_none_match(client: TestClient) -> None:
    user = create_user(client)
    url = f"/users/{user['id']}"
    etag = client.get(url).headers["etag"]
    cached = client.get(url, headers={"If-None-Match": f"W/{etag}"})
    assert cached.status_code == 304 and cached.content == b""
    assert cached.headers["etag"] == etag
    assert client.get(url, headers={"If-None-Match": '"old"'}).status_code == 200


# -- max_records ------------------------------------------------------------------------------


def test_max_records_caps_live_rows() -> None:
    users = ModelAccessor(User, "users")
    client = client_for(users, max_records=2)
    first = create_user(client)
    create_user(client)
    before = state()
    for method, path in (("POST", "/users/"), ("PUT", "/users/90")):
        refused = client.request(method, path, json={"name": "C"}, headers=ADMIN)
        assert refused.status_code == 409
        detail = refused.json()["detail"]
        assert detail.startswith("users already holds the maximum of 2 records")
        assert "max_records_per_model" in detail  # says how to lift it
    assert state() == before

    assert client.put(f"/users/{first['id']}", json={"age": 5}, headers=ADMIN).status_code == 200
    assert client.delete(f"/users/{first['id']}", headers=ADMIN).status_code == 204
    create_user(client)  # soft-deleted rows do not count
    before = state()
    restore = client.post(f"/users/{first['id']}/restore", headers=ADMIN)
    assert restore.status_code == 409  # a restored row would count again
    assert state() == before


@pytest.mark.parametrize(
    ("cap", "created"), [pytest.param(0, 0, id="zero"), pytest.param(None, 8, id="none")]
)
def test_max_records_extremes(cap: int | None, created: int) -> None:
    client = client_for(ModelAccessor(User, "users"), max_records=cap)
    statuses = [
        client.post("/users/", json={"name": f"u{i}"}, headers=ADMIN).status_code for i in range(8)
    ]
    assert statuses.count(201) == created and statuses.count(409) == 8 - created


def test_max_records_holds_under_concurrent_creates() -> None:
    cap, workers = 5, 12
    client = client_for(ModelAccessor(User, "users"), max_records=cap)
    barrier = threading.Barrier(workers)
    statuses: list[int] = []

    def create(i: int) -> None:
        barrier.wait()
        body = {"name": f"u{i}"}
        if i % 2:
            response = client.post("/users/", json=body, headers=ADMIN)
        else:
            # Far from the keys the concurrent POSTs get (SQLite: the largest key + 1).
            response = client.put(f"/users/{-1000 * (i + 1)}", json=body, headers=ADMIN)
        statuses.append(response.status_code)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [201] * cap + [409] * (workers - cap)
    assert len(state()["User"]) == cap
    assert audit("users") == [("create", "admin")] * cap


# -- listing ----------------------------------------------------------------------------------


@pytest.fixture
def people(client: TestClient) -> list[dict[str, Any]]:
    rows = [
        ("Alice", 30), ("bob", None), ("Carol", 40), ("Dave", 30), ("Eve", 25), ("Frank", None),
    ]  # fmt: skip
    made = [create_user(client, name=name, age=age) for name, age in rows]
    client.delete(f"/users/{made[4]['id']}", headers=ADMIN)
    return made


def names(response: Any) -> list[str]:
    assert response.status_code == 200, response.text
    return [row["name"] for row in response.json()]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        pytest.param({}, ["Alice", "bob", "Carol", "Dave", "Frank"], id="all"),
        pytest.param({"include_deleted": "true"}, ["Alice", "bob", "Carol", "Dave", "Eve", "Frank"],
                     id="include-deleted"),
        pytest.param({"limit": 2}, ["Alice", "bob"], id="limit"),
        pytest.param({"limit": 2, "offset": 3}, ["Dave", "Frank"], id="offset"),
        pytest.param({"sort": "-age"}, ["bob", "Frank", "Carol", "Alice", "Dave"],
                     id="sort-nulls-first"),
        pytest.param({"sort": "age"}, ["Alice", "Dave", "Carol", "bob", "Frank"],
                     id="sort-nulls-last"),
        pytest.param({"age": "30"}, ["Alice", "Dave"], id="eq"),
        pytest.param({"age__ne": "30"}, ["bob", "Carol", "Frank"], id="ne"),
        pytest.param({"age__gte": "30", "age__lt": "40"}, ["Alice", "Dave"], id="range"),
        pytest.param({"name__in": "Carol,Eve,Zed"}, ["Carol"], id="in"),
        pytest.param({"name__ilike": "%A%"}, ["Alice", "Carol", "Dave", "Frank"], id="ilike"),
        pytest.param({"age__isnull": "true"}, ["bob", "Frank"], id="isnull"),
        pytest.param({"deleted_at__isnull": "false", "include_deleted": "1"}, ["Eve"],
                     id="only-deleted"),
    ],
)  # fmt: skip
def test_list_queries(
    client: TestClient, people: list[dict[str, Any]], params: dict[str, Any], expected: list[str]
) -> None:
    assert names(client.get("/users/", params=params)) == expected


@pytest.mark.parametrize(
    ("params", "message"),
    [
        pytest.param({"nope": "1"}, "unknown query parameter 'nope'", id="unknown-field"),
        pytest.param({"age__near": "1"}, "unknown operator 'near'", id="unknown-operator"),
        pytest.param({"age": "old"}, "not a valid value for age", id="bad-value"),
        pytest.param({"age__isnull": "perhaps"}, "true or false", id="bad-isnull"),
        pytest.param({"sort": "nope"}, "unknown sort field", id="bad-sort"),
        pytest.param({"limit": "0"}, "greater than or equal to 1", id="limit-zero"),
        pytest.param({"limit": "1001"}, "less than or equal to 1000", id="limit-over-max"),
        pytest.param({"offset": "-1"}, "greater than or equal to 0", id="negative-offset"),
        pytest.param({"cursor": "garbage!"}, "not valid", id="bad-cursor"),
        pytest.param({"include_deleted": "perhaps"}, "bool", id="bad-include-deleted"),
    ],
)
def test_bad_list_queries_are_422(
    client: TestClient, people: list[dict[str, Any]], params: dict[str, str], message: str
) -> None:
    response = client.get("/users/", params=params)
    assert response.status_code == 422
    assert message in str(response.json()["detail"])


def test_total_count_header(client: TestClient, people: list[dict[str, Any]]) -> None:
    plain = client.get("/users/", params={"limit": 1})
    assert "x-total-count" not in plain.headers
    counted = client.get("/users/", params={"limit": 1, "count": "true", "age__isnull": "false"})
    assert counted.headers["x-total-count"] == "3"
    assert len(counted.json()) == 1


def next_link(response: Any) -> str | None:
    link = response.headers.get("link")
    if link is None:
        return None
    target, rel = link.split(";")
    assert rel.strip() == 'rel="next"'
    return str(target.strip().removeprefix("<").removesuffix(">"))


@pytest.mark.parametrize("sort", ["", "-id", "age", "-age,name", "name"])
def test_cursor_paging_returns_every_row_once(client: TestClient, sort: str) -> None:
    users = ModelAccessor(User, "users")
    users.insert_many([User(name=f"u{i:02}", age=(i % 4) * 10 or None) for i in range(23)])
    everything = [u["id"] for u in client.get("/users/", params={"sort": sort}).json()]
    assert len(everything) == 23

    seen: list[int] = []
    url: str | None = "/users/?" + "&".join(
        [f"sort={sort}", "limit=5", "age__isnull=false", "count=true"]
    )
    pages = 0
    while url is not None:
        response = client.get(url)
        assert response.status_code == 200
        assert response.headers["x-total-count"] == "17"
        seen.extend(u["id"] for u in response.json())
        url = next_link(response)
        if url is not None:
            query = parse_qs(urlsplit(url).query)
            assert query["cursor"] == [response.headers["x-next-cursor"]]
            assert query["age__isnull"] == ["false"] and query["limit"] == ["5"]
        pages += 1
    listed = client.get("/users/", params={"sort": sort, "age__isnull": "false"}).json()
    with_age = [u["id"] for u in listed]
    assert seen == with_age and len(set(seen)) == 17 and pages == 4


def test_offset_pages_link_to_a_cursor(client: TestClient, people: list[dict[str, Any]]) -> None:
    first = client.get("/users/", params={"limit": 2, "offset": 1})
    assert names(first) == ["bob", "Carol"]
    url = next_link(first)
    assert url is not None and "offset" not in url
    assert names(client.get(url)) == ["Dave", "Frank"]
    last = client.get("/users/", params={"limit": 2, "offset": 3})
    assert next_link(last) is None and "x-next-cursor" not in last.headers


def test_cursor_misuse_is_422(client: TestClient, people: list[dict[str, Any]]) -> None:
    cursor = client.get("/users/", params={"limit": 2, "sort": "age"}).headers["x-next-cursor"]
    other_sort = client.get("/users/", params={"cursor": cursor, "sort": "-age"})
    assert other_sort.status_code == 422 and "another sort" in other_sort.json()["detail"]
    with_offset = client.get("/users/", params={"cursor": cursor, "sort": "age", "offset": 1})
    assert with_offset.status_code == 422
    assert "either offset or cursor" in with_offset.json()["detail"]


def test_list_limits_are_configurable() -> None:
    client = client_for(ModelAccessor(User, "users"), default_limit=2, max_limit=3)
    for i in range(5):
        create_user(client, name=f"u{i}")
    assert len(client.get("/users/").json()) == 2
    assert len(client.get("/users/", params={"limit": 3}).json()) == 3
    assert client.get("/users/", params={"limit": 4}).status_code == 422


# -- options, auth and OpenAPI ----------------------------------------------------------------


def deny(status: int) -> Depends:
    def dependency() -> None:
        raise HTTPException(status_code=status, detail="no")

    return Depends(dependency)


def test_auth_dependencies_guard_reads_and_writes() -> None:
    users = ModelAccessor(User, "users")
    alice = users.insert(User(name="Alice"))
    client = client_for(users, auth=RouteAuth(read=[deny(401)], write=[deny(403)]))
    for method, path, status in [
        ("GET", "/users/", 401),
        ("GET", f"/users/{alice.id}", 401),
        ("POST", "/users/", 403),
        ("PUT", f"/users/{alice.id}", 403),
        ("PATCH", f"/users/{alice.id}", 403),
        ("DELETE", f"/users/{alice.id}", 403),
        ("POST", f"/users/{alice.id}/restore", 403),
    ]:
        response = client.request(method, path, json={"name": "x"}, headers=ADMIN)
        assert response.status_code == status, (method, path)
    assert [u.name for u in users.all()] == ["Alice"]


def test_read_only_fields() -> None:
    client = client_for(ModelAccessor(User, "users"), read_only_fields=["email"])
    refused = client.post("/users/", json={"name": "A", "email": "a@b.c"}, headers=ADMIN)
    assert refused.status_code == 422
    user = create_user(client)
    patch = client.patch(f"/users/{user['id']}", json={"email": "x"}, headers=ADMIN)
    assert patch.status_code == 422
    put = client.put(f"/users/{user['id']}", json={"email": "x", "age": 2}, headers=ADMIN)
    assert put.status_code == 200 and put.json() == {**user, "age": 2}


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"default_limit": 0}, id="default-limit-zero"),
        pytest.param({"default_limit": 20, "max_limit": 10}, id="default-over-max"),
        pytest.param({"read_only_fields": ["nope"]}, id="unknown-read-only-field"),
        pytest.param({"max_records": -1}, id="negative-cap"),
    ],
)
def test_bad_options(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        build_crud_router(ModelAccessor(User, "users"), **options)


def test_bootstrap_style_call() -> None:
    """bootstrap() calls build_crud_router(accessor, max_records=..., **router_options)."""
    options: dict[str, Any] = {"default_limit": 2, "auth": None, "tags": ["people"]}
    router = build_crud_router(ModelAccessor(User, "users"), max_records=5, **options)
    assert {route.path for route in router.routes} == {  # type: ignore[attr-defined]
        "/users/",
        "/users/changes",
        "/users/{id}",
        "/users/{id}/restore",
        "/users/{id}/purge",
    }


def test_openapi_shows_the_real_fields(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    assert set(schemas["UserCreate"]["properties"]) == {"name", "email", "age"}
    assert schemas["UserCreate"]["required"] == ["name"]
    assert schemas["UserCreate"]["additionalProperties"] is False
    assert "required" not in schemas["UserUpdate"]
    assert set(schemas["UserReplace"]["properties"]) == {"id", "name", "email", "age", "deleted_at"}
    assert set(schemas["UserRead"]["required"]) == {"id", "name", "email", "age", "deleted_at"}
    assert schemas["RecipeCreate"]["required"] == ["name"]
    assert set(schemas["SampleCreate"]["required"]) == {"taken_at", "day", "weight"}

    paths = spec["paths"]
    listing = paths["/users/"]["get"]
    parameters = {p["name"]: p for p in listing["parameters"]}
    expected = {"limit", "offset", "cursor", "sort", "include_deleted", "count", "age", "name"}
    assert expected <= set(parameters)
    assert parameters["limit"]["schema"]["maximum"] == 1000
    assert listing["responses"]["200"]["content"]["application/json"]["schema"]["items"] == {
        "$ref": "#/components/schemas/UserRead"
    }
    one = paths["/users/{id}"]
    assert one["get"]["parameters"][0]["schema"]["type"] == "integer"
    read_parameters = {(p["name"], p["in"]): p for p in one["get"]["parameters"]}
    assert set(read_parameters) == {("id", "path"), ("include_deleted", "query"),
                                    ("If-None-Match", "header")}  # fmt: skip
    assert read_parameters["include_deleted", "query"]["schema"]["type"] == "boolean"
    sample_id = paths["/samples/{id}"]["get"]["parameters"][0]["schema"]
    assert sample_id["format"] == "uuid"
    assert {"200", "201", "409", "412", "422"} <= set(one["put"]["responses"])
    assert set(one["delete"]["responses"]) >= {"204", "404", "412"}
    assert one["patch"]["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/UserUpdate"
    }


def test_locations_keep_the_prefix_the_router_is_mounted_under() -> None:
    app = FastAPI()
    app.include_router(build_crud_router(ModelAccessor(Recipe, "recipes")), prefix="/api/v1")
    client = TestClient(app, root_path="/plant")
    posted = client.post("/api/v1/recipes/", json={"name": "pick one"}, headers=ADMIN)
    put = client.put("/api/v1/recipes/placeé", json={"body": "x"}, headers=ADMIN)
    assert posted.headers["location"] == "http://testserver/plant/api/v1/recipes/pick%20one"
    assert put.status_code == 201
    assert put.headers["location"] == "http://testserver/plant/api/v1/recipes/place%C3%A9"


@pytest.mark.parametrize(
    ("name", "status"),
    [
        pytest.param("", 422, id="empty"),
        pytest.param("a/b", 422, id="slash"),
        pytest.param("grip\U0002f81f", 201, id="non-latin-1"),
        pytest.param("pick place?#", 201, id="reserved-characters"),
    ],
)
def test_client_chosen_keys_must_be_one_path_segment(
    client: TestClient, name: str, status: int
) -> None:
    response = client.post("/recipes/", json={"name": name}, headers=ADMIN)
    assert response.status_code == status, response.text
    if status == 201:
        location = response.headers["Location"]
        assert location.isascii()
        assert client.get(location).json()["name"] == name


def test_the_actor_is_the_identity_the_apps_auth_found(backend: str) -> None:
    def login(request: Request, x_token: str | None = Header(default=None)) -> None:
        if x_token != "alice-token":
            raise HTTPException(status_code=401, detail="log in")
        request.state.actor = "alice"  # who the token says, not who the client claims

    users = ModelAccessor(User, "users")
    client = client_for(users, auth=RouteAuth.every(Depends(login)))
    token = {"X-Token": "alice-token"}
    created = client.post("/users/", json={"name": "Ada"}, headers={**token, "X-User": "mallory"})
    assert created.status_code == 201
    updated = client.patch(f"/users/{created.json()['id']}", json={"age": 3}, headers=token)
    assert updated.status_code == 200  # no X-User needed once the app knows who calls
    with database.read_session() as session:
        actors = session.scalars(select(AuditLog.actor).order_by(AuditLog.id)).all()
    assert actors == ["alice", "alice"]

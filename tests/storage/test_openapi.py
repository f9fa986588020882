"""The OpenAPI document the routers give (``storage._openapi`` and ``StorageRoute``): operation
ids, required and optional headers, response headers, downloads, typed filter parameters and
Read models. A generated client used against a live server: tests/examples."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from storage import bootstrap
from storage._openapi import BINARY, resource_names
from storage.accessor import ModelAccessor
from storage.router_database import build_db_router
from storage.router_model import build_crud_router
from support.models import Recipe, Sample, User


def spec_of(*routers: Any) -> dict[str, Any]:
    app = FastAPI()
    for router in routers:
        app.include_router(router)
    return app.openapi()


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    users = build_crud_router(ModelAccessor(User, "users"))
    samples = build_crud_router(ModelAccessor(Sample, "samples"))
    return spec_of(users, samples, build_db_router())


def operation(spec: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    found: dict[str, Any] = spec["paths"][path][method]
    return found


@pytest.mark.parametrize(
    ("model", "component", "expected"),
    [
        pytest.param("Workcell", "workcells", ("workcell", "workcells"), id="plural-component"),
        pytest.param("Tool", "tool", ("tool", "tools"), id="singular-component"),
        pytest.param("Category", "categories", ("category", "categories"), id="y-ies"),
        pytest.param("Box", "boxes", ("box", "boxes"), id="x-es"),
        pytest.param("WorkCell", "work-cells", ("work_cell", "work_cells"), id="camel-and-dash"),
        pytest.param("HTTPLog", "http_logs", ("http_log", "http_logs"), id="acronym"),
        pytest.param("UserAccount", "users", ("user", "users"), id="other-component"),
        pytest.param("Staff", "crew", ("crew", "crews"), id="other-singular-component"),
    ],
)
def test_resource_names(model: str, component: str, expected: tuple[str, str]) -> None:
    assert resource_names(model, component) == expected


@pytest.mark.parametrize(
    "override",
    [
        pytest.param(("person", "person"), id="same-twice"),
        pytest.param(("a person", "people"), id="not-an-identifier"),
    ],
)
def test_bad_operation_names_are_refused(override: tuple[str, str]) -> None:
    with pytest.raises(ValueError, match="two different identifiers"):
        build_crud_router(ModelAccessor(User, "people"), operation_names=override)


def test_operation_ids(spec: dict[str, Any]) -> None:
    ids = {
        (method, path): item["operationId"]
        for path, methods in spec["paths"].items()
        for method, item in methods.items()
    }
    assert {key: ids[key] for key in ids if key[1].startswith("/users")} == {
        ("get", "/users/changes"): "user_changes",
        ("get", "/users/"): "list_users",
        ("post", "/users/"): "create_user",
        ("get", "/users/{id}"): "get_user",
        ("put", "/users/{id}"): "replace_user",
        ("patch", "/users/{id}"): "update_user",
        ("delete", "/users/{id}"): "delete_user",
        ("post", "/users/{id}/restore"): "restore_user",
        ("delete", "/users/{id}/purge"): "purge_user",
    }
    assert ids["get", "/db/health"] == "db_health"
    assert ids["get", "/db/backup.sqlite"] == "download_backup"
    assert len(set(ids.values())) == len(ids)


def test_operation_names_override() -> None:
    router = build_crud_router(ModelAccessor(User, "people"), operation_names=("person", "people"))
    spec = spec_of(router)
    assert operation(spec, "get", "/people/{id}")["operationId"] == "get_person"
    assert operation(spec, "get", "/people/")["operationId"] == "list_people"


def headers(item: dict[str, Any]) -> dict[tuple[str, str], bool]:
    return {(p["name"], p["in"]): p["required"] for p in item["parameters"] if p["in"] == "header"}


def test_x_user_is_required_where_the_server_requires_it(spec: dict[str, Any]) -> None:
    for method, path in [("post", "/users/"), ("patch", "/users/{id}"), ("post", "/db/import")]:
        item = operation(spec, method, path)
        assert headers(item)["X-User", "header"] is True, path
        assert "400" in item["responses"]
    assert headers(operation(spec, "put", "/users/{id}")) == {
        ("If-Match", "header"): False,
        ("If-None-Match", "header"): False,
        ("X-User", "header"): True,
    }
    # a default actor applies: optional, as vention-storage clients send none
    assert headers(operation(spec, "post", "/db/restore")) == {("X-User", "header"): False}
    assert headers(operation(spec, "get", "/users/{id}")) == {("If-None-Match", "header"): False}


def test_response_headers_are_declared(spec: dict[str, Any]) -> None:
    def sent(method: str, path: str, status: str) -> dict[str, bool]:
        response = operation(spec, method, path)["responses"][status]
        return {name: header["required"] for name, header in response.get("headers", {}).items()}

    assert sent("get", "/users/{id}", "200") == {"ETag": True}
    assert sent("get", "/users/{id}", "304") == {"ETag": True}
    assert sent("post", "/users/", "201") == {"ETag": True, "Location": True}
    assert sent("put", "/users/{id}", "201") == {"ETag": True, "Location": True}
    assert sent("patch", "/users/{id}", "200") == {"ETag": True}
    assert sent("get", "/users/", "200") == {
        "X-Total-Count": False,
        "Link": False,
        "X-Next-Cursor": False,
    }
    assert sent("get", "/db/audit", "200") == {"X-Total-Count": True}
    assert sent("get", "/users/{id}", "503") == {"Retry-After": False}
    assert "503" not in operation(spec, "get", "/db/live")["responses"]  # no database asked


@pytest.mark.parametrize(
    ("path", "media_type"),
    [
        pytest.param("/db/export.zip", "application/zip", id="export"),
        pytest.param("/db/backup.sqlite", "application/x-sqlite3", id="backup"),
        pytest.param("/db/diagram.svg", "image/svg+xml", id="diagram"),
    ],
)
def test_downloads_are_binary_bodies_of_their_media_type(
    spec: dict[str, Any], path: str, media_type: str
) -> None:
    responses = operation(spec, "get", path)["responses"]
    assert responses["200"]["content"] == {media_type: {"schema": BINARY}}
    assert set(responses["503"]["content"]) == {"application/json"}


def test_event_stream_errors_are_json(spec: dict[str, Any]) -> None:
    responses = operation(spec, "get", "/users/changes")["responses"]
    assert set(responses["200"]["content"]) == {"text/event-stream"}
    assert set(responses["422"]["content"]) == {"application/json"}
    assert set(responses["503"]["content"]) == {"application/json"}


def test_filters_are_typed_parameters_per_operator(spec: dict[str, Any]) -> None:
    parameters = operation(spec, "get", "/users/")["parameters"]
    schemas = {p["name"]: p["schema"] for p in parameters}
    age = {name: schema for name, schema in schemas.items() if name.startswith("age")}
    assert age == {
        "age": {"type": "integer"},
        "age__ne": {"type": "integer"},
        "age__in": {"type": "string"},
        "age__lt": {"type": "integer"},
        "age__lte": {"type": "integer"},
        "age__gt": {"type": "integer"},
        "age__gte": {"type": "integer"},
        "age__isnull": {"type": "boolean"},
    }
    assert {"name__like", "name__ilike"} <= set(schemas)
    assert "name__isnull" not in schemas  # the column takes no NULL
    assert schemas["deleted_at__gte"] == {"type": "string", "format": "date-time"}
    samples = {p["name"]: p["schema"] for p in operation(spec, "get", "/samples/")["parameters"]}
    assert samples["color"] == {"type": "string", "enum": ["red", "green"]}
    assert "color__lt" not in samples and "active__gt" not in samples
    assert samples["ref"] == {"type": "string", "format": "uuid"}
    assert samples["day__gte"] == {"type": "string", "format": "date"}
    assert samples["ratio__lte"] == {"type": "number"}
    assert "payload" not in samples  # JSON columns are not filtered


def test_read_models_require_a_key_that_is_never_null(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    assert schemas["UserRead"]["properties"]["id"]["type"] == "integer"
    assert "id" in schemas["UserRead"]["required"]
    assert schemas["UserRead"]["properties"]["age"]["anyOf"][1] == {"type": "null"}


def test_bootstrap_takes_operation_names_per_component(sqlite_db: Path) -> None:
    app = FastAPI()
    bootstrap(
        app,
        accessors=[ModelAccessor(User, "people"), ModelAccessor(Recipe, "recipes")],
        operation_names={"people": ("person", "people")},
    )
    paths = app.openapi()["paths"]
    assert paths["/people/{id}"]["get"]["operationId"] == "get_person"
    assert paths["/recipes/"]["post"]["operationId"] == "create_recipe"

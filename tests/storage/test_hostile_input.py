"""Careless and hostile input gets a precise 4xx and changes nothing, on every backend: dates
that overflow once converted to UTC, integers beyond 64 bits, lone surrogates, NUL characters,
overlong actors, cursors of nested brackets."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from sqlmodel import func, select

from storage import database
from storage.accessor import ModelAccessor
from storage.auditor import AuditLog
from storage.router_database import build_db_router
from storage.router_model import build_crud_router
from support.models import Sample, User
from support.testclient import TestClient

OP = {"X-User": "op", "Content-Type": "application/json"}
FAR = "9999-12-31T23:59:59-23:59"  # in UTC: year 10000
EARLY = "0001-01-01T00:00:00+23:59"  # in UTC: year 0


@pytest.fixture
def client(backend: str) -> TestClient:
    app = FastAPI()
    for accessor in (ModelAccessor(User, "users"), ModelAccessor(Sample, "samples")):
        app.include_router(build_crud_router(accessor))
    app.include_router(build_db_router())
    client = TestClient(app, raise_server_exceptions=False)
    assert client.post("/users/", json={"name": "Ada"}, headers=OP).status_code == 201
    return client


def audit_rows() -> int:
    with database.read_session() as session:
        return int(session.scalar(select(func.count()).select_from(AuditLog)) or 0)


SAMPLE = {"taken_at": "2026-01-01T00:00:00Z", "day": "2026-01-01", "weight": "1.5"}


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        pytest.param("GET", f"/db/audit?since={FAR}", None, id="audit-since-far"),
        pytest.param("GET", f"/db/audit?until={EARLY.replace('+', '%2B')}", None, id="audit-early"),
        pytest.param("GET", f"/samples/?taken_at__gte={FAR}", None, id="filter-far"),
        pytest.param("POST", "/samples/", {**SAMPLE, "taken_at": FAR}, id="body-far"),
        pytest.param("POST", "/users/", {"name": "x", "age": 2**63}, id="int-over-64-bits"),
        pytest.param("POST", "/users/", {"name": "x", "age": -(2**63) - 1}, id="int-under"),
        pytest.param("GET", f"/users/?age__gt={2**64}", None, id="filter-int-over"),
        pytest.param("POST", "/users/", '{"name": "\\ud800"}', id="lone-surrogate"),
        pytest.param("POST", "/users/", {"name": "a\x00b"}, id="nul-in-body"),
        pytest.param("GET", "/users/?name=a%00", None, id="nul-in-filter"),
        pytest.param("GET", "/users/?name__like=%25%00", None, id="nul-in-like"),
        pytest.param("GET", "/users/?cursor=" + "[" * 5000 + "]" * 5000, None, id="deep-cursor"),
    ],
)
def test_bad_input_is_a_422_and_changes_nothing(
    client: TestClient, method: str, path: str, body: Any
) -> None:
    before = audit_rows()
    kwargs: dict[str, Any] = {"headers": OP}
    if isinstance(body, str):
        kwargs["content"] = body.encode()
    elif body is not None:
        kwargs["json"] = body
    response = client.request(method, path, **kwargs)
    assert response.status_code == 422, response.text
    assert response.json()["detail"]
    assert audit_rows() == before


def test_a_nul_never_matches_every_row(client: TestClient) -> None:
    client.post("/users/", json={"name": "Bo"}, headers=OP)
    assert client.get("/users/?name__like=%25%00").status_code == 422
    assert [u["name"] for u in client.get("/users/?name__like=A%25").json()] == ["Ada"]


@pytest.mark.parametrize(
    ("actor", "status"),
    [
        pytest.param("x" * 200, 201, id="200-accepted"),
        pytest.param("x" * 201, 422, id="201-refused"),
    ],
)
def test_one_actor_length_limit_on_every_backend(
    client: TestClient, actor: str, status: int
) -> None:
    before = audit_rows()
    response = client.post("/users/", json={"name": "Cy"}, headers={"X-User": actor})
    assert response.status_code == status
    assert audit_rows() == before + (1 if status == 201 else 0)

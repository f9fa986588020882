"""The change streams over HTTP (``GET /db/changes``, ``GET /{component}/changes``): the event
format, filters, resuming, refusals and auth; through the app, with ``follow=false``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import Depends, FastAPI, HTTPException

from storage._streams import parse_cursor
from storage.accessor import ModelAccessor
from storage.bootstrap import bootstrap
from storage.http import RouteAuth
from support.models import Gadget, User
from support.testclient import TestClient

OP = {"X-User": "op"}


def events(text: str) -> list[dict[str, str]]:
    parsed = []
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if line and not line.startswith(":"):
                name, _, value = line.partition(": ")
                fields[name] = value
        if "data" in fields:
            parsed.append(fields)
    return parsed


@pytest.fixture
def client(backend: str) -> Iterator[TestClient]:
    app = FastAPI()
    silent = ModelAccessor(Gadget, "gadgets", enable_auditing=False)
    bootstrap(app, accessors=[ModelAccessor(User, "users"), silent], create_tables=False)
    with TestClient(app) as client:
        yield client


def test_each_write_is_one_event_with_the_audit_row(client: TestClient) -> None:
    created = client.post("/users/", json={"name": "Ada"}, headers=OP).json()
    client.patch(f"/users/{created['id']}", json={"age": 36}, headers={"X-User": "bo"})
    client.delete(f"/users/{created['id']}", headers=OP)
    response = client.get("/db/changes", params={"after": 0, "follow": False})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.text.startswith(": ready\nretry: 2000\n")
    got = events(response.text)
    assert [e["event"] for e in got] == ["create", "update", "soft_delete"]
    audit = client.get("/db/audit", params={"component": "users"}).json()
    assert [int(e["id"]) for e in got] == sorted(entry["id"] for entry in audit)
    update = json.loads(got[1]["data"])
    assert set(update) == {"component", "record_id", "operation", "actor", "timestamp",
                           "before", "after"}  # fmt: skip
    assert (update["component"], update["record_id"], update["actor"]) == (
        "users",
        str(created["id"]),
        "bo",
    )
    assert update["before"]["age"] is None and update["after"]["age"] == 36


def test_filters_and_the_model_stream(client: TestClient) -> None:
    ada = client.post("/users/", json={"name": "Ada"}, headers=OP).json()
    client.patch(f"/users/{ada['id']}", json={"age": 1}, headers=OP)
    client.post("/gadgets/", json={"serial": "g1"}, headers=OP)  # not audited: no event
    everything = events(client.get("/db/changes?after=0&follow=false").text)
    assert [e["event"] for e in everything] == ["create", "update"]
    only = events(client.get("/users/changes?after=0&follow=false&operation=update").text)
    assert [e["event"] for e in only] == ["update"]
    assert events(client.get("/db/changes?after=0&follow=false&component=nothing").text) == []
    assert client.get("/gadgets/changes").status_code in (404, 422)  # no audit, no stream


def test_last_event_id_resumes_after_that_event(client: TestClient) -> None:
    for name in ("a", "b", "c"):
        client.post("/users/", json={"name": name}, headers=OP)
    first, *rest = events(client.get("/db/changes?after=0&follow=false").text)
    resumed = client.get("/db/changes?follow=false&after=0", headers={"Last-Event-ID": first["id"]})
    assert [e["id"] for e in events(resumed.text)] == [e["id"] for e in rest]
    assert events(client.get("/db/changes?follow=false").text) == []  # from now: nothing yet


@pytest.mark.parametrize(
    ("params", "headers"),
    [
        pytest.param({"after": -1}, {}, id="negative-after"),
        pytest.param({"after": "x"}, {}, id="text-after"),
        pytest.param({"after": 2**64}, {}, id="huge-after"),
        pytest.param({}, {"Last-Event-ID": "abc"}, id="text-id"),
        pytest.param({}, {"Last-Event-ID": "1.2"}, id="two-part-id"),
        pytest.param({}, {"Last-Event-ID": "99999999999999999999"}, id="huge-id"),
        pytest.param({}, {"Last-Event-ID": "١٢".encode()}, id="non-ascii-digits"),
        pytest.param({"follow": "maybe"}, {}, id="bad-follow"),
    ],
)
def test_bad_positions_are_refused_before_the_stream_starts(
    client: TestClient, params: dict[str, object], headers: dict[str, Any]
) -> None:
    response = client.get("/db/changes", params=params, headers=headers)
    assert response.status_code == 422, response.text
    assert not response.headers["content-type"].startswith("text/event-stream")


@pytest.mark.parametrize(
    ("value", "parts", "expected"),
    [
        pytest.param(None, 1, None, id="none"),
        pytest.param(" ", 1, None, id="blank"),
        pytest.param("12", 1, (12,), id="one"),
        pytest.param("12.40", 2, (12, 40), id="two"),
    ],
)
def test_parse_cursor(value: str | None, parts: int, expected: tuple[int, ...] | None) -> None:
    assert parse_cursor(value, parts) == expected


def test_the_streams_are_guarded_like_the_other_reads(backend: str) -> None:
    def deny() -> None:
        raise HTTPException(status_code=401, detail="token needed")

    app = FastAPI()
    bootstrap(
        app,
        accessors=[ModelAccessor(User, "users")],
        create_tables=False,
        auth=RouteAuth(read=[Depends(deny)]),
    )
    with TestClient(app) as client:
        for path in ("/db/changes", "/users/changes"):
            response = client.get(path, params={"follow": False})
            assert response.status_code == 401, path

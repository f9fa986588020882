"""Prometheus metrics: the /metrics text parses, counters move with requests and writes, labels
are route templates, and runs and live-feed streams are counted."""

from __future__ import annotations

import gc
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from storage import _pool as pool
from storage import changes, database
from storage.accessor import ModelAccessor
from storage.bootstrap import bootstrap
from storage.errors import MissingDependencyError
from storage.metrics import StorageMetrics, metrics_of
from support.models import User
from support.testclient import TestClient

ACTOR = {"X-User": "operator"}


def samples(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    found = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found: dict[Any, float], name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def users() -> ModelAccessor[User]:
    return ModelAccessor(User, "users")


@pytest.fixture
def client(backend: str, users: ModelAccessor[User]) -> Iterator[TestClient]:
    app = FastAPI()
    bootstrap(app, accessors=[users], metrics=True, max_records_per_model=None)
    with TestClient(app) as client:
        yield client


def test_requests_are_counted_by_route_template(client: TestClient) -> None:
    created = client.post(
        "/users/", json={"name": "Ada", "email": "ada@example.com"}, headers=ACTOR
    )
    assert created.status_code == 201
    record = created.json()["id"]
    assert client.get(f"/users/{record}").status_code == 200
    assert client.get("/users/999999").status_code == 404
    assert client.get("/no/such/path/42").status_code == 404

    found = samples(client)
    read = {"kind": "read", "route": "/users/{id}", "method": "GET"}
    assert value(found, "storage_http_requests_total", **read, status="200") == 1
    assert value(found, "storage_http_requests_total", **read, status="404") == 1
    assert value(found, "storage_http_request_duration_seconds_count", **read) == 2
    write = {"kind": "write", "route": "/users/", "method": "POST", "status": "201"}
    assert value(found, "storage_http_requests_total", **write) == 1
    other = {"kind": "other", "route": "unmatched", "method": "GET", "status": "404"}
    assert value(found, "storage_http_requests_total", **other) == 1
    routes = {labels for name, labels in found if name == "storage_http_requests_total"}
    assert not any(("route", f"/users/{record}") in labels for labels in routes)


def test_admin_and_stream_routes_have_their_kind(client: TestClient) -> None:
    assert client.get("/db/export.zip").status_code == 200
    assert client.get("/db/changes", params={"follow": "false"}).status_code == 200
    found = samples(client)
    admin = {"kind": "admin", "route": "/db/export.zip", "method": "GET", "status": "200"}
    assert value(found, "storage_http_requests_total", **admin) == 1
    stream = {"kind": "stream", "route": "/db/changes", "method": "GET", "status": "200"}
    assert value(found, "storage_http_requests_total", **stream) == 1


def test_committed_writes_and_audit_rows_are_counted(
    client: TestClient, users: ModelAccessor[User]
) -> None:
    before = samples(client)
    users.insert_many([User(name=f"u{i}", email=f"u{i}@example.com") for i in range(3)])
    with pytest.raises(RuntimeError), database.transaction():
        users.insert(User(name="gone", email="gone@example.com"))
        raise RuntimeError("rolled back: not counted")
    after = samples(client)
    for name in ("storage_writes_total", "storage_audit_rows_total"):
        labels = {"component": "users", "operation": "create"}
        assert value(after, name, **labels) - value(before, name, **labels) == 3


def test_pool_waits_and_feed_subscribers_are_reported(client: TestClient) -> None:
    client.post("/users/", json={"name": "Bo", "email": "bo@example.com"}, headers=ACTOR)
    found = samples(client)
    assert value(found, "storage_db_wait_seconds_count", resource="connection") >= 1
    assert value(found, "storage_db_pool_checked_out") >= 0
    assert ("storage_feed_subscribers", ()) in found


def test_two_apps_in_one_process_keep_their_own_figures(backend: str) -> None:
    first, second = FastAPI(), FastAPI()
    bootstrap(first, metrics=True)
    bootstrap(second, metrics=True)
    with TestClient(first) as one, TestClient(second) as two:
        one.get("/db/health")
        health = {"kind": "read", "route": "/db/health", "method": "GET", "status": "200"}
        assert value(samples(one), "storage_http_requests_total", **health) == 1
        assert value(samples(two), "storage_http_requests_total", **health) == 0
    assert metrics_of(first) is not metrics_of(second)


def test_metrics_are_off_by_default(backend: str) -> None:
    app = FastAPI()
    bootstrap(app)
    assert metrics_of(app) is None
    assert TestClient(app).get("/metrics").status_code == 404


def test_listeners_go_when_the_last_metrics_go(backend: str) -> None:
    gc.collect()
    before = (len(changes._counters.callbacks), len(pool._listeners.callbacks))
    metrics = StorageMetrics()
    assert changes.counting()
    del metrics
    gc.collect()
    assert (len(changes._counters.callbacks), len(pool._listeners.callbacks)) <= before


def test_missing_prometheus_client_names_the_extra(
    backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # as if not installed
    with pytest.raises(MissingDependencyError, match=r"machine-storage\[metrics\]"):
        bootstrap(FastAPI(), metrics=True)


def test_a_write_undone_by_its_savepoint_is_not_counted(
    client: TestClient, users: ModelAccessor[User]
) -> None:
    @users.before_insert()
    def refuse(session: Any, user: User) -> None:
        if user.name == "refused":
            raise ValueError("refused")

    before = samples(client)
    with database.transaction():
        users.insert(User(name="kept", email="kept@example.com"))
        with pytest.raises(ValueError):
            users.insert(User(name="refused", email="refused@example.com"))
    after = samples(client)
    labels = {"component": "users", "operation": "create"}
    assert (
        value(after, "storage_writes_total", **labels)
        - value(before, "storage_writes_total", **labels)
        == 1
    )

"""Liveness and readiness: /db/live never asks the database, /db/ready says 503 (with the
reason) while the database is unreachable or its tables differ from the models."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from sqlalchemy import Column, Integer, MetaData, String, Table, text
from sqlmodel import SQLModel

from storage import database, feed
from storage.bootstrap import bootstrap
from storage.readiness import SchemaCheck
from storage.router_database import build_db_router
from support.backends import _drop_database, scratch_database
from support.testclient import TestClient


def probe_models() -> MetaData:
    metadata = MetaData()
    Table(
        "readiness_probe",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("name", String(50), nullable=False),
        Column("unit", String(20), nullable=True),
    )
    return metadata


def test_ready_and_live_on_a_fresh_database(backend: str) -> None:
    app = FastAPI()
    bootstrap(app)
    client = TestClient(app)
    assert client.get("/db/live").json() == {"status": "alive"}
    assert client.get("/db/ready").json() == {"status": "ready", "backend": backend}
    assert client.get("/db/health").json() == {"status": "ok", "backend": backend}


def test_not_ready_while_a_model_has_a_column_the_table_lacks(backend: str) -> None:
    with database.get_engine().begin() as connection:
        connection.execute(
            text("CREATE TABLE readiness_probe (id INTEGER PRIMARY KEY, name VARCHAR(50))")
        )
    app = FastAPI()
    app.include_router(build_db_router(schema_check=SchemaCheck(probe_models())))
    client = TestClient(app)
    response = client.get("/db/ready")
    assert response.status_code == 503
    assert "readiness_probe.unit" in response.json()["detail"]
    assert client.get("/db/live").status_code == 200
    assert client.get("/db/health").status_code == 200  # reachable, as before


def test_ready_once_the_schema_is_migrated(backend: str) -> None:
    models = probe_models()
    check = SchemaCheck(models, max_age=3600)
    with database.get_engine().begin() as connection:
        connection.execute(
            text("CREATE TABLE readiness_probe (id INTEGER PRIMARY KEY, name VARCHAR(50))")
        )
    app = FastAPI()
    app.include_router(build_db_router(schema_check=check))
    client = TestClient(app)
    assert client.get("/db/ready").status_code == 503
    with database.get_engine().begin() as connection:
        connection.execute(text("ALTER TABLE readiness_probe ADD COLUMN unit VARCHAR(20)"))
    assert client.get("/db/ready").status_code == 503  # remembered: probes stay cheap
    check.forget()
    assert client.get("/db/ready").status_code == 200


@pytest.fixture(
    params=[pytest.param("postgresql", id="postgresql"), pytest.param("mariadb", id="mariadb")]
)
def doomed_database(request: pytest.FixtureRequest) -> Iterator[str]:
    """The server's name, with a database of its own configured as the default; the test
    drops it."""
    with scratch_database(request.param) as url:
        database.set_default_database(database.Database())
        database.set_database_url(url)
        SQLModel.metadata.create_all(database.get_engine())
        yield request.param
        feed.close_all(wait=True)
        database.get_database().dispose()


def test_not_ready_while_the_database_is_unreachable(doomed_database: str) -> None:
    app = FastAPI()
    bootstrap(app)
    client = TestClient(app)
    assert client.get("/db/ready").status_code == 200
    url = database.get_engine().url
    database.get_database().dispose()
    _drop_database(doomed_database, str(url.database))
    response = client.get("/db/ready")
    assert response.status_code == 503
    assert response.json()["detail"].startswith("the database cannot be reached")
    assert "SELECT" not in response.json()["detail"]
    assert client.get("/db/live").json() == {"status": "alive"}
